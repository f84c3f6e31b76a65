using Spm.Core;
using Spm.Diffusion.Onnx.Proto;

namespace Spm.Diffusion.Onnx.Fused;

/// <summary>
/// Makes a graph fused by ONNX Runtime's transformer optimizer runnable on the CPU provider, whose
/// MultiHeadAttention kernel (ONNX Runtime 1.31) has no packed QKV / packed KV inputs: each packed input
/// [B, S, N, n, H] is split on axis 3 and reshaped to n separate [B, S, N·H] inputs. Numerically the same attention;
/// the packed MatMuls (and any membrane branches added to them) are untouched.
/// </summary>
public static class PackedAttentionLowering
{
    /// <summary>Returns a copy of <paramref name="model"/> whose MultiHeadAttention nodes take separate Q, K, V inputs.</summary>
    /// <exception cref="SpmFormatException">A packed input is not produced by a constant Reshape to [0, 0, N, n, H] (names the node).</exception>
    public static ModelProto SplitPackedInputs(ModelProto model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var result = model.Clone();
        var g = result.Graph;
        var producer = new Dictionary<string, NodeProto>(StringComparer.Ordinal);
        foreach (var n in g.Node) foreach (var o in n.Output) producer.TryAdd(o, n);
        var inits = new Dictionary<string, TensorProto>(StringComparer.Ordinal);
        foreach (var t in g.Initializer) inits.TryAdd(t.Name, t);

        var nodes = new List<NodeProto>(g.Node.Count);
        foreach (var node in g.Node)
        {
            if (node.OpType == "MultiHeadAttention" && node.Domain == UnetFuser.MsDomain)
            {
                string In(int i) => node.Input.Count > i ? node.Input[i] : "";
                if (In(1).Length == 0 && In(2).Length == 0)
                    Split(node, 0, 3, ["q", "k", "v"], nodes);
                else if (In(2).Length == 0)
                    Split(node, 1, 2, ["k", "v"], nodes);
            }
            nodes.Add(node);
        }
        g.Node.Clear();
        g.Node.AddRange(nodes);
        return result;

        void Split(NodeProto mha, int input, int count, string[] names, List<NodeProto> into)
        {
            string packed = mha.Input[input];
            long[]? shape = null;
            if (producer.TryGetValue(packed, out var reshape) && reshape.OpType == "Reshape" && reshape.Input.Count > 1 && inits.TryGetValue(reshape.Input[1], out var s))
                shape = s.Int64Data.Count > 0 ? s.Int64Data.ToArray() : Enumerable.Range(0, s.RawData.Length / 8).Select(i => BitConverter.ToInt64(s.RawData.Span.Slice(8 * i, 8))).ToArray();
            if (shape is not { Length: 5 } || shape[3] != count)
                throw new SpmFormatException(null, mha.Name, $"MultiHeadAttention '{mha.Name}': packed input '{packed}' is not a constant Reshape to [0, 0, N, {count}, H]; cannot split it for the CPU provider.");
            string p = mha.Name + "_cpu";
            string flat = p + "_bsd_shape";
            g.Initializer.Add(UnetFuser.Int64Init(flat, [0, 0, shape[2] * shape[4]]));
            var parts = names.Select(n => $"{p}_{n}").ToArray();
            var split = UnetFuser.Node("Split", p + "_split", "", [packed], parts.Select(x => x + "_bsn1h").ToArray());
            split.Attribute.Add(new AttributeProto { Name = "axis", Type = AttributeProto.Types.AttributeType.Int, I = 3 });
            into.Add(split);
            foreach (var x in parts) into.Add(UnetFuser.Node("Reshape", x + "_reshape", "", [x + "_bsn1h", flat], [x]));
            var inputs = mha.Input.ToList();
            while (inputs.Count < 3) inputs.Add("");
            for (int i = 0; i < count; i++) inputs[input + i] = parts[i];
            mha.Input.Clear();
            mha.Input.AddRange(inputs);
        }
    }
}
