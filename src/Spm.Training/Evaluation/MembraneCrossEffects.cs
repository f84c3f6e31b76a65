using Spm.Core.Gating;
using Spm.Core.Metrics;

namespace Spm.Training.Evaluation;

/// <summary>How <see cref="MembraneCrossEffects.Measure"/> generates and compares images.</summary>
/// <param name="ImagesPerPrompt">Seeds per prompt (seed <see cref="Seed"/> + k for the k-th image of every prompt).</param>
/// <param name="Seed">First seed.</param>
/// <param name="Gate">
/// Null: every membrane fully open (multiplier 1), what the membrane itself does to a concept; otherwise each SPM's
/// multiplier is its facilitated-transport gate for the prompt under these settings, what a deployment does.
/// </param>
public sealed record CrossEffectOptions(int ImagesPerPrompt = 4, ulong Seed = 0, GateSettings? Gate = null)
{
    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> for a non-positive image count.</summary>
    public void Validate() => ArgumentOutOfRangeException.ThrowIfLessThan(ImagesPerPrompt, 1, nameof(ImagesPerPrompt));
}

/// <summary>
/// How much each loaded SPM changes the images of each prompt: <c>Change[s, p]</c> = 1 - mean SSIM between the base
/// model's image and the image with SPM s alone loaded, over the prompt's seeds (0: untouched; the SSIM of an image with
/// itself is exactly 1). Rows follow the generator's SPMs, columns the prompts. With the gate open this is the
/// membrane's own reach, the "transport matrix" a library implies; with the deployed gate it is what users see.
/// </summary>
/// <param name="Spms">The SPMs' names (file names without the extension), one per row.</param>
/// <param name="Prompts">The prompts, one per column.</param>
/// <param name="Change">[SPM, prompt] mean 1 - SSIM.</param>
/// <param name="Multiplier">[SPM, prompt] the multiplier each SPM ran with (1 when open).</param>
/// <param name="Gated">Whether the deployed gate decided the multipliers.</param>
/// <param name="ImagesPerPrompt">Seeds per prompt.</param>
public sealed record CrossEffectMatrix(IReadOnlyList<string> Spms, IReadOnlyList<string> Prompts, double[,] Change, double[,] Multiplier, bool Gated, int ImagesPerPrompt)
{
    /// <summary>
    /// A symmetric concept similarity for an atlas, when SPM i was trained on prompt i (a square matrix): the share of
    /// each membrane's effect on its own concept that reaches the other, averaged both ways,
    /// s(a, b) = (Change[a, b] / Change[a, a] + Change[b, a] / Change[b, b]) / 2 (diagonal 1).
    /// </summary>
    /// <exception cref="InvalidOperationException">The matrix is not square, or a membrane does not change its own concept.</exception>
    public double[,] ReachSimilarity()
    {
        int n = Spms.Count;
        if (Prompts.Count != n) throw new InvalidOperationException($"Reach similarity needs one prompt per SPM (its concept); got {n} SPMs and {Prompts.Count} prompts.");
        for (int i = 0; i < n; i++)
            if (!(Change[i, i] > 1e-6))
                throw new InvalidOperationException($"SPM '{Spms[i]}' does not change the images of its own concept \"{Prompts[i]}\" (1 - SSIM {Change[i, i]:0.######}), so its reach cannot be measured.");
        var sim = new double[n, n];
        for (int a = 0; a < n; a++)
            for (int b = 0; b < n; b++)
                sim[a, b] = a == b ? 1.0 : 0.5 * (Change[a, b] / Change[a, a] + Change[b, a] / Change[b, b]);
        return sim;
    }

    /// <summary>Mean change of SPM <paramref name="spm"/> over the prompts at <paramref name="prompts"/>.</summary>
    public double MeanChange(int spm, IEnumerable<int> prompts)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        double sum = 0;
        int n = 0;
        foreach (int p in prompts) { sum += Change[spm, p]; n++; }
        return n == 0 ? double.NaN : sum / n;
    }
}

/// <summary>Measures <see cref="CrossEffectMatrix"/>: every loaded SPM against every prompt, in shared UNet batches.</summary>
public static class MembraneCrossEffects
{
    /// <summary>
    /// Generates, for every prompt and seed, the base image (all multipliers 0) and one image per SPM with only that SPM
    /// on, and compares them. <paramref name="progress"/> receives the share of images done (0..1).
    /// </summary>
    /// <exception cref="ArgumentException">No SPMs are loaded or no prompts are given.</exception>
    /// <exception cref="OperationCanceledException">Cancelled.</exception>
    public static CrossEffectMatrix Measure(EvalImageGenerator generator, IReadOnlyList<string> prompts, CrossEffectOptions? options = null,
        IProgress<double>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(generator);
        ArgumentNullException.ThrowIfNull(prompts);
        options ??= new CrossEffectOptions();
        options.Validate();
        int m = generator.SpmCount, n = prompts.Count, k = options.ImagesPerPrompt;
        if (m == 0) throw new ArgumentException("Cross-effects need at least one SPM loaded in the generator.", nameof(generator));
        if (n == 0) throw new ArgumentException("Cross-effects need at least one prompt.", nameof(prompts));

        var multiplier = new double[m, n];
        var gates = options.Gate is { } g ? Enumerable.Repeat(g, m).ToArray() : null;
        for (int p = 0; p < n; p++)
        {
            var readings = gates is null ? null : generator.GatesFor(prompts[p], gates);
            for (int s = 0; s < m; s++) multiplier[s, p] = readings is null ? 1.0 : readings[s].Multiplier;
        }

        // Row order: for each prompt and seed, the base image then one image per SPM; an SPM whose multiplier is 0 would
        // only reproduce the base image, so it is not generated (its change is exactly 0).
        var requests = new List<EvalImageRequest>();
        var index = new int[n, k, m + 1];
        for (int p = 0; p < n; p++)
            for (int j = 0; j < k; j++)
            {
                ulong seed = options.Seed + (ulong)j;
                index[p, j, 0] = requests.Count;
                requests.Add(new EvalImageRequest(prompts[p], seed, new float[m]));
                for (int s = 0; s < m; s++)
                {
                    if (multiplier[s, p] == 0) { index[p, j, s + 1] = -1; continue; }
                    var mult = new float[m];
                    mult[s] = (float)multiplier[s, p];
                    index[p, j, s + 1] = requests.Count;
                    requests.Add(new EvalImageRequest(prompts[p], seed, mult));
                }
            }
        int total = requests.Count;
        var images = generator.Generate(requests, progress is null ? null : new Share(progress, total), cancellationToken);

        int size = generator.ImageSize;
        var change = new double[m, n];
        for (int p = 0; p < n; p++)
            for (int s = 0; s < m; s++)
            {
                double sum = 0;
                for (int j = 0; j < k; j++)
                {
                    int at = index[p, j, s + 1];
                    if (at < 0) continue;
                    var a = images[index[p, j, 0]];
                    var b = images[at];
                    sum += a.AsSpan().SequenceEqual(b) ? 0.0 : 1.0 - ImageMetrics.Ssim(a, b, 3, size, size);
                }
                change[s, p] = sum / k;
            }
        return new CrossEffectMatrix(generator.Sets.Select(set => Path.GetFileNameWithoutExtension(set.Name)).ToArray(), prompts.ToArray(), change, multiplier, gates is not null, k);
    }

    /// <summary>Turns images done into a share of all images, on the reporting thread (no synchronisation context hop).</summary>
    private sealed class Share(IProgress<double> inner, int total) : IProgress<double>
    {
        public void Report(double value) => inner.Report(value / total);
    }
}
