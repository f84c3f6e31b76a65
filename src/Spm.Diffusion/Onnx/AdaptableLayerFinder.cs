using System.Text.RegularExpressions;
using Spm.Core;
using Spm.Diffusion.Onnx.Proto;

namespace Spm.Diffusion.Onnx;

/// <summary>
/// Lists the layers of an exported UNet graph a membrane can attach to: every MatMul / Gemm / Conv whose weight is an
/// initializer, named by its PyTorch module path.
/// </summary>
/// <remarks>
/// Module paths come from node names (<c>/down_blocks.1/attentions.0/transformer_blocks.0/attn1/to_q/MatMul</c> →
/// <c>down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q</c>), because exporters rename MatMul weights
/// (<c>onnx::MatMul_3644</c>); shapes are checked against the weight. For graphs without scoped node names the
/// weight initializer's name (<c>conv_in.weight</c>) is used when it has the usual form. Attention-score MatMuls
/// (both operands activations) are not layers. In graphs fused by ONNX Runtime's transformer optimizer, projections
/// packed into one MatMul before <c>com.microsoft.MultiHeadAttention</c> are listed as slices of it
/// (<see cref="AdaptableLayer.Packing"/>); fused ops that hide a projection entirely are refused, naming the node.
/// </remarks>
public static partial class AdaptableLayerFinder
{
    /// <summary>Every adaptable layer of <paramref name="model"/>'s graph, in graph order.</summary>
    /// <exception cref="SpmFormatException">The graph is fused by ORT's optimizer, or two weighted nodes claim one module path.</exception>
    public static IReadOnlyList<AdaptableLayer> FindAll(OnnxModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return FindAll(model.Graph, model.FilePath);
    }

    /// <summary>The layers inside transformer containers (where SPM places membranes), in graph order.</summary>
    public static IReadOnlyList<AdaptableLayer> FindTransformerLayers(OnnxModel model) =>
        FindAll(model).Where(l => l.InTransformer).ToList();

