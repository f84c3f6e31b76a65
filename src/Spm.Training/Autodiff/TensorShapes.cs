using Microsoft.ML.OnnxRuntime;
using Spm.Core;
using Spm.Diffusion.Onnx.Proto;

namespace Spm.Training.Autodiff;

/// <summary>
/// Element type and concrete dimensions of every tensor of a graph, observed in one forward run
/// (<see cref="Probe"/>). The gradient builder uses them for ranks, element types and to decide which axes an
/// operand was broadcast along; the built graph itself reads sizes at run time, so it runs at any batch and
/// spatial size whose broadcasting pattern matches the probe's (probe with batch ≥ 2 and spatial sizes ≥ 2).
/// </summary>
public sealed class TensorShapes
{
    private readonly Dictionary<string, (int ElemType, long[] Dims)> _map;

    /// <summary>Creates a table from known element types (ONNX <c>TensorProto.DataType</c> codes) and dimensions.</summary>
    public TensorShapes(IReadOnlyDictionary<string, (int ElemType, long[] Dims)> entries)
    {
        ArgumentNullException.ThrowIfNull(entries);
        _map = new Dictionary<string, (int, long[])>(entries);
    }

    /// <summary>Number of tensors known.</summary>
    public int Count => _map.Count;

    /// <summary>Looks a tensor up.</summary>
    public bool TryGet(string name, out int elemType, out long[] dims)
    {
        if (_map.TryGetValue(name, out var v)) { elemType = v.ElemType; dims = v.Dims; return true; }
        elemType = 0; dims = [];
        return false;
    }

    internal (int ElemType, long[] Dims) Get(string name)
        => _map.TryGetValue(name, out var v)
            ? v
            : throw new SpmException($"No shape known for tensor '{name}': the shape probe did not produce it.");

    /// <summary>
    /// Runs <paramref name="model"/> once on <paramref name="feeds"/> with every node output exposed and records each
    /// tensor's element type and dimensions (graph inputs and initializers included).
    /// </summary>
    /// <param name="model">The forward model (not modified).</param>
    /// <param name="feeds">A value for every graph input that is not an initializer.</param>
    /// <param name="settings">Where external weights live and how to run.</param>
    public static TensorShapes Probe(ModelProto model, IReadOnlyDictionary<string, OrtValue> feeds, GradientSessionSettings? settings = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(feeds);
        var probe = model.Clone();
        var graph = probe.Graph;
        var known = new HashSet<string>(graph.Output.Select(o => o.Name));
        var entries = new Dictionary<string, (int, long[])>();
        foreach (var init in graph.Initializer)
            entries[init.Name] = (init.DataType, init.Dims.ToArray());
        foreach (var node in graph.Node)
            foreach (var o in node.Output)
                if (o.Length > 0 && known.Add(o))
                    graph.Output.Add(new ValueInfoProto { Name = o });

        using var session = GradientSessionFactory.CreateProbe(probe, settings ?? new GradientSessionSettings());
        var inputNames = feeds.Keys.ToArray();
        var inputValues = inputNames.Select(n => feeds[n]).ToArray();
        foreach (var (n, v) in feeds)
        {
            var info = v.GetTensorTypeAndShape();
            entries[n] = ((int)info.ElementDataType, info.Shape);
        }
        var outputNames = session.OutputMetadata.Keys.ToArray();
        using var runOptions = new RunOptions();
        using var results = session.Run(runOptions, inputNames, inputValues, outputNames);
        for (int i = 0; i < outputNames.Length; i++)
        {
            var value = results[i];
            if (!value.IsTensor) continue;
            var info = value.GetTensorTypeAndShape();
            entries[outputNames[i]] = ((int)info.ElementDataType, info.Shape);
        }
        return new TensorShapes(entries);
    }
}
