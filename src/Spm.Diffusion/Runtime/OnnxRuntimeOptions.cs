using Microsoft.ML.OnnxRuntime;

namespace Spm.Diffusion.Runtime;

/// <summary>
/// How sessions are created: execution provider, threads, graph optimization, determinism.
/// One instance configures every model of a pipeline.
/// </summary>
public sealed record OnnxRuntimeOptions
{
    /// <summary>The execution provider to ask for (default CPU).</summary>
    public ExecutionProviderKind Provider { get; init; } = ExecutionProviderKind.Cpu;

    /// <summary>The CUDA device index (ignored on the CPU).</summary>
    public int DeviceId { get; init; }

    /// <summary>Threads used inside one operator; 0 lets ONNX Runtime choose (one per physical core).</summary>
    public int IntraOpThreads { get; init; }

    /// <summary>Threads used to run independent operators in parallel; 0 lets ONNX Runtime choose.</summary>
    public int InterOpThreads { get; init; }

    /// <summary>Graph optimization level (default: all optimizations).</summary>
    public GraphOptimizationLevel OptimizationLevel { get; init; } = GraphOptimizationLevel.ORT_ENABLE_ALL;

    /// <summary>
    /// Prefer reproducible results over speed: sequential execution, and on CUDA the default cuDNN convolution
    /// algorithm (no benchmark search, whose pick can vary between runs) with TF32 off.
    /// On the CPU, results are reproducible for a fixed thread count either way.
    /// </summary>
    public bool Deterministic { get; init; }

    /// <summary>
    /// When set, ONNX Runtime writes its per-node timing JSON (<c>&lt;prefix&gt;_&lt;date&gt;.json</c>) when a session
    /// closes. Null (the default) reads the <c>SPM_ORT_PROFILE</c> environment variable, so any command can be profiled
    /// without an option of its own; empty turns profiling off.
    /// </summary>
    public string? ProfileOutputPrefix { get; init; }

    /// <summary>
    /// Folder where sessions that ask for it (<see cref="SessionTuning.UseOptimizedModelCache"/>: gradient graphs)
    /// keep ONNX Runtime's optimized graph, so the next process that opens the same model skips graph optimization.
    /// Null (the default) keeps nothing on disk. See <see cref="OptimizedModelCache"/>.
    /// </summary>
    public string? OptimizedModelCacheFolder { get; init; }

    /// <summary>
    /// Whether ONNX Runtime's worker threads spin while they wait for work. Spinning lowers latency on a machine the
    /// process has to itself, and burns the cores other processes need when there are more busy threads than cores
    /// (several sessions or processes at once on a small machine). Null (the default) reads the <c>SPM_ORT_SPIN</c>
    /// environment variable (<c>0</c> turns spinning off, <c>1</c> on), else keeps ONNX Runtime's default (on).
    /// </summary>
    public bool? AllowSpinning { get; init; }

    /// <summary>The spinning choice in effect: <see cref="AllowSpinning"/>, else <c>SPM_ORT_SPIN</c>; null keeps ONNX Runtime's default.</summary>
    public bool? EffectiveAllowSpinning
        => AllowSpinning ?? Environment.GetEnvironmentVariable("SPM_ORT_SPIN") switch
        {
            "0" or "false" or "off" => false,
            "1" or "true" or "on" => true,
            _ => null,
        };

    /// <summary>The profiling prefix in effect: <see cref="ProfileOutputPrefix"/>, else <c>SPM_ORT_PROFILE</c>; null when off.</summary>
    public string? EffectiveProfilePrefix
        => (ProfileOutputPrefix ?? Environment.GetEnvironmentVariable("SPM_ORT_PROFILE")) is { Length: > 0 } p ? p : null;

    /// <summary>Checks the values.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A thread count or device index is negative.</exception>
    public void Validate()
    {
        if (DeviceId < 0) throw new ArgumentOutOfRangeException(nameof(DeviceId), DeviceId, "Device index must be >= 0.");
        if (IntraOpThreads < 0) throw new ArgumentOutOfRangeException(nameof(IntraOpThreads), IntraOpThreads, "Thread count must be >= 0.");
        if (InterOpThreads < 0) throw new ArgumentOutOfRangeException(nameof(InterOpThreads), InterOpThreads, "Thread count must be >= 0.");
    }
}