    /// <summary>Every adaptable layer of <paramref name="graph"/>; <paramref name="sourceName"/> names the model in errors.</summary>
    public static IReadOnlyList<AdaptableLayer> FindAll(GraphProto graph, string? sourceName = null)
    {
        ArgumentNullException.ThrowIfNull(graph);
        var initializers = new Dictionary<string, TensorProto>(StringComparer.Ordinal);
        foreach (var t in graph.Initializer) initializers.TryAdd(t.Name, t);

        // Values produced by Identity / Cast nodes from an initializer (exporters share or cast weights that way).
        var producers = new Dictionary<string, NodeProto>(StringComparer.Ordinal);
        var consumers = new Dictionary<string, List<NodeProto>>(StringComparer.Ordinal);
        foreach (var node in graph.Node)
        {
            if (UnsupportedFused(node, sourceName) is { } unsupported) throw unsupported;
            foreach (var o in node.Output) producers.TryAdd(o, node);
            foreach (var i in node.Input)
            {
                if (i.Length == 0) continue;
                if (!consumers.TryGetValue(i, out var list)) consumers[i] = list = [];
                list.Add(node);
            }
        }

        // Projections packed by ONNX Runtime's transformer optimizer, listed where their packed MatMul sits.
        var packed = FindPackedLayers(graph, producers, consumers, WeightOf, sourceName);
        var layers = new List<AdaptableLayer>();
        var byPath = new Dictionary<string, AdaptableLayer>(StringComparer.Ordinal);
        foreach (var node in graph.Node)
        {
            if (node.Name.Length > 0 && packed.TryGetValue(node.Name, out var slices))
            {
                foreach (var slice in slices) AddLayer(slice, node);
                continue;
            }
            // A node without an activation input or an output cannot carry a membrane (malformed or pruned).
            if (node.Input.Count < 2 || node.Input[0].Length == 0 || node.Output.Count < 1 || node.Output[0].Length == 0) continue;
            AdaptableLayer? layer = node.OpType switch
            {
                "MatMul" when node.Domain is "" or "ai.onnx" => MatMulLayer(node),
                "Gemm" when node.Domain is "" or "ai.onnx" => GemmLayer(node),
                "Conv" when node.Domain is "" or "ai.onnx" => ConvLayer(node),
                _ => null,
            };
            if (layer is null) continue;
            AddLayer(layer, node);
        }
        return layers;

        void AddLayer(AdaptableLayer layer, NodeProto node)
        {
            if (byPath.TryGetValue(layer.ModulePath, out var other))
                throw new SpmFormatException(sourceName, node.Name,
                    $"nodes '{other.NodeName}' and '{node.Name}' both map to module '{layer.ModulePath}' (a module called twice?); cannot place one membrane.");
            byPath.Add(layer.ModulePath, layer);
            layers.Add(layer);
        }

        TensorProto? WeightOf(string value)
        {
            // Follow Identity / Cast chains back to an initializer, a few steps at most.
            for (int hop = 0; hop < 8; hop++)
            {
                if (initializers.TryGetValue(value, out var t)) return t;
                if (!producers.TryGetValue(value, out var p) || p.OpType is not ("Identity" or "Cast") || p.Input.Count < 1) return null;
                value = p.Input[0];
            }
            return null;
        }

        AdaptableLayer? MatMulLayer(NodeProto node)
        {
            if (node.Input.Count != 2) return null;
            var w = WeightOf(node.Input[1]);
            if (w is null || w.Dims.Count != 2) return null; // attention scores, or not a Linear
            var path = ModulePath(node, w, "MatMul");
            if (path is null) return null;
            int inF = CheckedDim(w, 0), outF = CheckedDim(w, 1);
            var output = BiasAddOutput(node.Output[0], outF) ?? node.Output[0];
            return Make(path, LayerKind.MatMul, inF, outF, node, w.Name, output, [], [], [], [], 1);
        }

        AdaptableLayer? GemmLayer(NodeProto node)
        {
            if (node.Input.Count < 2) return null;
            if (IntAttr(node, "transA", 0) != 0) return null; // x would be transposed: not a Linear on rows
            var w = WeightOf(node.Input[1]);
            if (w is null || w.Dims.Count != 2) return null;
            var path = ModulePath(node, w, "Gemm");
            if (path is null) return null;
            bool transB = IntAttr(node, "transB", 0) != 0;
            int inF = CheckedDim(w, transB ? 1 : 0), outF = CheckedDim(w, transB ? 0 : 1);
            return Make(path, LayerKind.Gemm, inF, outF, node, w.Name, node.Output[0], [], [], [], [], 1);
        }

        AdaptableLayer? ConvLayer(NodeProto node)
        {
            if (node.Input.Count < 2) return null;
            var w = WeightOf(node.Input[1]);
            if (w is null || w.Dims.Count != 4) return null; // only 2-D convolutions carry membranes
            var path = ModulePath(node, w, "Conv");
            if (path is null) return null;
            int outC = CheckedDim(w, 0), inPerGroup = CheckedDim(w, 1), kh = CheckedDim(w, 2), kw = CheckedDim(w, 3);
            long groupAttr = IntAttr(node, "group", 1);
            if (groupAttr < 1 || groupAttr > outC || outC % groupAttr != 0)
                throw new SpmFormatException(sourceName, node.Name, $"Conv group {groupAttr} does not divide {outC} output channels.");
            int group = (int)groupAttr;
            var kernel = IntsAttr(node, "kernel_shape", sourceName) ?? [kh, kw];
            if (kernel.Length != 2 || kernel[0] != kh || kernel[1] != kw)
                throw new SpmFormatException(sourceName, node.Name, $"Conv kernel_shape [{string.Join(",", kernel)}] does not match weight '{w.Name}' [{string.Join(",", w.Dims)}].");
            var strides = IntsAttr(node, "strides", sourceName) ?? [1, 1];
            var dilations = IntsAttr(node, "dilations", sourceName) ?? [1, 1];
            var pads = ConvPads(node, kernel, strides, dilations);
            if (strides.Length != 2 || dilations.Length != 2 || pads.Length != 4 || strides.Any(s => s < 1) || dilations.Any(d => d < 1) || pads.Any(p => p < 0))
                throw new SpmFormatException(sourceName, node.Name, "Conv strides, dilations or pads are malformed.");
            return Make(path, LayerKind.Conv, checked(inPerGroup * group), outC, node, w.Name, node.Output[0], kernel, strides, pads, dilations, group);
        }

        int[] ConvPads(NodeProto node, int[] kernel, int[] strides, int[] dilations)
        {
            var autoPad = StringAttr(node, "auto_pad") ?? "NOTSET";
            switch (autoPad)
            {
                case "NOTSET":
                    return IntsAttr(node, "pads", sourceName) ?? [0, 0, 0, 0];
                case "VALID":
                    return [0, 0, 0, 0];
                case "SAME_UPPER" or "SAME_LOWER" when strides.All(s => s == 1):
                    // With stride 1 the total padding is dilation*(k-1) whatever the input size.
                    var pads = new int[4];
                    for (int a = 0; a < 2; a++)
                    {
                        int total = dilations[a] * (kernel[a] - 1);
                        int small = total / 2, large = total - small;
                        pads[a] = autoPad == "SAME_UPPER" ? small : large;
                        pads[a + 2] = autoPad == "SAME_UPPER" ? large : small;
                    }
                    return pads;
                default:
                    throw new SpmFormatException(sourceName, node.Name, $"Conv auto_pad '{autoPad}' with strides [{string.Join(",", strides)}] depends on the input size; export with explicit pads.");
            }
        }

        string? BiasAddOutput(string matmulOutput, int outF)
        {
            // The exporter writes Linear's bias as a separate Add right after the MatMul; the membrane's
            // contribution goes after it so the layer's full output (W x + b) is what gets adapted.
            if (!consumers.TryGetValue(matmulOutput, out var users) || users.Count != 1) return null;
            var add = users[0];
            if (add.OpType != "Add" || add.Input.Count != 2 || add.Output.Count < 1 || add.Output[0].Length == 0) return null;
            var other = add.Input[0] == matmulOutput ? add.Input[1] : add.Input[0];
            var bias = WeightOf(other);
            if (bias is null || bias.Dims.Count != 1 || bias.Dims[0] != outF) return null;
            return add.Output[0];
        }

        AdaptableLayer Make(string path, LayerKind kind, int inF, int outF, NodeProto node, string weight, string output,
            int[] kernel, int[] strides, int[] pads, int[] dilations, int group) =>
            new(path, kind, inF, outF, node.Name, node.Input[0], weight, output, kernel, strides, pads, dilations, group, IsInTransformer(path));

        int CheckedDim(TensorProto w, int axis)
        {
            long d = w.Dims[axis];
            if (d <= 0 || d > int.MaxValue)
                throw new SpmFormatException(sourceName, w.Name, $"weight dimension {axis} is {d}.");
            return (int)d;
        }

        string? ModulePath(NodeProto node, TensorProto weight, string opType)
        {
            var fromNode = ModulePathFromNodeName(node.Name, opType);
            if (fromNode is not null) return fromNode;
            // Unscoped exports: "conv_in.weight" names the module; "onnx::MatMul_12" does not.
            var name = weight.Name;
            if (name.EndsWith(".weight", StringComparison.Ordinal) && !name.Contains("::", StringComparison.Ordinal))
                return name[..^".weight".Length];
            return null;
        }
    }

