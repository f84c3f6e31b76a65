using Microsoft.ML.OnnxRuntime;
using Spm.Core;
using Spm.Diffusion.Membranes;
using Spm.Diffusion.Onnx.Proto;
using Spm.Training.Autodiff;

namespace Spm.Training.LatentAnchoring;

/// <summary>
/// The trainable forward + backward graph of latent anchoring: the membrane-injected UNet, a per-row mean squared
/// error to a target input, and a weighted sum of the rows as the loss, differentiated with respect to every
/// membrane tensor. Row weights carry the method: 1 for the erasure row and lambda / anchors for each anchor row,
/// so one call computes <c>L_era + lambda * L_anc</c> and its gradients.
/// </summary>
internal sealed class MembraneTrainingGraph : IDisposable
{
    public const string TargetInput = "spm.train.target";
    public const string RowWeightsInput = "spm.train.row_weights";
    public const string RowLossOutput = "spm.train.row_mse";

    private readonly InferenceSession _session;
    private readonly string[] _outputNames;

    private MembraneTrainingGraph(InferenceSession session, string lossOutput, IReadOnlyDictionary<string, string> gradientOutputs)
    {
        _session = session;
        LossOutput = lossOutput;
        GradientOutputs = gradientOutputs;
        _outputNames = [lossOutput, RowLossOutput, .. gradientOutputs.Values];
    }

    public string LossOutput { get; }

    /// <summary>Membrane input name to gradient output name.</summary>
    public IReadOnlyDictionary<string, string> GradientOutputs { get; }

    /// <summary>Number of nodes added by the backward pass (for diagnostics).</summary>
    public int BackwardNodes { get; private set; }

    /// <summary>Adds the per-row MSE to the injected UNet's first output.</summary>
    public static ModelProto AddRowLoss(ModelProto injected)
    {
        var model = injected.Clone();
        var g = model.Graph;
        var output = g.Output[0];
        long opset = model.OpsetImport.FirstOrDefault(o => o.Domain is "" or "ai.onnx")?.Version ?? 0;
        int elemType = output.Type?.TensorType?.ElemType ?? (int)TensorProto.Types.DataType.Float;
        if (elemType != (int)TensorProto.Types.DataType.Float)
            throw new SpmException($"Training needs a float32 UNet; '{output.Name}' is of ONNX type {elemType}.");
        g.Input.Add(TensorInput(TargetInput, elemType, 4));
        g.Node.Add(OnnxNodes.Node("Sub", "spm.train/Diff", [output.Name, TargetInput], ["spm.train.diff"]));
        g.Node.Add(OnnxNodes.Node("Mul", "spm.train/Square", ["spm.train.diff", "spm.train.diff"], ["spm.train.sq"]));
        if (opset >= 18)
        {
            g.Initializer.Add(OnnxNodes.Int64Tensor("spm.train.axes", [1, 2, 3]));
            g.Node.Add(OnnxNodes.Node("ReduceMean", "spm.train/RowMean", ["spm.train.sq", "spm.train.axes"], [RowLossOutput],
                OnnxAttributes.Int("keepdims", 0)));
        }
        else
        {
            var axes = OnnxAttributes.Ints("axes", [1L, 2, 3]);
            g.Node.Add(OnnxNodes.Node("ReduceMean", "spm.train/RowMean", ["spm.train.sq"], [RowLossOutput],
                axes, OnnxAttributes.Int("keepdims", 0)));
        }
        g.Output.Add(new ValueInfoProto { Name = RowLossOutput });
        return model;
    }

    /// <summary>Builds the gradient graph for the shapes of <paramref name="feeds"/> and opens its session.</summary>
    public static MembraneTrainingGraph Build(ModelProto withRowLoss, IReadOnlyList<string> wrt, IReadOnlyDictionary<string, OrtValue> feeds, GradientSessionSettings settings)
    {
        var graph = BuildGradient(withRowLoss, wrt, feeds, settings);
        var created = GradientSessionFactory.CreateDetailed(graph.Model, settings);
        return new MembraneTrainingGraph(created.Session, graph.LossOutput, graph.GradientOutputs)
        {
            BackwardNodes = graph.BackwardNodeCount,
            OptimizedModel = created.OptimizedModel,
        };
    }

    /// <summary>Whether the session's optimized graph came from (or went to) the optimized-model cache.</summary>
    public Spm.Diffusion.Runtime.OptimizedModelUse OptimizedModel { get; private init; }

    /// <summary>
    /// The gradient graph (loss and gradients with respect to <paramref name="wrt"/>) of the training model, its shapes
    /// probed on <paramref name="feeds"/>; with <paramref name="smallProbe"/> the probe runs at a small latent size
    /// (see <see cref="ProbeFeeds"/>), which builds the same graph.
    /// </summary>
    internal static GradientGraph BuildGradient(ModelProto withRowLoss, IReadOnlyList<string> wrt, IReadOnlyDictionary<string, OrtValue> feeds,
        GradientSessionSettings settings, bool smallProbe = true)
    {
        var owned = new List<OrtValue>();
        TensorShapes shapes;
        try
        {
            var probeFeeds = smallProbe
                ? ProbeFeeds(withRowLoss, feeds, wrt, owned)
                : feeds.Where(kv => kv.Key != RowWeightsInput).ToDictionary(kv => kv.Key, kv => kv.Value);
            shapes = TensorShapes.Probe(withRowLoss, probeFeeds, settings);
        }
        finally
        {
            foreach (var v in owned) v.Dispose();
        }
        var request = new GradientRequest([LossTerm.WeightedSum(RowLossOutput, RowWeightsInput)], wrt);
        return GradientGraphBuilder.Build(withRowLoss, request, shapes);
    }

