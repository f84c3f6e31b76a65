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
    bool CheckpointSaved);

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

    /// <summary>Everything of the iterations, including the above.</summary>
    public TimeSpan Total { get; init; }

    /// <summary>Iterations counted.</summary>
    public int Iterations { get; init; }
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
    IReadOnlyList<TrainingProgress> History);