    /// <summary>
    /// The module path encoded in a scoped node name, e.g. <c>/mid_block/attentions.0/proj_in/Conv</c> →
    /// <c>mid_block.attentions.0.proj_in</c>; null when the name is not of that form.
    /// </summary>
    public static string? ModulePathFromNodeName(string nodeName, string opType)
    {
        if (string.IsNullOrEmpty(nodeName) || nodeName[0] != '/') return null;
        int last = nodeName.LastIndexOf('/');
        if (last <= 0) return null;
        var leaf = nodeName[(last + 1)..];
        // The leaf is the op type, possibly numbered: MatMul, MatMul_1, Conv.
        if (!(leaf == opType || (leaf.StartsWith(opType + "_", StringComparison.Ordinal) && leaf[(opType.Length + 1)..].All(char.IsAsciiDigit))))
            return null;
        var scope = nodeName[1..last];
        if (scope.Length == 0 || scope.Split('/').Any(s => s.Length == 0)) return null;
        return scope.Replace('/', '.');
    }

    /// <summary>
    /// The transformer container (diffusers Transformer2DModel) holding a module path, e.g.
    /// <c>down_blocks.1.attentions.0</c> for <c>down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q</c>; null outside one.
    /// </summary>
    public static string? ContainerOf(string modulePath)
    {
        var m = ContainerRegex().Match(modulePath);
        return m.Success ? m.Groups[1].Value : null;
    }

    /// <summary>True when the module path lies inside a UNet transformer container (<c>*_blocks.N.attentions.M</c> or <c>mid_block.attentions.M</c>).</summary>
    public static bool IsInTransformer(string modulePath) => ContainerOf(modulePath) is not null;

    [GeneratedRegex(@"^((?:down_blocks\.\d+|up_blocks\.\d+|mid_block)\.attentions\.\d+)(?:\.|$)", RegexOptions.CultureInvariant)]
    private static partial Regex ContainerRegex();

    private static long IntAttr(NodeProto node, string name, long fallback)
    {
        foreach (var a in node.Attribute) if (a.Name == name) return a.I;
        return fallback;
    }

    private static string? StringAttr(NodeProto node, string name)
    {
        foreach (var a in node.Attribute) if (a.Name == name) return a.S.ToStringUtf8();
        return null;
    }

    private static int[]? IntsAttr(NodeProto node, string name, string? sourceName)
    {
        foreach (var a in node.Attribute)
        {
            if (a.Name != name) continue;
            var r = new int[a.Ints.Count];
            for (int i = 0; i < r.Length; i++)
                r[i] = a.Ints[i] is >= int.MinValue and <= int.MaxValue ? (int)a.Ints[i] : throw new SpmFormatException(sourceName, node.Name, $"attribute '{name}' value {a.Ints[i]} out of range.");
            return r;
        }
        return null;
    }
}
