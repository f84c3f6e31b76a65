using Spm.Core.Randomness;

namespace Spm.Diffusion.Schedulers;

/// <summary>
/// A diffusion sampler, numerically equal to its diffusers namesake for the same config. Instances are
/// stateful (multistep history), so a pipeline creates one per generation through an <see cref="ISchedulerFactory"/>.
/// Stepping is index-based: call <see cref="Step"/> once for every entry of <see cref="Timesteps"/>, in order.
/// </summary>
public interface IScheduler
{
    /// <summary>The configuration this scheduler was built from.</summary>
    SchedulerConfig Config { get; }

    /// <summary>Timesteps on the training grid, in the order the UNet is called (PNDM repeats one, so the count may exceed the step count).</summary>
    IReadOnlyList<double> Timesteps { get; }

    /// <summary>Standard deviation of the initial noise (1 for DDPM-style samplers, sigma_max for Euler-style ones).</summary>
    double InitNoiseSigma { get; }

    /// <summary>Prepares the schedule for <paramref name="numInferenceSteps"/> denoising steps and resets all history.</summary>
    void SetTimesteps(int numInferenceSteps);

    /// <summary>Scales the latents before the UNet call of step <paramref name="stepIndex"/> (identity for DDIM/PNDM).</summary>
    void ScaleModelInput(ReadOnlySpan<float> sample, Span<float> destination, int stepIndex);

    /// <summary>
    /// Advances <paramref name="sample"/> in place by one step given the UNet output for step <paramref name="stepIndex"/>.
    /// <paramref name="noise"/> feeds stochastic samplers (Euler ancestral, DDIM with eta &gt; 0); others ignore it.
    /// </summary>
    void Step(ReadOnlySpan<float> modelOutput, int stepIndex, Span<float> sample, SeededRandom? noise);
}

/// <summary>Creates fresh schedulers of one kind and config (one per generation, since schedulers hold history).</summary>
public interface ISchedulerFactory
{
    /// <summary>The scheduler name used on the command line (pndm, ddim, euler, euler-a, dpmpp-2m, lms).</summary>
    string Name { get; }

    /// <summary>Creates a new scheduler with no history.</summary>
    IScheduler Create(SchedulerConfig config);
}
