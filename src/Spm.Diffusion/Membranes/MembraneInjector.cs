using Google.Protobuf;
using Spm.Core;
using Spm.Diffusion.Onnx;
using Spm.Diffusion.Onnx.Fused;
using Spm.Diffusion.Onnx.Proto;

using static Spm.Diffusion.Onnx.OnnxNodes;

namespace Spm.Diffusion.Membranes;

/// <summary>
/// Graph surgery that puts membrane branches beside the layers of a <see cref="MembraneLayout"/>.
/// For a layer with activation input x and output y, y becomes <c>y + up(coef * down(x))</c> where
/// <c>coef[b, j] = gates[b, j] * scales[j]</c>:
/// linear (MatMul/Gemm): <c>((x · downᵀ) ⊙ coef[b, None, :]) · upᵀ</c>;
/// conv: <c>Conv1x1(Conv(x, down; same kernel, strides, pads, dilations, group 1) ⊙ coef[b, :, None, None], up)</c>.
/// The branch of an fp16 layer runs in fp32 (Cast in, Cast out): the membrane inputs stay fp32 for every model, and a
/// rank-1 delta is small relative to the weights, where fp16 rounding would eat most of it; the two Casts cost little
/// next to the layer itself. A slice of a packed projection (<see cref="AdaptableLayer.Packing"/>) computes its delta the
/// same way and scatters it into the packed output's columns; several slices of one MatMul chain their Adds.
/// Input names: see <see cref="MembraneNames"/>.
/// </summary>
public static class MembraneInjector
{
    private const string CoefName = "spm.coef";
    private const string CoefLinearName = "spm.coef.linear";
    private const string CoefConvName = "spm.coef.conv";
    private const string ShapeLinearName = "spm.const.shape_b1r";
    private const string ShapeConvName = "spm.const.shape_br11";
    private const string ShapeUpConvName = "spm.const.shape_or11";

