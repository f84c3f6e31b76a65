using Google.Protobuf;
using Spm.Core;
using Spm.Core.IO;
using Spm.Core.Randomness;
using Spm.Diffusion.Onnx;
using Spm.Diffusion.Onnx.Proto;
using DataType = Spm.Diffusion.Onnx.Proto.TensorProto.Types.DataType;

namespace Spm.Shapes.Building;

/// <summary>One dimension of a graph input/output: a fixed size or a symbolic name such as <c>batch</c>.</summary>
public readonly record struct Dim
{
    private Dim(long? value, string? name) { Value = value; Name = name; }

    /// <summary>The fixed size, or null for a symbolic dimension.</summary>
    public long? Value { get; }

    /// <summary>The symbolic name, or null for a fixed dimension.</summary>
    public string? Name { get; }

    /// <summary>A fixed dimension.</summary>
    public static implicit operator Dim(long value) => new(value, null);

    /// <summary>A symbolic dimension.</summary>
    public static implicit operator Dim(string name) => new(null, name);
}

/// <summary>
/// A small fluent builder of ONNX graphs over <see cref="ModelProto"/>, naming things the way PyTorch's
/// exporter does: module scopes (<see cref="Scope"/>) give node names such as
/// <c>/down_blocks.1/attentions.0/transformer_blocks.0/attn1/to_q/MatMul</c> and outputs
/// <c>&lt;node&gt;_output_0</c>; parameters are named by module path (<c>conv_in.weight</c>), except Linear
/// weights consumed by MatMul, which are stored transposed [in, out] as <c>onnx::MatMul_N</c>.
/// Initializer values are produced only when the model is built or saved (see <see cref="TensorInit"/>),
/// deterministically from the seed and each tensor's name.
/// </summary>
public sealed class GraphBuilder
{
    /// <summary>The opset every builder in this folder targets (PyTorch's SD exports use 14).</summary>
    public const int DefaultOpset = 14;

    private readonly GraphProto _graph;
    private readonly List<PendingInitializer> _initializers = [];
    private readonly HashSet<string> _valueNames = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _nodeNameUses = new(StringComparer.Ordinal);
    private readonly List<string> _scopes = [];
    private readonly ulong _seed;
    private int _matMulWeights;

    /// <summary>Creates an empty graph.</summary>
    /// <param name="graphName">The graph's name (e.g. <c>main_graph</c>).</param>
    /// <param name="seed">Seed of every random initializer.</param>
    /// <param name="opset">The default-domain opset to declare.</param>
    public GraphBuilder(string graphName, ulong seed, int opset = DefaultOpset)
    {
        _graph = new GraphProto { Name = graphName };
        _seed = seed;
        Opset = opset;
    }

    /// <summary>The declared default-domain opset.</summary>
    public int Opset { get; }

    /// <summary>The current module path with dots (<c>down_blocks.1.attentions.0</c>), empty at the root.</summary>
    public string ModulePath => string.Join('.', _scopes);

    /// <summary>The node-name prefix of the current scope (<c>/down_blocks.1/attentions.0</c>), empty at the root.</summary>
    public string ScopePath => _scopes.Count == 0 ? "" : "/" + string.Join('/', _scopes);

    /// <summary>Number of parameters (elements of float initializers) declared so far.</summary>
    public long ParameterCount => _initializers.Where(i => i.Type == DataType.Float).Sum(i => i.ElementCount);

    /// <summary>The names of the nodes declared so far, in order (no weights are drawn to read them).</summary>
    public IEnumerable<string> NodeNames => _graph.Node.Select(n => n.Name);

    /// <summary>The declared initializers (name and shape), in declaration order.</summary>
    public IEnumerable<(string Name, long[] Shape)> Initializers => _initializers.Select(i => (i.Name, i.Dims));

    /// <summary>Enters a module scope (one or more path segments, e.g. <c>down_blocks.1</c>); dispose to leave it.</summary>
    public IDisposable Scope(string module)
    {
        ArgumentException.ThrowIfNullOrEmpty(module);
        _scopes.Add(module);
        return new ScopeExit(this, _scopes.Count);
    }

    private sealed class ScopeExit(GraphBuilder owner, int depth) : IDisposable
    {
        private bool _done;

        public void Dispose()
        {
            if (_done) return;
            _done = true;
            if (owner._scopes.Count != depth) throw new InvalidOperationException("Scopes must be left in reverse order.");
            owner._scopes.RemoveAt(depth - 1);
        }
    }

