namespace Spm.Training.LatentAnchoring;

/// <summary>
/// A measurement, not part of the objective: the erasure loss of the current membrane on a fixed probe, the same
/// x and t for each of a few fixed k in every iteration. The training loss is measured on a fresh draw of k, x and
/// size each iteration, and on a random-weight model the drawn k alone moves it over orders of magnitude (x grows
/// as DDIM runs, because a random UNet predicts noise far smaller than the noise in x), so first-10 vs last-10
/// averages of the training loss mostly compare which k were drawn. The probe removes the draw from the comparison.
/// </summary>
/// <param name="Steps">The probe's k values (how many guided DDIM steps produced each probe x).</param>
/// <param name="Timesteps">The query timestep of each probe (as the trainer derives it from k).</param>
/// <param name="FrozenLosses">The frozen model's erasure loss at each probe: the untrained value.</param>
public sealed record ErasureProbeInfo(IReadOnlyList<int> Steps, IReadOnlyList<int> Timesteps, IReadOnlyList<double> FrozenLosses);

/// <summary>The probe's reading after one iteration (see <see cref="ErasureProbeInfo"/>).</summary>
/// <param name="Losses">Erasure loss of the membrane at each probe (same order as <see cref="ErasureProbeInfo.Steps"/>).</param>
/// <param name="Relative">Each probe's loss over its frozen loss: 1 untrained, 0 perfect erasure.</param>
public sealed record ErasureProbeReading(IReadOnlyList<double> Losses, IReadOnlyList<double> Relative)
{
    /// <summary>Mean raw erasure loss over the probes (dominated by the smallest k, but the same k every iteration).</summary>
    public double MeanLoss => Losses.Average();

    /// <summary>Mean relative erasure loss over the probes (every k counts the same).</summary>
    public double MeanRelative => Relative.Average();
}

/// <summary>Where the probe sits: the k values and the latent size.</summary>
public static class ErasureProbePlan
{
    /// <summary>
    /// <paramref name="count"/> values of k spread evenly over 1..steps-1, both ends included
    /// (5 over 30 sampling steps: 1, 8, 15, 22, 29).
    /// </summary>
    public static int[] Steps(int samplingSteps, int count = 5)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(samplingSteps, 2);
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        int last = samplingSteps - 1;
        if (count == 1 || last == 1) return [1];
        return Enumerable.Range(0, count)
            .Select(i => 1 + (int)Math.Round(i * (last - 1) / (double)(count - 1), MidpointRounding.AwayFromZero))
            .Distinct()
            .ToArray();
    }

    /// <summary>The probe's image size: the smallest size training draws (the nominal size without dynamic resolution).</summary>
    public static int Size(LatentAnchoringOptions options)
        => options.DynamicResolution ? IterationSampler.CandidateSizes(options.Resolution)[0] : options.Resolution;
}