    /// <summary>
    /// The feeds of the shape probe: the training feeds (without the row weights, which the forward graph does not read),
    /// with the latent inputs (the sample and the target) cropped to a small spatial size when the graph allows it.
    /// The gradient graph reads sizes at run time and uses the probe only for ranks, element types and which axes were
    /// broadcast, so a probe at the smallest size that keeps every UNet level at least 2x2 builds the same graph; and a
    /// probe with every node output exposed at the real size allocates every attention map of the UNet (at 256 pixels,
    /// most of a gradient-graph build's time).
    /// </summary>
    internal static Dictionary<string, OrtValue> ProbeFeeds(ModelProto model, IReadOnlyDictionary<string, OrtValue> feeds, IReadOnlyList<string> wrt, List<OrtValue> owned)
    {
        var probe = feeds.Where(kv => kv.Key != RowWeightsInput).ToDictionary(kv => kv.Key, kv => kv.Value);
        if (!feeds.TryGetValue(TargetInput, out var target)) return probe;
        var latent = target.GetTensorTypeAndShape().Shape;
        if (latent.Length != 4) return probe;
        // Every level of the UNet halves the latent once (its strided convolutions); the probe keeps the deepest level 2x2.
        int depth = model.Graph.Node.Count(n => n.OpType == "Conv" && n.Attribute.Any(a => a.Name == "strides" && a.Ints.Any(v => v > 1)));
        if (depth > 16) return probe;
        long side = 2L << depth;
        if (latent[2] <= side || latent[3] <= side || latent[2] % (side / 2) != 0 || latent[3] % (side / 2) != 0) return probe;
        var trainable = new HashSet<string>(wrt, StringComparer.Ordinal);
        var declared = model.Graph.Input.ToDictionary(i => i.Name, StringComparer.Ordinal);
        var latentInputs = new List<string>();
        foreach (var (name, value) in probe)
        {
            if (trainable.Contains(name)) continue;
            var info = value.GetTensorTypeAndShape();
            if (info.ElementDataType != Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Float || info.Shape.Length != 4 || info.Shape[2] != latent[2] || info.Shape[3] != latent[3]) continue;
            // A graph that declares fixed spatial sizes must be probed at them.
            if (declared.TryGetValue(name, out var input) && input.Type?.TensorType?.Shape is { } shape && shape.Dim.Count == 4
                && (shape.Dim[2].DimValue > 0 || shape.Dim[3].DimValue > 0))
                return probe;
            latentInputs.Add(name);
        }
        foreach (var name in latentInputs)
        {
            var dims = probe[name].GetTensorTypeAndShape().Shape;
            var data = probe[name].GetTensorDataAsSpan<float>();
            var small = new float[dims[0] * dims[1] * side * side];
            int k = 0;
            for (long plane = 0; plane < dims[0] * dims[1]; plane++)
                for (long y = 0; y < side; y++)
                {
                    data.Slice((int)((plane * dims[2] + y) * dims[3]), (int)side).CopyTo(small.AsSpan(k, (int)side));
                    k += (int)side;
                }
            var value = OrtValue.CreateTensorValueFromMemory(small, [dims[0], dims[1], side, side]);
            owned.Add(value);
            probe[name] = value;
        }
        return probe;
    }

    /// <summary>Runs forward and backward; returns the loss and per-row MSE and copies gradients into <paramref name="gradients"/>.</summary>
    public (double Loss, float[] RowLoss) Run(IReadOnlyDictionary<string, OrtValue> feeds, IReadOnlyDictionary<string, float[]> gradients)
    {
        var names = feeds.Keys.ToArray();
        var values = names.Select(n => feeds[n]).ToArray();
        using var runOptions = new RunOptions();
        using var results = _session.Run(runOptions, names, values, _outputNames);
        double loss = results[0].GetTensorDataAsSpan<float>()[0];
        float[] rows = results[1].GetTensorDataAsSpan<float>().ToArray();
        int i = 2;
        foreach (var (input, _) in GradientOutputs)
        {
            var span = results[i++].GetTensorDataAsSpan<float>();
            var dst = gradients[input];
            if (span.Length != dst.Length) throw new SpmException($"Gradient of '{input}' has {span.Length} values, expected {dst.Length}.");
            span.CopyTo(dst);
        }
        return (loss, rows);
    }

    private static ValueInfoProto TensorInput(string name, int elemType, int rank)
        => OnnxNodes.TensorValueInfo(name, elemType, Enumerable.Range(0, rank).Select(i => OnnxNodes.Symbolic($"{name}_d{i}")));

    public void Dispose() => _session.Dispose();
}
