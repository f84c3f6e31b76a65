using System.Globalization;
using Google.Protobuf;
using Spm.Core;
using Spm.Diffusion.Onnx.Proto;
using static Spm.Diffusion.Onnx.OnnxAttributes;

namespace Spm.Training.Autodiff;

/// <summary>
/// What a gradient rule sees while the backward graph is being built: forward tensor shapes and types, constant
/// values, and helpers that append backward nodes with unique readable names (<c>grad/&lt;node&gt;/&lt;tag&gt;</c>).
/// </summary>
internal sealed class GradientContext
{
    private readonly TensorShapes _shapes;
    private readonly Dictionary<string, TensorProto> _initializers = new();
    private readonly Dictionary<string, TensorProto> _constantNodes = new();
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _constCache = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _shapeCache = new(StringComparer.Ordinal);
    private readonly Dictionary<string, (int, long[])> _extraShapes = new(StringComparer.Ordinal);

    public GradientContext(GraphProto graph, TensorShapes shapes, int opset)
    {
        _shapes = shapes;
        Opset = opset;
        foreach (var init in graph.Initializer)
        {
            _initializers[init.Name] = init;
            _names.Add(init.Name);
        }
        foreach (var i in graph.Input) _names.Add(i.Name);
        foreach (var node in graph.Node)
        {
            if (node.Name.Length > 0) _names.Add(node.Name);
            foreach (var o in node.Output) _names.Add(o);
            if (node.OpType == "Constant" && node.Output.Count == 1 && Find(node, "value") is { } v)
                _constantNodes[node.Output[0]] = v.T;
        }
    }

    /// <summary>Opset version of the default ONNX domain; backward nodes use the operator versions it implies.</summary>
    public int Opset { get; }

    /// <summary>Backward nodes in emission order (a valid topological order after the forward nodes).</summary>
    public List<NodeProto> Nodes { get; } = new();

    /// <summary>Constants created for the backward graph.</summary>
    public List<TensorProto> NewInitializers { get; } = new();

    /// <summary>The forward node whose rule is running; names the nodes and tensors it adds.</summary>
    public string Scope { get; set; } = "loss";

    public string Fresh(string tag)
    {
        var stem = $"grad/{Scope}/{tag}";
        var name = stem;
        for (int k = 1; !_names.Add(name); k++) name = $"{stem}_{k}";
        return name;
    }

    public string Reserve(string exactName)
    {
        if (!_names.Add(exactName))
            throw new SpmException($"Cannot add tensor '{exactName}' to the gradient graph: the name is already used.");
        return exactName;
    }

    // ---------------------------------------------------------------- node emission

    public string Op(string opType, string tag, IEnumerable<string> inputs, params AttributeProto[] attrs)
        => OpMulti(opType, tag, inputs, 1, attrs)[0];

    public string OpNamed(string opType, string outputName, IEnumerable<string> inputs, params AttributeProto[] attrs)
    {
        var node = new NodeProto { OpType = opType, Name = Fresh(opType) };
        node.Input.AddRange(inputs);
        node.Output.Add(outputName);
        node.Attribute.AddRange(attrs);
        Nodes.Add(node);
        return outputName;
    }

    public string[] OpMulti(string opType, string tag, IEnumerable<string> inputs, int outputs, params AttributeProto[] attrs)
    {
        var node = new NodeProto { OpType = opType, Name = Fresh(opType) };
        node.Input.AddRange(inputs);
        var outs = new string[outputs];
        for (int i = 0; i < outputs; i++) outs[i] = Fresh(outputs == 1 ? tag : $"{tag}{i}");
        node.Output.AddRange(outs);
        node.Attribute.AddRange(attrs);
        Nodes.Add(node);
        return outs;
    }

    // ---------------------------------------------------------------- forward facts

    public int ElemType(string tensor) => Info(tensor).Item1;

    public long[] Dims(string tensor) => Info(tensor).Item2;

    public int Rank(string tensor) => Dims(tensor).Length;

    /// <summary>Records the shape of a tensor this context created, so later helpers can reason about it.</summary>
    public void SetInfo(string tensor, int elemType, long[] dims) => _extraShapes[tensor] = (elemType, dims);

    private (int, long[]) Info(string tensor)
        => _extraShapes.TryGetValue(tensor, out var v) ? v : _shapes.Get(tensor);

    public static bool IsFloating(int elemType) => elemType is 1 or 10 or 11 or 16;

