using Microsoft.ML.OnnxRuntime;
using Spm.Diffusion.Onnx.Proto;
using Spm.Diffusion.Runtime;

namespace Spm.Training.Autodiff;

/// <summary>How ONNX Runtime sessions for forward probes and gradient graphs are created.</summary>
/// <param name="ExternalDataFolder">Folder holding the model's external weight files (e.g. the UNet folder with <c>weights.pb</c>); null when all weights are inline.</param>
/// <param name="IntraOpThreads">ORT intra-op threads; 0 lets ORT decide.</param>
/// <param name="Provider">The execution provider to ask for (CUDA falls back to the CPU with a reason, as every session does).</param>
/// <param name="OptimizationLevel">ORT graph optimization level.</param>
public sealed record GradientSessionSettings(
    string? ExternalDataFolder = null,
    int IntraOpThreads = 0,
    ExecutionProviderKind Provider = ExecutionProviderKind.Cpu,
    GraphOptimizationLevel OptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL)
{
    /// <summary>The CUDA device index (ignored on the CPU).</summary>
    public int DeviceId { get; init; }

    /// <summary>
    /// Where gradient graphs keep ONNX Runtime's optimized graph between processes (see <see cref="OptimizedModelCache"/>);
    /// null keeps nothing. Ignored when <see cref="Sessions"/> is set: the group's options say it then.
    /// </summary>
    public string? OptimizedModelCacheFolder { get; init; }

    /// <summary>
    /// Open probes without graph optimization and skip ONNX Runtime's quantization passes on float gradient graphs
    /// (true, the default; neither changes a result). False opens every session exactly with the run's options and no
    /// cache: the baseline <c>spm bench graph-build</c> measures against.
    /// </summary>
    public bool SpeedTuning { get; init; } = true;

    /// <summary>
    /// When set, sessions open through this group, with its options (provider, device, threads, optimization) and
    /// its one provider choice shared with the run's other sessions; only <see cref="ExternalDataFolder"/> is read
    /// from these settings then.
    /// </summary>
    public OnnxSessionGroup? Sessions { get; init; }

    /// <summary>Settings that open through <paramref name="sessions"/>, with external weights in <paramref name="externalDataFolder"/>.</summary>
    public static GradientSessionSettings For(OnnxSessionGroup sessions, string? externalDataFolder)
    {
        ArgumentNullException.ThrowIfNull(sessions);
        var o = sessions.Requested;
        return new GradientSessionSettings(externalDataFolder, o.IntraOpThreads, o.Provider, o.OptimizationLevel) { DeviceId = o.DeviceId, Sessions = sessions };
    }

    /// <summary>The runtime options these settings stand for (those of <see cref="Sessions"/> when set).</summary>
    public OnnxRuntimeOptions ToRuntimeOptions() => Sessions?.Effective ?? new OnnxRuntimeOptions
    {
        Provider = Provider,
        DeviceId = DeviceId,
        IntraOpThreads = IntraOpThreads,
        OptimizationLevel = OptimizationLevel,
        OptimizedModelCacheFolder = OptimizedModelCacheFolder,
    };
}

/// <summary>Opens sessions for models held as <see cref="ModelProto"/> (gradient graphs, forward probes) through <see cref="OnnxSessionFactory"/>.</summary>
public static class GradientSessionFactory
{
    /// <summary>
    /// A session for <paramref name="model"/> (a gradient graph, a forward model, any graph built in memory): through
    /// <see cref="GradientSessionSettings.Sessions"/> when set, so it shares the run's provider choice, else through
    /// <see cref="OnnxSessionFactory"/> with the settings' runtime options. It may use the optimized-model cache, and
    /// skips ONNX Runtime's quantization passes when the graph has no quantized operator (see <see cref="TuningFor"/>).
    /// The caller disposes it.
    /// </summary>
    public static InferenceSession Create(ModelProto model, GradientSessionSettings settings) => CreateDetailed(model, settings).Session;

