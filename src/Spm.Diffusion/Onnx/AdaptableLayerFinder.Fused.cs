using Spm.Core;
using Spm.Diffusion.Onnx.Fused;
using Spm.Diffusion.Onnx.Proto;

namespace Spm.Diffusion.Onnx;

/// <summary>The fused-graph half of the finder: projections packed by ONNX Runtime's transformer optimizer.</summary>
public static partial class AdaptableLayerFinder
{
    /// <summary>
    /// Fused ops that hide an adaptable projection where no membrane can reach it, with what to do instead.
    /// Everything else the SD optimizer emits (MultiHeadAttention over MatMul outputs, GroupNorm, SkipGroupNorm,
    /// BiasAdd, BiasSplitGelu, LayerNormalization, SkipLayerNormalization) leaves the projections as MatMuls.
    /// </summary>
    private static readonly Dictionary<string, string> UnsupportedFusedOps = new(StringComparer.Ordinal)
    {
        ["Attention"] = "com.microsoft.Attention holds the Q/K/V weights inside the op (optimizer run without packed QKV); re-run the optimizer with packed QKV (MatMul + MultiHeadAttention) or use the unfused export",
        ["PackedAttention"] = "PackedAttention holds the Q/K/V weights inside the op; use the unfused export or MultiHeadAttention with packed QKV",
        ["PackedMultiHeadAttention"] = "PackedMultiHeadAttention (token-packed batches) is not supported; use the unfused export or MultiHeadAttention",
        ["GroupQueryAttention"] = "GroupQueryAttention is an LLM op, not part of the SD UNet patterns",
        ["QAttention"] = "QAttention is quantized with the weights inside the op; use a float export",
        ["DecoderMaskedMultiHeadAttention"] = "DecoderMaskedMultiHeadAttention is an LLM decoding op, not part of the SD UNet patterns",
        ["NhwcConv"] = "NhwcConv (channels-last convolution) is not supported; optimize without NHWC convolutions or use the unfused export",
    };

    /// <summary>The error for a fused node the finder cannot see through, or null when the op is fine.</summary>
    private static SpmFormatException? UnsupportedFused(NodeProto node, string? sourceName) =>
        node.Domain == UnetFuser.MsDomain && UnsupportedFusedOps.TryGetValue(node.OpType, out var why)
            ? new SpmFormatException(sourceName, node.Name, $"unsupported fused node '{node.Name}' ({node.Domain}.{node.OpType}): {why}.")
            : null;

