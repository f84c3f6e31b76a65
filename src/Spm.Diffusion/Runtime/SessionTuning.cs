using Microsoft.ML.OnnxRuntime;

namespace Spm.Diffusion.Runtime;

/// <summary>
/// Choices for one session on top of the run's <see cref="OnnxRuntimeOptions"/>: things that depend on the model
/// (a shape probe needs no graph optimization; a float graph gains nothing from ONNX Runtime's quantization passes),
/// not on the run. The provider, device and threads always come from the run's options.
/// </summary>
public sealed record SessionTuning
{
    /// <summary>No change: the session opens exactly as the run's options say.</summary>
    public static SessionTuning None { get; } = new();

    /// <summary>The graph optimization level for this session; null keeps the run's level.</summary>
    public GraphOptimizationLevel? OptimizationLevel { get; init; }

    /// <summary>
    /// ONNX Runtime graph transformers to skip, by name (ONNX Runtime's <c>optimization.disable_specified_optimizers</c>).
    /// Only passes that cannot change this model belong here: skipping them leaves the optimized graph, and so the
    /// results, as they were.
    /// </summary>
    public IReadOnlyList<string> DisabledOptimizers { get; init; } = [];

    /// <summary>
    /// Reuse ONNX Runtime's optimized graph across processes through <see cref="OnnxRuntimeOptions.OptimizedModelCacheFolder"/>
    /// (when the run sets one and the session runs on the CPU); see <see cref="OptimizedModelCache"/>.
    /// </summary>
    public bool UseOptimizedModelCache { get; init; }

    /// <summary>
    /// ONNX Runtime's store of pre-packed weights (the CPU kernels' re-laid-out copies of constant weights), shared by every
    /// session opened with the same container; null keeps each session's own. Two graphs over the same weights, such as
    /// a plain UNet and the same UNet with membranes, then hold the packed weights once. Each session still reads the
    /// weights in while it opens, so this lowers what two open sessions hold, not the peak of opening the second one.
    /// The container must outlive the sessions.
    /// </summary>
    public PrePackedWeightsContainer? SharedPrepackedWeights { get; init; }
}