    /// <summary>Values of a constant (initializer or Constant node) of at most 64 elements, as doubles; null otherwise.</summary>
    public double[]? ConstantValue(string tensor)
    {
        if (tensor.Length == 0) return null;
        if (!_initializers.TryGetValue(tensor, out var t) && !_constantNodes.TryGetValue(tensor, out t)) return null;
        if (t.DataLocation == TensorProto.Types.DataLocation.External) return null;
        long count = 1;
        foreach (var d in t.Dims) count *= d;
        if (count > 64) return null;
        return ReadValues(t, (int)count);
    }

    public long[]? ConstantInts(string tensor)
        => ConstantValue(tensor) is { } v ? v.Select(x => (long)x).ToArray() : null;

    private static double[]? ReadValues(TensorProto t, int count)
    {
        var raw = t.RawData.Span;
        var r = new double[count];
        switch ((TensorProto.Types.DataType)t.DataType)
        {
            case TensorProto.Types.DataType.Float:
                if (raw.Length >= 4 * count) for (int i = 0; i < count; i++) r[i] = BitConverter.ToSingle(raw.Slice(4 * i, 4));
                else if (t.FloatData.Count >= count) for (int i = 0; i < count; i++) r[i] = t.FloatData[i];
                else return null;
                return r;
            case TensorProto.Types.DataType.Double:
                if (raw.Length >= 8 * count) for (int i = 0; i < count; i++) r[i] = BitConverter.ToDouble(raw.Slice(8 * i, 8));
                else if (t.DoubleData.Count >= count) for (int i = 0; i < count; i++) r[i] = t.DoubleData[i];
                else return null;
                return r;
            case TensorProto.Types.DataType.Int64:
                if (raw.Length >= 8 * count) for (int i = 0; i < count; i++) r[i] = BitConverter.ToInt64(raw.Slice(8 * i, 8));
                else if (t.Int64Data.Count >= count) for (int i = 0; i < count; i++) r[i] = t.Int64Data[i];
                else return null;
                return r;
            case TensorProto.Types.DataType.Int32:
                if (raw.Length >= 4 * count) for (int i = 0; i < count; i++) r[i] = BitConverter.ToInt32(raw.Slice(4 * i, 4));
                else if (t.Int32Data.Count >= count) for (int i = 0; i < count; i++) r[i] = t.Int32Data[i];
                else return null;
                return r;
            default:
                return null;
        }
    }

    // ---------------------------------------------------------------- constants

    /// <summary>A scalar constant of the given element type (shared between rules).</summary>
    public string Scalar(double value, int elemType)
    {
        var key = $"s{elemType}:{value.ToString("R", CultureInfo.InvariantCulture)}";
        if (_constCache.TryGetValue(key, out var name)) return name;
        var t = new TensorProto { DataType = elemType };
        switch ((TensorProto.Types.DataType)elemType)
        {
            case TensorProto.Types.DataType.Float: t.RawData = ByteString.CopyFrom(BitConverter.GetBytes((float)value)); break;
            case TensorProto.Types.DataType.Double: t.RawData = ByteString.CopyFrom(BitConverter.GetBytes(value)); break;
            case TensorProto.Types.DataType.Float16: t.RawData = ByteString.CopyFrom(BitConverter.GetBytes((Half)value)); break;
            case TensorProto.Types.DataType.Int64: t.RawData = ByteString.CopyFrom(BitConverter.GetBytes((long)value)); break;
            default: throw new SpmException($"Gradient graphs do not support element type {elemType}.");
        }
        return AddConst(key, t, $"scalar_{value.ToString("G6", CultureInfo.InvariantCulture)}");
    }

    /// <summary>A 1-D int64 constant.</summary>
    public string IntConst(params long[] values)
    {
        var key = "i:" + string.Join(",", values);
        if (_constCache.TryGetValue(key, out var name)) return name;
        var t = new TensorProto { DataType = (int)TensorProto.Types.DataType.Int64 };
        t.Dims.Add(values.Length);
        var bytes = new byte[8 * values.Length];
        for (int i = 0; i < values.Length; i++) BitConverter.TryWriteBytes(bytes.AsSpan(8 * i), values[i]);
        t.RawData = ByteString.CopyFrom(bytes);
        return AddConst(key, t, "ints_" + string.Join("_", values.Select(v => v.ToString(CultureInfo.InvariantCulture))));
    }