    /// <summary>
    /// The layers packed into MatMuls feeding <c>com.microsoft.MultiHeadAttention</c> nodes, keyed by the packed
    /// MatMul's node name, in pack order. Recognised patterns (see docs/fused-graphs.md):
    /// packed QKV: <c>MHA(query = Reshape(MatMul(x, W[C, 3C]), [0, 0, N, 3, H]))</c>;
    /// packed KV: <c>MHA(query, key = Reshape(MatMul(ctx, W[Cctx, 2C]), [0, 0, N, 2, H]))</c>;
    /// split packed: <c>MHA(q, k, v)</c> where each of q/k/v is <c>Reshape(Split(Reshape(MatMul(...), [0, 0, N, n, H]), axis 3)[i], [0, 0, C])</c>.
    /// Inputs that come straight from a MatMul (an unpacked to_q) are ordinary layers. The module path comes from the
    /// attention output's projection (<c>.../attn1/to_out.0/MatMul</c>), because the optimizer renames packed nodes.
    /// </summary>
    private static Dictionary<string, List<AdaptableLayer>> FindPackedLayers(GraphProto graph,
        Dictionary<string, NodeProto> producers, Dictionary<string, List<NodeProto>> consumers,
        Func<string, TensorProto?> weightOf, string? sourceName)
    {
        var result = new Dictionary<string, List<AdaptableLayer>>(StringComparer.Ordinal);
        foreach (var mha in graph.Node)
        {
            if (mha.OpType != "MultiHeadAttention" || mha.Domain != UnetFuser.MsDomain) continue;
            string attention = AttentionPathOf(mha);
            string In(int i) => mha.Input.Count > i ? mha.Input[i] : "";
            string q = In(0), k = In(1), v = In(2);
            if (q.Length == 0)
                throw Pattern(mha, "it has no query input");
            if (k.Length == 0 && v.Length == 0)
            {
                Add(TracePacked(mha, q, 3), attention, ["to_q", "to_k", "to_v"]);
            }
            else if (v.Length == 0)
            {
                TraceOptionalSplit(q, attention);
                Add(TracePacked(mha, k, 2), attention, ["to_k", "to_v"]);
            }
            else
            {
                TraceOptionalSplit(q, attention);
                TraceOptionalSplit(k, attention);
                TraceOptionalSplit(v, attention);
            }
        }
        return result;

        void Add((NodeProto MatMul, TensorProto Weight, int Heads, int HeadSize) p, string attention, string[] names)
        {
            for (int i = 0; i < names.Length; i++) AddOne(p.MatMul, p.Weight, new PackedProjection(p.Heads, p.HeadSize, names.Length, i), $"{attention}.{names[i]}");
        }

        void AddOne(NodeProto matmul, TensorProto weight, PackedProjection packing, string path)
        {
            if (!result.TryGetValue(matmul.Name, out var list)) result[matmul.Name] = list = [];
            if (list.Any(l => l.Packing!.Index == packing.Index)) return; // q, k and v of one split pack are reached separately
            list.Add(new AdaptableLayer(path, LayerKind.MatMul, (int)weight.Dims[0], packing.Heads * packing.HeadSize, matmul.Name,
                matmul.Input[0], weight.Name, matmul.Output[0], [], [], [], [], 1, IsInTransformer(path)) { Packing = packing });
            list.Sort((a, b) => a.Packing!.Index.CompareTo(b.Packing!.Index));
        }

        // One of MHA's q/k/v inputs in the split form: Reshape([0, 0, C]) of one Split output of a packed reshape.
        void TraceOptionalSplit(string value, string attention)
        {
            if (!producers.TryGetValue(value, out var reshape) || reshape.OpType != "Reshape") return; // a plain projection (or anything else): not packed
            if (!producers.TryGetValue(reshape.Input[0], out var split) || split.OpType != "Split") return;
            var owner = consumers.GetValueOrDefault(value)?.FirstOrDefault(n => n.OpType == "MultiHeadAttention") ?? reshape;
            if (IntAttr(split, "axis", 0) != 3 || (split.Input.Count > 1 && split.Input[1].Length > 0))
                throw Pattern(owner, $"Split '{split.Name}' must split the packed [B, S, N, n, H] tensor equally on axis 3");
            int index = split.Output.IndexOf(reshape.Input[0]);
            int count = split.Output.Count;
            var packed = TracePacked(owner, split.Input[0], count);
            string[] names = count == 3 ? ["to_q", "to_k", "to_v"] : count == 2 ? ["to_k", "to_v"] : throw Pattern(owner, $"Split '{split.Name}' has {count} outputs; a packed pack holds 3 (QKV) or 2 (KV)");
            AddOne(packed.MatMul, packed.Weight, new PackedProjection(packed.Heads, packed.HeadSize, count, index), $"{attention}.{names[index]}");
        }

        // Reshape(MatMul(x, W), [0, 0, N, count, H]) with W an initializer [in, N*count*H].
        (NodeProto MatMul, TensorProto Weight, int Heads, int HeadSize) TracePacked(NodeProto mha, string value, int count)
        {
            string kind = count == 3 ? "packed QKV" : "packed KV";
            if (!producers.TryGetValue(value, out var reshape) || reshape.OpType != "Reshape" || reshape.Input.Count < 2)
                throw Pattern(mha, $"input '{value}' is not a Reshape of a MatMul ({kind}: Reshape(MatMul(x, W), [0, 0, N, {count}, H])); found {(producers.TryGetValue(value, out var pr) ? $"{pr.OpType} '{pr.Name}'" : "a graph input")}");
            var shape = Int64Constant(reshape.Input[1]);
            if (shape is not { Length: 5 } || shape[0] != 0 || shape[1] != 0 || shape[3] != count || shape[2] <= 0 || shape[4] <= 0)
                throw Pattern(mha, $"Reshape '{reshape.Name}' does not reshape to a constant [0, 0, N, {count}, H] ({kind})");
            if (!producers.TryGetValue(reshape.Input[0], out var matmul) || matmul.OpType != "MatMul" || matmul.Domain is not ("" or "ai.onnx") || matmul.Input.Count != 2)
                throw Pattern(mha, $"Reshape '{reshape.Name}' does not read a MatMul ({kind}: Reshape(MatMul(x, W), [0, 0, N, {count}, H]))");
            var w = weightOf(matmul.Input[1]);
            int heads = (int)shape[2], headSize = (int)shape[4];
            if (w is null || w.Dims.Count != 2 || w.Dims[1] != (long)heads * count * headSize || w.Dims[0] <= 0 || w.Dims[0] > int.MaxValue)
                throw Pattern(mha, $"packed MatMul '{matmul.Name}' has no [in, {(long)heads * count * headSize}] weight initializer ({kind}, {heads} heads x {headSize})");
            if (consumers.TryGetValue(matmul.Output[0], out var users) && users.Count != 1)
                throw Pattern(mha, $"packed MatMul '{matmul.Name}' output feeds {users.Count} nodes; expected only the Reshape ({kind})");
            return (matmul, w, heads, headSize);
        }

        string AttentionPathOf(NodeProto mha)
        {
            var users = mha.Output.Count > 0 ? consumers.GetValueOrDefault(mha.Output[0]) : null;
            var proj = users is { Count: 1 } && users[0].OpType == "MatMul" ? ModulePathFromNodeName(users[0].Name, "MatMul") : null;
            if (proj is null || !proj.EndsWith(".to_out.0", StringComparison.Ordinal))
                throw Pattern(mha, "its output does not feed exactly one '<attention>/to_out.0/MatMul' projection, so the packed projections cannot be named (pattern: MultiHeadAttention -> to_out.0 MatMul)");
            return proj[..^".to_out.0".Length];
        }

        long[]? Int64Constant(string value)
        {
            var t = weightOf(value);
            if (t is null && producers.TryGetValue(value, out var c) && c.OpType == "Constant")
                t = c.Attribute.FirstOrDefault(a => a.Name == "value")?.T;
            if (t is null || t.DataType != (int)TensorProto.Types.DataType.Int64) return null;
            if (t.Int64Data.Count > 0) return t.Int64Data.ToArray();
            if (t.RawData.Length % 8 != 0) return null;
            var r = new long[t.RawData.Length / 8];
            for (int i = 0; i < r.Length; i++) r[i] = BitConverter.ToInt64(t.RawData.Span.Slice(8 * i, 8));
            return r;
        }

        SpmFormatException Pattern(NodeProto node, string what) =>
            new(sourceName, node.Name, $"unrecognised fused attention at node '{node.Name}' ({node.OpType}): {what}.");
    }
}
