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
        var probeFeeds = feeds.Where(kv => kv.Key != RowWeightsInput).ToDictionary(kv => kv.Key, kv => kv.Value);
        var shapes = TensorShapes.Probe(withRowLoss, probeFeeds, settings);
        var request = new GradientRequest([LossTerm.WeightedSum(RowLossOutput, RowWeightsInput)], wrt);
        var graph = GradientGraphBuilder.Build(withRowLoss, request, shapes);
        var session = GradientSessionFactory.Create(graph.Model, settings);
        return new MembraneTrainingGraph(session, graph.LossOutput, graph.GradientOutputs) { BackwardNodes = graph.BackwardNodeCount };
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