    /// <summary>A single-element tensor holding <paramref name="value"/> (for ConstantOfShape's value attribute).</summary>
    public static TensorProto OneElement(double value, int elemType)
    {
        var t = new TensorProto { DataType = elemType };
        t.Dims.Add(1);
        t.RawData = (TensorProto.Types.DataType)elemType switch
        {
            TensorProto.Types.DataType.Float => ByteString.CopyFrom(BitConverter.GetBytes((float)value)),
            TensorProto.Types.DataType.Double => ByteString.CopyFrom(BitConverter.GetBytes(value)),
            TensorProto.Types.DataType.Float16 => ByteString.CopyFrom(BitConverter.GetBytes((Half)value)),
            TensorProto.Types.DataType.Int64 => ByteString.CopyFrom(BitConverter.GetBytes((long)value)),
            _ => throw new SpmException($"Gradient graphs do not support element type {elemType}."),
        };
        return t;
    }

    private string AddConst(string key, TensorProto t, string tag)
    {
        var saved = Scope;
        Scope = "const";
        t.Name = Fresh(tag);
        Scope = saved;
        NewInitializers.Add(t);
        _constCache[key] = t.Name;
        return t.Name;
    }

    // ---------------------------------------------------------------- common building blocks

    /// <summary>The run-time shape of a forward tensor (one Shape node per tensor, shared).</summary>
    public string ShapeOf(string tensor)
    {
        if (_shapeCache.TryGetValue(tensor, out var s)) return s;
        s = Op("Shape", "shape", [tensor]);
        _shapeCache[tensor] = s;
        return s;
    }

    public string Neg(string x) => Op("Neg", "neg", [x]);
    public string Mul(string a, string b) => Op("Mul", "mul", [a, b]);
    public string Div(string a, string b) => Op("Div", "div", [a, b]);
    public string Add(string a, string b) => Op("Add", "add", [a, b]);
    public string Sub(string a, string b) => Op("Sub", "sub", [a, b]);

    public string Transpose(string x, IEnumerable<long> perm) => Op("Transpose", "transpose", [x], OnnxAttributes.Ints("perm", perm));

    public string ReduceSum(string x, IReadOnlyList<long> axes, bool keepDims)
        => Op("ReduceSum", "sum", [x, IntConst(axes.ToArray())], Int("keepdims", keepDims ? 1 : 0));

    public string ReduceMean(string x, IReadOnlyList<long> axes, bool keepDims)
        => Opset >= 18
            ? Op("ReduceMean", "mean", [x, IntConst(axes.ToArray())], Int("keepdims", keepDims ? 1 : 0))
            : Op("ReduceMean", "mean", [x], OnnxAttributes.Ints("axes", axes), Int("keepdims", keepDims ? 1 : 0));

    public string Unsqueeze(string x, params long[] axes) => Op("Unsqueeze", "unsqueeze", [x, IntConst(axes)]);

    public string Squeeze(string x, params long[] axes) => Op("Squeeze", "squeeze", [x, IntConst(axes)]);

    /// <summary>Reshapes a gradient back to the run-time shape of forward tensor <paramref name="like"/>.</summary>
    public string ReshapeLike(string grad, string like) => Op("Reshape", "reshape", [grad, ShapeOf(like)]);

    /// <summary>Zeros shaped like forward tensor <paramref name="like"/>.</summary>
    public string ZerosLike(string like)
        => Op("ConstantOfShape", "zeros", [ShapeOf(like)], Tensor("value", OneElement(0, ElemType(like))));

    /// <summary>
    /// Sums a gradient flowing out of a broadcasting op (shaped like <paramref name="output"/>) back to the shape
    /// of <paramref name="operand"/>: ReduceSum over the axes the operand was broadcast along (keepdims), and over the
    /// leading axes it lacks (no keepdims). Axes come from the probe's dims; nothing is emitted when no axis was broadcast.
    /// </summary>
    public string ReduceToOperand(string grad, string output, string operand)
    {
        var outDims = Dims(output);
        var opDims = Dims(operand);
        int lead = outDims.Length - opDims.Length;
        if (lead < 0)
            throw new SpmException($"Operand '{operand}' has more dimensions than the result '{output}' of node '{Scope}'.");
        var keep = new List<long>();
        for (int i = lead; i < outDims.Length; i++)
            if (opDims[i - lead] == 1 && outDims[i] != 1) keep.Add(i);
        var g = grad;
        if (keep.Count > 0) g = ReduceSum(g, keep, keepDims: true);
        if (lead > 0) g = ReduceSum(g, Enumerable.Range(0, lead).Select(i => (long)i).ToArray(), keepDims: false);
        return g;
    }

    /// <summary>Normalizes a possibly negative axis.</summary>
    public static long Axis(long axis, int rank) => axis < 0 ? axis + rank : axis;

    public SpmException Unsupported(NodeProto node, string detail)
        => new($"Cannot differentiate node '{node.Name}' (op {node.OpType}): {detail}.");
}
