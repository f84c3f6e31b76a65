namespace Spm.Training.LatentAnchoring;

/// <summary>Where a training run is, reported after every iteration.</summary>
/// <param name="Step">Iterations completed (1-based after the first).</param>
/// <param name="TotalSteps">Iterations of the whole run.</param>
/// <param name="Loss">Total loss <c>L_era + lambda * L_anc</c> of the last iteration.</param>
/// <param name="ErasureLoss">L_era of the last iteration.</param>
/// <param name="AnchorLoss">L_anc of the last iteration (0 without anchoring).</param>
/// <param name="LearningRate">Learning rate used by the last update.</param>
/// <param name="Draw">The random choices of the last iteration.</param>
/// <param name="Timings">Time spent so far, by phase.</param>
/// <param name="CheckpointSaved">Whether a checkpoint was written after this iteration.</param>
public sealed record TrainingProgress(
    int Step,
    int TotalSteps,
    double Loss,
    double ErasureLoss,
    double AnchorLoss,
    double LearningRate,
    IterationDraw Draw,
    TrainingTimings Timings,
    bool CheckpointSaved)
{
    /// <summary>
    /// The erasure loss the frozen model (membranes off) has at the same x, t and target:
    /// <c>mean((eps(x,t,c_tar) - target)^2)</c>. The drawn k moves L_era over orders of magnitude (on the tiny fixture
    /// ~1e-4 at k = 1, ~1e-8 at k = 29), so <see cref="RelativeErasureLoss"/> is the measure of learning that does not
    /// depend on the draw. NaN when the positive prompt differs from the concept (not computed then).
    /// </summary>
    public double FrozenErasureLoss { get; init; } = double.NaN;

    /// <summary><see cref="ErasureLoss"/> / <see cref="FrozenErasureLoss"/>: 1 for an untrained membrane, 0 for perfect erasure.</summary>
    public double RelativeErasureLoss => ErasureLoss / FrozenErasureLoss;

    /// <summary>L2 norm of the gradient of the total loss over all membrane tensors (before the optimizer step).</summary>
    public double GradientNorm { get; init; }

    /// <summary>The fixed probe's erasure losses before this iteration's update (null unless the probe is on).</summary>
    public ErasureProbeReading? Probe { get; init; }
}

/// <summary>Accumulated wall time per phase of the iteration (the benchmark's split).</summary>
public sealed record TrainingTimings
{
    /// <summary>Sampling x: the guided DDIM steps with the membranes on.</summary>
    public TimeSpan SamplingX { get; init; }

    /// <summary>Frozen predictions (target, surrogate, anchors) with the membranes off.</summary>
    public TimeSpan Frozen { get; init; }

    /// <summary>Trainable forward and backward pass (the gradient graph).</summary>
    public TimeSpan ForwardBackward { get; init; }

    /// <summary>Optimizer update.</summary>
    public TimeSpan Optimizer { get; init; }

    /// <summary>Building gradient graphs and sessions (once per latent size).</summary>
    public TimeSpan GraphBuild { get; init; }

    /// <summary>Gradient graphs whose ONNX Runtime optimized graph was loaded from the optimized-model cache (so not optimized again).</summary>
    public int GraphsFromCache { get; init; }

    /// <summary>Everything of the iterations, including the above.</summary>
    public TimeSpan Total { get; init; }

    /// <summary>Iterations counted.</summary>
    public int Iterations { get; init; }

    /// <summary>Guided UNet calls made while sampling x (the sum of the drawn k).</summary>
    public long SamplingCalls { get; init; }

    /// <summary>Rendering preview grids (not part of an iteration's cost; excluded from <see cref="Total"/>).</summary>
    public TimeSpan Preview { get; init; }

    /// <summary>Measuring the fixed erasure probe (a measurement, not part of an iteration's cost; excluded from <see cref="Total"/>).</summary>
    public TimeSpan Probe { get; init; }
}

/// <summary>The outcome of <see cref="LatentAnchoringTrainer.TrainAsync"/>.</summary>
/// <param name="OutputPath">The SPM file written.</param>
/// <param name="Steps">Iterations run in total (including those before a resume).</param>
/// <param name="ResumedFrom">The step the run resumed from, or 0.</param>
/// <param name="Timings">Time per phase for the iterations run in this process.</param>
/// <param name="History">Per-iteration losses of this process (step, L, L_era, L_anc, lr).</param>
public sealed record TrainingResult(
    string OutputPath,
    int Steps,
    int ResumedFrom,
    TrainingTimings Timings,
    IReadOnlyList<TrainingProgress> History)
{
    /// <summary>The fixed erasure probe of the run (null unless <see cref="LatentAnchoringOptions.ErasureProbe"/> is on).</summary>
    public ErasureProbeInfo? Probe { get; init; }
}