    /// <summary>
    /// Returns a copy of <paramref name="model"/> with a branch beside every layer of <paramref name="layout"/> and the
    /// membrane inputs declared. The original model is not modified; external-data references are kept as they are.
    /// </summary>
    /// <exception cref="SpmMismatchException">A layout layer is not found in the graph as described.</exception>
    /// <exception cref="SpmException">The model already has membrane inputs.</exception>
    public static ModelProto Inject(ModelProto model, MembraneLayout layout)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(layout);
        return Inject(model, layout.Layers);
    }

    /// <summary>Injects branches beside <paramref name="layers"/> (the membrane inputs get a symbolic rank).</summary>
    /// <inheritdoc cref="Inject(ModelProto, MembraneLayout)"/>
    public static ModelProto Inject(ModelProto model, IReadOnlyList<AdaptableLayer> layers)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(layers);
        var result = model.Clone();
        var g = result.Graph;
        if (g.Input.Any(i => MembraneNames.IsMembraneInput(i.Name)))
            throw new SpmException("The model already has membrane inputs (it was injected before); inject into the original model.");

        string batchDim = BatchDimName(g);
        var inits = new Dictionary<string, TensorProto>(StringComparer.Ordinal);
        foreach (var t in g.Initializer) inits.TryAdd(t.Name, t);
        var producer = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < g.Node.Count; i++)
            foreach (var o in g.Node[i].Output) producer[o] = i;
        var nodeByName = new Dictionary<string, NodeProto>(StringComparer.Ordinal);
        foreach (var n in g.Node) if (n.Name.Length > 0) nodeByName.TryAdd(n.Name, n);

        // Branches to insert after a node index, in order.
        var after = new Dictionary<int, List<NodeProto>>();
        var lastAdd = new Dictionary<string, NodeProto>(StringComparer.Ordinal);
        var packedConstants = new HashSet<string>(StringComparer.Ordinal);
        bool needLinear = false, needGemm = false, needConv = false;
        foreach (var layer in layers)
        {
            if (!nodeByName.TryGetValue(layer.NodeName, out var node))
                throw new SpmMismatchException($"Layer '{layer.ModulePath}': node '{layer.NodeName}' is not in the graph.", layer.ModulePath);
            if (!producer.TryGetValue(layer.OutputName, out int producerIndex))
                throw new SpmMismatchException($"Layer '{layer.ModulePath}': no node produces '{layer.OutputName}'.", layer.ModulePath);
            bool half = ComputesInHalf(node, inits, producer, g);

            string baseName = $"spm.{layer.ModulePath}.base";
            if (lastAdd.TryGetValue(layer.OutputName, out var previousAdd))
            {
                // Several layers add to one tensor (the slices of a packed projection): chain their Adds.
                previousAdd.Output[0] = baseName;
            }
            else
            {
                var prod = g.Node[producerIndex];
                int outIndex = prod.Output.IndexOf(layer.OutputName);
                prod.Output[outIndex] = baseName;
            }

            var branch = new List<NodeProto>();
            string p = $"spm.{layer.ModulePath}";
            string x = layer.InputName;
            if (half)
            {
                branch.Add(Node("Cast", $"{p}/CastIn", [x], [$"{p}.x32"], OnnxAttributes.Int("to", (long)TensorProto.Types.DataType.Float)));
                x = $"{p}.x32";
            }
            string delta;
            if (layer.IsConv)
            {
                needConv = true;
                var conv = new NodeProto { OpType = "Conv", Name = $"{p}/DownConv" };
                conv.Input.Add(x);
                conv.Input.Add(MembraneNames.Down(layer.ModulePath));
                conv.Output.Add($"{p}.h");
                foreach (var a in node.Attribute)
                    if (a.Name is "strides" or "pads" or "dilations" or "auto_pad" or "kernel_shape") conv.Attribute.Add(a.Clone());
                branch.Add(conv);
                branch.Add(Node("Mul", $"{p}/Gate", [$"{p}.h", CoefConvName], [$"{p}.hg"]));
                branch.Add(Node("Reshape", $"{p}/UpKernel", [MembraneNames.Up(layer.ModulePath), ShapeUpConvName], [$"{p}.up4"]));
                branch.Add(Node("Conv", $"{p}/UpConv", [$"{p}.hg", $"{p}.up4"], [$"{p}.delta"]));
            }
            else
            {
                bool gemm = layer.Kind == LayerKind.Gemm;
                if (gemm && node.Attribute.Any(a => a.Name == "transA" && a.I != 0))
                    throw new SpmMismatchException($"Layer '{layer.ModulePath}': Gemm with transA is not supported.", layer.ModulePath);
                if (gemm) needGemm = true; else needLinear = true;
                branch.Add(Node("Transpose", $"{p}/DownT", [MembraneNames.Down(layer.ModulePath)], [$"{p}.downT"]));
                branch.Add(Node("MatMul", $"{p}/Down", [x, $"{p}.downT"], [$"{p}.h"]));
                branch.Add(Node("Mul", $"{p}/Gate", [$"{p}.h", gemm ? CoefName : CoefLinearName], [$"{p}.hg"]));
                branch.Add(Node("Transpose", $"{p}/UpT", [MembraneNames.Up(layer.ModulePath)], [$"{p}.upT"]));
                branch.Add(Node("MatMul", $"{p}/Up", [$"{p}.hg", $"{p}.upT"], [$"{p}.delta"]));
            }
            delta = $"{p}.delta";
            if (layer.Packing is { } packing)
            {
                if (OpsetOf(result) < 11)
                    throw new SpmMismatchException($"Layer '{layer.ModulePath}': placing a packed projection's branch needs opset 11 or later (Pad with pads as input); the model declares opset {OpsetOf(result)}.", layer.ModulePath);
                delta = PackedDelta(g, packedConstants, p, delta, packing, branch);
            }
            if (half)
            {
                branch.Add(Node("Cast", $"{p}/CastOut", [delta], [$"{p}.delta16"], OnnxAttributes.Int("to", (long)TensorProto.Types.DataType.Float16)));
                delta = $"{p}.delta16";
            }
            var add = Node("Add", $"{p}/Add", [baseName, delta], [layer.OutputName]);
            branch.Add(add);
            lastAdd[layer.OutputName] = add;
            if (!after.TryGetValue(producerIndex, out var list)) after[producerIndex] = list = [];
            list.AddRange(branch);

            g.Input.Add(Input(MembraneNames.Down(layer.ModulePath), layer.IsConv
                ? [Sym(MembraneNames.RankDim), Fixed(layer.InFeatures), Fixed(MembraneShapes.Kernel(layer).Height), Fixed(MembraneShapes.Kernel(layer).Width)]
                : [Sym(MembraneNames.RankDim), Fixed(layer.InFeatures)]));
            g.Input.Add(Input(MembraneNames.Up(layer.ModulePath), [Fixed(layer.OutFeatures), Sym(MembraneNames.RankDim)]));
        }

        // Shared preamble: coef = gates * scales and its broadcast views.
        var preamble = new List<NodeProto> { Node("Mul", "spm/Coef", [MembraneNames.Gates, MembraneNames.Scales], [CoefName]) };
        if (needLinear)
        {
            g.Initializer.Add(Int64Tensor(ShapeLinearName, [0, 1, -1]));
            preamble.Add(Node("Reshape", "spm/CoefLinear", [CoefName, ShapeLinearName], [CoefLinearName]));
        }
        if (needConv)
        {
            g.Initializer.Add(Int64Tensor(ShapeConvName, [0, -1, 1, 1]));
            g.Initializer.Add(Int64Tensor(ShapeUpConvName, [0, 0, 1, 1]));
            preamble.Add(Node("Reshape", "spm/CoefConv", [CoefName, ShapeConvName], [CoefConvName]));
        }
        _ = needGemm;

        var nodes = new List<NodeProto>(g.Node.Count + preamble.Count + after.Sum(a => a.Value.Count));
        nodes.AddRange(preamble);
        for (int i = 0; i < g.Node.Count; i++)
        {
            nodes.Add(g.Node[i]);
            if (after.TryGetValue(i, out var extra)) nodes.AddRange(extra);
        }
        g.Node.Clear();
        g.Node.AddRange(nodes);
        g.Input.Add(Input(MembraneNames.Gates, [Sym(batchDim), Sym(MembraneNames.RankDim)]));
        g.Input.Add(Input(MembraneNames.Scales, [Sym(MembraneNames.RankDim)]));
        return result;
    }

    /// <summary>
    /// Whether the layer computes in fp16: follows the node's weight operand back through Identity nodes to either a
    /// Cast (its target type decides) or the initializer (its type decides).
    /// </summary>
    private static bool ComputesInHalf(NodeProto node, Dictionary<string, TensorProto> inits, Dictionary<string, int> producer, GraphProto g)
    {
        const int Half = (int)TensorProto.Types.DataType.Float16;
        string value = node.Input.Count > 1 ? node.Input[1] : "";
        for (int hops = 0; hops < 8; hops++)
        {
            if (inits.TryGetValue(value, out var t)) return t.DataType == Half;
            if (!producer.TryGetValue(value, out int p)) return false;
            var n = g.Node[p];
            if (n.OpType == "Cast") return n.Attribute.FirstOrDefault(a => a.Name == "to")?.I == Half;
            if (n.OpType != "Identity" || n.Input.Count == 0) return false;
            value = n.Input[0];
        }
        return false;
    }

    /// <summary>
    /// Scatters a slice's delta [B, S, N·H] into the packed projection's column order: reshaped to [B, S, N, 1, H], padded
    /// with zeros on axis 3 to its place among the <c>Count</c> projections, and flattened to [B, S, N·Count·H] (the
    /// layout <see cref="PackedProjection"/> describes). Pad of zeros is exact, so the other slices are untouched.
    /// </summary>
    private static string PackedDelta(GraphProto g, HashSet<string> constants, string p, string delta, PackedProjection packing, List<NodeProto> branch)
    {
        string key = $"spm.const.pack_{packing.Heads}x{packing.Count}x{packing.HeadSize}";
        string shape5 = key + ".slice_shape", flat = key + ".flat_shape", pads = $"{key}.pads_{packing.Index}";
        if (constants.Add(shape5)) g.Initializer.Add(Int64Tensor(shape5, [0, 0, packing.Heads, 1, packing.HeadSize]));
        if (constants.Add(flat)) g.Initializer.Add(Int64Tensor(flat, [0, 0, packing.PackedFeatures]));
        if (constants.Add(pads)) g.Initializer.Add(Int64Tensor(pads, [0, 0, 0, packing.Index, 0, 0, 0, 0, packing.Count - 1 - packing.Index, 0]));
        branch.Add(Node("Reshape", $"{p}/PackSlice", [delta, shape5], [$"{p}.delta5"]));
        branch.Add(Node("Pad", $"{p}/PackPad", [$"{p}.delta5", pads], [$"{p}.delta5p"]));
        branch.Add(Node("Reshape", $"{p}/PackFlat", [$"{p}.delta5p", flat], [$"{p}.deltaPacked"]));
        return $"{p}.deltaPacked";
    }

    private static long OpsetOf(ModelProto model) =>
        model.OpsetImport.Where(o => o.Domain is "" or "ai.onnx").Select(o => o.Version).DefaultIfEmpty(0).Max();

    /// <summary>The symbolic batch dimension of the first graph input (so gates share it), or "batch".</summary>
    private static string BatchDimName(GraphProto g)
    {
        var first = g.Input.FirstOrDefault(i => !MembraneNames.IsMembraneInput(i.Name));
        var dims = first?.Type?.TensorType?.Shape?.Dim;
        return dims is { Count: > 0 } && dims[0].DimParam.Length > 0 ? dims[0].DimParam : "batch";
    }

    private static TensorShapeProto.Types.Dimension Sym(string name) => OnnxNodes.Symbolic(name);

    private static TensorShapeProto.Types.Dimension Fixed(long value) => OnnxNodes.Fixed(value);

    private static ValueInfoProto Input(string name, TensorShapeProto.Types.Dimension[] dims)
        => OnnxNodes.TensorValueInfo(name, (int)TensorProto.Types.DataType.Float, dims);

    /// <summary>Serialises a float tensor as an initializer with raw little-endian data.</summary>
    internal static TensorProto FloatInitializer(string name, int[] shape, ReadOnlySpan<float> data)
    {
        var t = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Float };
        foreach (var d in shape) t.Dims.Add(d);
        t.RawData = ByteString.CopyFrom(System.Runtime.InteropServices.MemoryMarshal.AsBytes(data));
        return t;
    }
}