    /// <summary>Declares a graph input.</summary>
    public string Input(string name, DataType type, params Dim[] dims)
    {
        _graph.Input.Add(ValueInfo(name, type, dims));
        Claim(name);
        return name;
    }

    /// <summary>Declares an existing value as a graph output.</summary>
    public void Output(string name, DataType type, params Dim[] dims)
    {
        if (!_valueNames.Contains(name)) throw new InvalidOperationException($"Output '{name}' is not produced by any node.");
        _graph.Output.Add(ValueInfo(name, type, dims));
    }

    private static ValueInfoProto ValueInfo(string name, DataType type, Dim[] dims)
    {
        var shape = new TensorShapeProto();
        foreach (var d in dims)
            shape.Dim.Add(d.Name is null ? new TensorShapeProto.Types.Dimension { DimValue = d.Value!.Value } : new TensorShapeProto.Types.Dimension { DimParam = d.Name });
        return new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)type, Shape = shape } },
        };
    }

    private void Claim(string name)
    {
        if (!_valueNames.Add(name)) throw new InvalidOperationException($"Value name '{name}' is used twice.");
    }

    /// <summary>
    /// Adds a float parameter of the current module: <c>&lt;module path&gt;.&lt;localName&gt;</c>
    /// (or <paramref name="fullName"/> when given).
    /// </summary>
    public string Parameter(string localName, long[] shape, TensorInit init, string? fullName = null)
    {
        var name = fullName ?? (ModulePath.Length == 0 ? localName : $"{ModulePath}.{localName}");
        return AddInitializer(name, DataType.Float, shape, init, null);
    }

    /// <summary>Adds a Linear weight stored transposed [in, out] for a MatMul, named like PyTorch's exporter (<c>onnx::MatMul_N</c>).</summary>
    public string MatMulWeight(long inFeatures, long outFeatures, TensorInit init)
        => AddInitializer($"onnx::MatMul_{++_matMulWeights}", DataType.Float, [inFeatures, outFeatures], init, null);

    /// <summary>Adds an int64 initializer with explicit values.</summary>
    public string Int64Initializer(string name, long[] shape, long[] values)
    {
        if (values.Length != Product(shape)) throw new ArgumentException($"'{name}': {values.Length} values for shape [{string.Join(",", shape)}].");
        return AddInitializer(name, DataType.Int64, shape, null, values);
    }

    /// <summary>
    /// Replaces how a declared float initializer is filled (e.g. to load trained or reference weights
    /// into a freshly declared graph). The shape stays as declared.
    /// </summary>
    /// <exception cref="KeyNotFoundException">No float initializer has that name.</exception>
    public void SetInitializer(string name, TensorInit init)
    {
        int i = _initializers.FindIndex(p => p.Name == name && p.Type == DataType.Float);
        if (i < 0) throw new KeyNotFoundException($"No float initializer named '{name}'.");
        _initializers[i] = _initializers[i] with { Init = init };
    }

    /// <summary>The declared shape of an initializer.</summary>
    /// <exception cref="KeyNotFoundException">No initializer has that name.</exception>
    public long[] ShapeOf(string name)
        => _initializers.FirstOrDefault(p => p.Name == name)?.Dims.ToArray() ?? throw new KeyNotFoundException($"No initializer named '{name}'.");

    private string AddInitializer(string name, DataType type, long[] shape, TensorInit? init, long[]? int64Values)
    {
        foreach (var d in shape)
            if (d <= 0) throw new ArgumentException($"Initializer '{name}' has a non-positive dimension: [{string.Join(",", shape)}].");
        Claim(name);
        _initializers.Add(new PendingInitializer(name, type, shape, Product(shape), init, int64Values));
        return name;
    }

    /// <summary>Adds a node in the current scope and returns its single output's name.</summary>
    /// <param name="opType">The ONNX operator.</param>
    /// <param name="inputs">Input value names (empty string for an omitted optional input).</param>
    /// <param name="attributes">Node attributes (see <see cref="Attr"/>).</param>
    public string Node(string opType, string[] inputs, params AttributeProto[] attributes)
        => NodeNamed(opType, inputs, null, attributes);

    /// <summary>Adds a node whose output gets the given name (graph outputs such as <c>out_sample</c>).</summary>
    public string NodeNamed(string opType, string[] inputs, string? outputName, params AttributeProto[] attributes)
        => NodeMulti(opType, inputs, 1, outputName is null ? null : [outputName], attributes)[0];

    /// <summary>Adds a node with several outputs.</summary>
    public string[] NodeMulti(string opType, string[] inputs, int outputCount, string[]? outputNames, params AttributeProto[] attributes)
    {
        foreach (var input in inputs)
            if (input.Length > 0 && !_valueNames.Contains(input))
                throw new InvalidOperationException($"Node {opType} in '{ScopePath}' uses unknown value '{input}'.");
        var baseName = $"{ScopePath}/{opType}";
        int use = _nodeNameUses.TryGetValue(baseName, out var n) ? n : 0;
        _nodeNameUses[baseName] = use + 1;
        var nodeName = use == 0 ? baseName : $"{baseName}_{use}";
        var node = new NodeProto { OpType = opType, Name = nodeName };
        node.Input.AddRange(inputs);
        var outputs = new string[outputCount];
        for (int i = 0; i < outputCount; i++)
        {
            outputs[i] = outputNames?[i] ?? $"{nodeName}_output_{i}";
            Claim(outputs[i]);
        }
        node.Output.AddRange(outputs);
        node.Attribute.AddRange(attributes);
        _graph.Node.Add(node);
        return outputs;
    }

    /// <summary>A Constant node holding int64 values (1-D, or a scalar when <paramref name="scalar"/>).</summary>
    public string ConstInt64(long[] values, bool scalar = false)
    {
        var t = new TensorProto { DataType = (int)DataType.Int64 };
        if (!scalar) t.Dims.Add(values.Length);
        else if (values.Length != 1) throw new ArgumentException("A scalar needs exactly one value.");
        t.Int64Data.AddRange(values);
        return Node("Constant", [], Attr.Tensor("value", t));
    }

    /// <summary>A Constant node holding float values with the given shape (empty shape = scalar).</summary>
    public string ConstFloat(float[] values, params long[] shape)
    {
        if (values.Length != Product(shape)) throw new ArgumentException("Constant value count does not match its shape.");
        var t = new TensorProto { DataType = (int)DataType.Float };
        t.Dims.AddRange(shape);
        t.RawData = ByteString.CopyFrom(FloatBytes.AsBytes(values));
        return Node("Constant", [], Attr.Tensor("value", t));
    }

    /// <summary>A float scalar Constant.</summary>
    public string ConstScalar(float value) => ConstFloat([value]);

    private static long Product(long[] shape)
    {
        long p = 1;
        foreach (var d in shape) p = checked(p * d);
        return p;
    }

    /// <summary>Total bytes of all initializers.</summary>
    public long InitializerBytes => _initializers.Sum(i => i.ByteCount);

    /// <summary>
    /// Builds the model in memory with every initializer inline. Fails for models whose weights exceed
    /// protobuf's 2 GB message limit; save those with external data (<see cref="Save"/>).
    /// </summary>
    public ModelProto Build(IReadOnlyDictionary<string, string>? metadata = null)
    {
        if (InitializerBytes > InlineLimitBytes)
            throw new SpmException($"The model's weights take {InitializerBytes / (1 << 20)} MB, beyond protobuf's 2 GB limit for one file: save it with external data.");
        var model = Shell(metadata);
        var buffer = new float[MaxElements()];
        foreach (var init in _initializers)
        {
            var t = init.Describe();
            t.RawData = ByteString.CopyFrom(Materialize(init, buffer));
            model.Graph.Initializer.Add(t);
        }
        return model;
    }

    private const long InlineLimitBytes = 2L * 1024 * 1024 * 1024 - 64L * 1024 * 1024;

    /// <summary>
    /// Writes the model to <paramref name="modelPath"/>. With <paramref name="externalDataFile"/> (a file name
    /// in the same folder, e.g. <c>weights.pb</c>), every initializer of at least
    /// <paramref name="externalThresholdBytes"/> bytes goes there, streamed one tensor at a time; both files are
    /// written atomically. Returns the number of bytes written to the external file (0 without one).
    /// </summary>
    public long Save(string modelPath, string? externalDataFile = null, int externalThresholdBytes = 1024,
        IReadOnlyDictionary<string, string>? metadata = null, IProgress<double>? progress = null, CancellationToken cancellationToken = default)
    {
        if (externalDataFile is null)
        {
            var inline = Build(metadata);
            AtomicFile.Write(modelPath, s => inline.WriteTo(s));
            progress?.Report(1.0);
            return 0;
        }
        if (externalDataFile.Contains('/') || externalDataFile.Contains('\\') || externalDataFile is "." or "..")
            throw new ArgumentException($"The external data file must be a plain file name in the model's folder, got '{externalDataFile}'.");
        var model = Shell(metadata);
        var folder = Path.GetDirectoryName(Path.GetFullPath(modelPath))!;
        long total = InitializerBytes, done = 0, offset = 0;
        var buffer = new float[MaxElements()];
        AtomicFile.Write(Path.Combine(folder, externalDataFile), stream =>
        {
            foreach (var init in _initializers)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var t = init.Describe();
                var bytes = Materialize(init, buffer);
                if (bytes.Length >= externalThresholdBytes)
                {
                    stream.Write(bytes);
                    t.DataLocation = TensorProto.Types.DataLocation.External;
                    t.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = externalDataFile });
                    t.ExternalData.Add(new StringStringEntryProto { Key = "offset", Value = offset.ToString(System.Globalization.CultureInfo.InvariantCulture) });
                    t.ExternalData.Add(new StringStringEntryProto { Key = "length", Value = bytes.Length.ToString(System.Globalization.CultureInfo.InvariantCulture) });
                    offset += bytes.Length;
                }
                else
                {
                    t.RawData = ByteString.CopyFrom(bytes);
                }
                model.Graph.Initializer.Add(t);
                done += bytes.Length;
                progress?.Report(total == 0 ? 1.0 : (double)done / total);
            }
        });
        AtomicFile.Write(modelPath, s => model.WriteTo(s));
        return offset;
    }

    private long MaxElements() => _initializers.Count == 0 ? 0 : _initializers.Max(i => i.Type == DataType.Float ? i.ElementCount : 0);

    private ReadOnlySpan<byte> Materialize(PendingInitializer init, float[] buffer)
    {
        if (init.Type == DataType.Int64)
            return System.Runtime.InteropServices.MemoryMarshal.AsBytes(init.Int64Values.AsSpan());
        var span = buffer.AsSpan(0, checked((int)init.ElementCount));
        var rng = init.Init!.IsRandom ? new SeededRandom(TensorSeed(_seed, init.Name)) : null;
        init.Init.Fill(span, rng!);
        return FloatBytes.AsBytes(span);
    }

    /// <summary>The seed of one tensor's generator: the builder seed mixed with a 64-bit FNV-1a hash of the name.</summary>
    internal static ulong TensorSeed(ulong seed, string name)
    {
        ulong h = 14695981039346656037UL;
        foreach (char c in name)
        {
            h ^= c;
            h *= 1099511628211UL;
        }
        return seed ^ h;
    }

    private ModelProto Shell(IReadOnlyDictionary<string, string>? metadata)
    {
        var model = new ModelProto
        {
            IrVersion = 7,
            ProducerName = "spm-model-builder",
            ProducerVersion = "1",
            Graph = _graph.Clone(),
        };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = Opset });
        if (metadata is not null)
            foreach (var (k, v) in metadata.OrderBy(p => p.Key, StringComparer.Ordinal))
                model.MetadataProps.Add(new StringStringEntryProto { Key = k, Value = v });
        return model;
    }

    private sealed record PendingInitializer(string Name, DataType Type, long[] Dims, long ElementCount, TensorInit? Init, long[]? Int64Values)
    {
        public long ByteCount => ElementCount * (Type == DataType.Int64 ? 8 : 4);

        public TensorProto Describe()
        {
            var t = new TensorProto { Name = Name, DataType = (int)Type };
            t.Dims.AddRange(Dims);
            return t;
        }
    }
}

/// <summary>Shorthands for ONNX node attributes in builder code (forwarding to <see cref="OnnxAttributes"/>, the one implementation).</summary>
public static class Attr
{
    /// <summary>An int attribute.</summary>
    public static AttributeProto Int(string name, long value) => OnnxAttributes.Int(name, value);

    /// <summary>A float attribute.</summary>
    public static AttributeProto Float(string name, float value) => OnnxAttributes.Float(name, value);

    /// <summary>An ints attribute.</summary>
    public static AttributeProto Ints(string name, params long[] values) => OnnxAttributes.Ints(name, values);

    /// <summary>A string attribute.</summary>
    public static AttributeProto String(string name, string value) => OnnxAttributes.String(name, value);

    /// <summary>A tensor attribute.</summary>
    public static AttributeProto Tensor(string name, TensorProto value) => OnnxAttributes.Tensor(name, value);
}