    /// <summary>As <see cref="Create"/>, with the provider details and whether the optimized-model cache was used.</summary>
    public static CreatedSession CreateDetailed(ModelProto model, GradientSessionSettings settings)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(settings);
        return Open(WithoutDeclaredShapes(model), settings, settings.SpeedTuning ? TuningFor(model) : SessionTuning.None);
    }

    /// <summary>
    /// A session for a shape probe (a forward model with every node output exposed, run once): without graph
    /// optimization, which could not fuse across the exposed outputs anyway and cost about 40 % of opening the probe;
    /// the tensors' element types and sizes do not depend on it.
    /// </summary>
    internal static InferenceSession CreateProbe(ModelProto model, GradientSessionSettings settings)
        => Open(WithoutDeclaredShapes(model), settings,
            settings.SpeedTuning ? new SessionTuning { OptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL } : SessionTuning.None).Session;

    private static CreatedSession Open(ModelProto model, GradientSessionSettings settings, SessionTuning tuning)
    {
        var source = OnnxModelSource.FromModel(model, settings.ExternalDataFolder);
        return settings.Sessions is { } group ? group.OpenCreated(source, tuning) : OnnxSessionFactory.Create(source, settings.ToRuntimeOptions(), tuning);
    }

    /// <summary>
    /// ONNX Runtime graph passes that only rewrite quantized graphs (QuantizeLinear/DequantizeLinear pairs, integer
    /// matrix products, n-bit weights). On a float graph they find nothing to change but still walk its thousands of
    /// nodes, several times each (about a tenth of opening the fixture's gradient graph).
    /// </summary>
    internal static readonly string[] QuantizationPasses =
    [
        "EnsureUniqueDQForNodeUnit", "DoubleQDQPairsRemover", "QDQPropagationTransformer", "WeightBiasQuantization",
        "WhereDummyDq", "QDQSelectorActionTransformer", "QDQS8ToU8Transformer", "QDQFinalCleanupTransformer",
        "MatMulIntegerToFloatFusion", "DynamicQuantizeMatMulFusion", "MatMulNBitsFusion",
    ];

    // Operators those passes start from; a graph with any of them keeps every pass.
    private static readonly HashSet<string> QuantizedOps = new(StringComparer.Ordinal)
    {
        "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "ConvInteger", "QLinearMatMul",
        "QLinearConv", "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "MatMulNBits", "QGemm", "QLinearAdd", "QLinearMul",
    };

    /// <summary>
    /// The per-session choices for a gradient graph: the optimized-model cache, and the quantization passes skipped
    /// when no node of the graph (or of a subgraph) is a quantized operator, which leaves ONNX Runtime's optimized graph
    /// as it was.
    /// </summary>
    internal static SessionTuning TuningFor(ModelProto model)
        => new() { UseOptimizedModelCache = true, DisabledOptimizers = HasQuantizedOps(model.Graph) ? [] : QuantizationPasses };

    private static bool HasQuantizedOps(GraphProto? graph)
        => graph is not null && graph.Node.Any(n => QuantizedOps.Contains(n.OpType)
            || n.Attribute.Any(a => HasQuantizedOps(a.G) || a.Graphs.Any(HasQuantizedOps)));

    /// <summary>
    /// A copy of <paramref name="model"/> whose graph inputs and outputs declare their element types but no shapes, and
    /// without intermediate value infos. Sizes then stay unknown to ONNX Runtime until the first run, which makes no
    /// difference to the kernels or to the run time of these graphs, but halves the opening of a gradient graph: with
    /// symbolic input shapes the session's memory planner compares the inferred shapes of thousands of values (about
    /// 5 of the 9 s it took to open the fixture's training graph on a loaded 2-core machine, measured with
    /// ONNX Runtime's verbose log; 4 s without them, iterations as fast).
    /// </summary>
    internal static ModelProto WithoutDeclaredShapes(ModelProto model)
    {
        var copy = model.Clone();
        foreach (var value in copy.Graph.Input.Concat(copy.Graph.Output))
            if (value.Type?.TensorType is { } tensor) tensor.Shape = null;
        copy.Graph.ValueInfo.Clear();
        return copy;
    }
}
