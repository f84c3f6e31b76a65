using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Spm.Core;
using Spm.Diffusion.Onnx.Proto;
using Spm.Shapes.Building;
using Spm.Training.Autodiff;
using Spm.Training.Optimizers;

namespace Spm.Shapes.Model;

/// <summary>
/// Full mode of the training engine as a training loop: chosen float initializers of a forward ONNX graph become
/// graph inputs, the gradient graph of a loss is built over them once, and every <see cref="Step"/> feeds the current
/// values, reads the loss and the gradients from one ORT run and lets an <see cref="Optimizer"/> update the values
/// in place. Used to train the project's own models (the built-in tiny-shapes pipeline) from scratch.
/// </summary>
/// <remarks>
/// Parameters are held in managed arrays and fed as tensors over that memory (no copy); turning them into inputs
/// (rather than re-creating a session with new initializers) is what lets one session serve the whole run.
/// </remarks>
public sealed class GraphTrainer : IDisposable
{
    private readonly InferenceSession _session;
    private readonly RunOptions _runOptions = new();
    private readonly List<TrainableTensor> _parameters;
    private readonly string[] _gradientOutputs;
    private readonly string _lossOutput;
    private readonly Optimizer _optimizer;

    private GraphTrainer(InferenceSession session, List<TrainableTensor> parameters, string[] gradientOutputs, string lossOutput, Optimizer optimizer, GradientGraph graph)
    {
        _session = session;
        _parameters = parameters;
        _gradientOutputs = gradientOutputs;
        _lossOutput = lossOutput;
        _optimizer = optimizer;
        Graph = graph;
    }

    /// <summary>The gradient graph the session runs.</summary>
    public GradientGraph Graph { get; }

    /// <summary>The parameters being trained (values updated in place by <see cref="Step"/>).</summary>
    public IReadOnlyList<TrainableTensor> Parameters => _parameters;

    /// <summary>The optimizer (its state can be exported for checkpoints).</summary>
    public Optimizer Optimizer => _optimizer;

    /// <summary>Total number of trained values.</summary>
    public long ParameterCount => _parameters.Sum(p => (long)p.Value.Length);

    /// <summary>
    /// Prepares training of <paramref name="trainable"/> (float initializers of <paramref name="forward"/>) for the
    /// loss <paramref name="loss"/>.
    /// </summary>
    /// <param name="forward">The forward model with its initial weights inline (not modified).</param>
    /// <param name="trainable">Initializers to train; every other initializer stays a constant.</param>
    /// <param name="loss">Loss terms; their target/weight inputs must be fed to <see cref="Step"/>.</param>
    /// <param name="probeFeeds">Example values of the model's own inputs (batch ≥ 2), used once to learn tensor shapes.</param>
    /// <param name="optimizer">Updates the parameters.</param>
    /// <param name="settings">Threads and execution provider.</param>
    /// <exception cref="SpmException">A name is not a float initializer, or an op on the gradient path has no rule.</exception>
    public static GraphTrainer Create(ModelProto forward, IReadOnlyCollection<string> trainable, IReadOnlyList<LossTerm> loss,
        IReadOnlyDictionary<string, OrtValue> probeFeeds, Optimizer optimizer, GradientSessionSettings? settings = null)
    {
        ArgumentNullException.ThrowIfNull(forward);
        ArgumentNullException.ThrowIfNull(trainable);
        ArgumentNullException.ThrowIfNull(loss);
        ArgumentNullException.ThrowIfNull(probeFeeds);
        ArgumentNullException.ThrowIfNull(optimizer);
        settings ??= new GradientSessionSettings();

        var shapes = TensorShapes.Probe(forward, probeFeeds, settings);
        var model = forward.Clone();
        var wanted = new HashSet<string>(trainable, StringComparer.Ordinal);
        var parameters = new List<TrainableTensor>(wanted.Count);
        var byName = model.Graph.Initializer.ToDictionary(i => i.Name, StringComparer.Ordinal);
        foreach (var name in trainable)
        {
            if (!byName.TryGetValue(name, out var init))
                throw new SpmException($"'{name}' is not an initializer of the graph '{model.Graph.Name}'.");
            if (init.DataType != (int)TensorProto.Types.DataType.Float)
                throw new SpmException($"Initializer '{name}' is not float32 (data type {init.DataType}); only float32 weights can be trained.");
            var values = InitializerValues.ReadFloats(init);
            parameters.Add(new TrainableTensor(name, init.Dims.Select(d => checked((int)d)).ToArray(), values));
            model.Graph.Initializer.Remove(init);
            var shape = new TensorShapeProto();
            foreach (var d in init.Dims) shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = d });
            model.Graph.Input.Add(new ValueInfoProto
            {
                Name = name,
                Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = init.DataType, Shape = shape } },
            });
        }

        var graph = GradientGraphBuilder.Build(model, new GradientRequest(loss, parameters.Select(p => p.Name).ToList(), KeepForwardOutputs: false), shapes);
        var session = GradientSessionFactory.Create(graph.Model, settings);
        var outputs = parameters.Select(p => graph.GradientOutputs[p.Name]).ToArray();
        return new GraphTrainer(session, parameters, outputs, graph.LossOutput, optimizer, graph);
    }

    /// <summary>
    /// One training step: runs forward and backward on <paramref name="feeds"/> (the model's inputs and the loss
    /// terms' targets/weights), then updates every parameter with learning rate <paramref name="learningRate"/>.
    /// </summary>
    /// <param name="feeds">Input values by name (parameters are fed by the trainer).</param>
    /// <param name="learningRate">Learning rate of this step.</param>
    /// <param name="maxGradientNorm">When positive, gradients are scaled down so their global L2 norm is at most this.</param>
    /// <returns>The loss before the update and the gradient's global norm (before clipping).</returns>
    /// <exception cref="SpmException">The loss or a gradient is not finite (the parameters are left unchanged).</exception>
    public (double Loss, double GradientNorm) Step(IReadOnlyDictionary<string, OrtValue> feeds, double learningRate, double maxGradientNorm = 0)
    {
        ArgumentNullException.ThrowIfNull(feeds);
        var (loss, norm) = Backward(feeds);
        if (maxGradientNorm > 0 && norm > maxGradientNorm)
        {
            float scale = (float)(maxGradientNorm / norm);
            foreach (var p in _parameters) System.Numerics.Tensors.TensorPrimitives.Multiply(p.Grad, scale, p.Grad);
        }
        _optimizer.Step(_parameters, learningRate);
        return (loss, norm);
    }

    /// <summary>The loss on <paramref name="feeds"/> with gradients written to <see cref="TrainableTensor.Grad"/>, without an update.</summary>
    public (double Loss, double GradientNorm) Backward(IReadOnlyDictionary<string, OrtValue> feeds)
    {
        ArgumentNullException.ThrowIfNull(feeds);
        var names = new string[feeds.Count + _parameters.Count];
        var values = new OrtValue[names.Length];
        int k = 0;
        foreach (var (n, v) in feeds) { names[k] = n; values[k++] = v; }
        var owned = new List<OrtValue>(_parameters.Count);
        try
        {
            foreach (var p in _parameters)
            {
                var v = OrtValue.CreateTensorValueFromMemory(p.Value, p.Shape.Select(d => (long)d).ToArray());
                owned.Add(v);
                names[k] = p.Name;
                values[k++] = v;
            }
            var outputNames = new string[_gradientOutputs.Length + 1];
            outputNames[0] = _lossOutput;
            _gradientOutputs.CopyTo(outputNames, 1);
            using var results = _session.Run(_runOptions, names, values, outputNames);
            double loss = results[0].GetTensorDataAsSpan<float>()[0];
            if (!double.IsFinite(loss)) throw new SpmException($"The loss is not finite ({loss}); lower the learning rate or enable gradient clipping.");
            double sq = 0;
            for (int i = 0; i < _parameters.Count; i++)
            {
                var g = results[i + 1].GetTensorDataAsSpan<float>();
                var dst = _parameters[i].Grad;
                if (g.Length != dst.Length) throw new SpmException($"Gradient of '{_parameters[i].Name}' has {g.Length} values, expected {dst.Length}.");
                g.CopyTo(dst);
                double s = System.Numerics.Tensors.TensorPrimitives.Dot(dst, dst);
                if (!double.IsFinite(s)) throw new SpmException($"The gradient of '{_parameters[i].Name}' is not finite.");
                sq += s;
            }
            return (loss, Math.Sqrt(sq));
        }
        finally
        {
            foreach (var v in owned) v.Dispose();
        }
    }

    /// <summary>Writes the current parameter values into the same-named initializers of <paramref name="builder"/> (names it lacks are skipped).</summary>
    /// <returns>How many parameters were written.</returns>
    public int CopyTo(GraphBuilder builder) => CopyTo(builder, "");

    /// <summary>
    /// Writes the current values of the parameters named <paramref name="prefix"/> + <c>name</c> into the initializers
    /// <c>name</c> of <paramref name="builder"/> — the way back from a composed graph (<see cref="Spm.Diffusion.Onnx.GraphComposer"/>)
    /// to one of its parts. Other parameters, and names the builder lacks, are skipped.
    /// </summary>
    /// <returns>How many parameters were written.</returns>
    public int CopyTo(GraphBuilder builder, string prefix)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(prefix);
        var names = new HashSet<string>(builder.Initializers.Select(i => i.Name), StringComparer.Ordinal);
        int n = 0;
        foreach (var p in _parameters)
        {
            if (!p.Name.StartsWith(prefix, StringComparison.Ordinal)) continue;
            var name = p.Name[prefix.Length..];
            if (!names.Contains(name)) continue;
            builder.SetInitializer(name, TensorInit.FromData((float[])p.Value.Clone()));
            n++;
        }
        return n;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _runOptions.Dispose();
        if (Environment.GetEnvironmentVariable("SPM_ORT_PROFILE") is { Length: > 0 }) _session.EndProfiling();
        _session.Dispose();
    }
}

/// <summary>Reads float values of an inline initializer.</summary>
internal static class InitializerValues
{
    public static float[] ReadFloats(TensorProto t)
    {
        long count = 1;
        foreach (var d in t.Dims) count = checked(count * d);
        if (count > int.MaxValue) throw new SpmException($"Initializer '{t.Name}' is too large to train in memory ({count} values).");
        if (t.FloatData.Count == count) return t.FloatData.ToArray();
        if (t.RawData.Length == count * 4)
        {
            var values = new float[count];
            System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(t.RawData.Span).CopyTo(values);
            return values;
        }
        throw new SpmException($"Initializer '{t.Name}' holds no inline float data of {count} values (external data is not supported for training).");
    }
}
