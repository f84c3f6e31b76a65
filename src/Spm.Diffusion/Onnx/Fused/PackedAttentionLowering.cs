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
    /// <summary>
    /// <see cref="SplitPackedInputs"/>, and the CUDA-only bias ops rewritten in standard ONNX ops:
    /// <c>BiasAdd(X, b, s)</c> → <c>(X + b) + s</c>; <c>BiasSplitGelu(X, b)</c> → <c>left · ½·right·(1 + erf(right/√2))</c>
    /// with <c>[left, right] = Split(X + b, axis -1)</c> (exact Gelu, as the spec and diffusers' GEGLU use).
    /// </summary>
    public static ModelProto ForCpu(ModelProto model)
    {
        var result = SplitPackedInputs(model);
        var g = result.Graph;
        var nodes = new List<NodeProto>(g.Node.Count);
        bool constants = false;
        foreach (var n in g.Node)
        {
            if (n.Domain == UnetFuser.MsDomain && n.OpType == "BiasAdd")
            {
                nodes.Add(UnetFuser.Node("Add", n.Name + "_bias", "", [n.Input[0], n.Input[1]], [n.Name + "_xb"]));
                nodes.Add(UnetFuser.Node("Add", n.Name + "_skip", "", [n.Name + "_xb", n.Input[2]], [n.Output[0]]));
            }
            else if (n.Domain == UnetFuser.MsDomain && n.OpType == "BiasSplitGelu")
            {
                constants = true;
                string p = n.Name;
                nodes.Add(UnetFuser.Node("Add", p + "_bias", "", [n.Input[0], n.Input[1]], [p + "_xb"]));
                var split = UnetFuser.Node("Split", p + "_split", "", [p + "_xb"], [p + "_left", p + "_right"]);
                split.Attribute.Add(new AttributeProto { Name = "axis", Type = AttributeProto.Types.AttributeType.Int, I = -1 });
                nodes.Add(split);
                nodes.Add(UnetFuser.Node("Mul", p + "_scale", "", [p + "_right", "spm.lowering.inv_sqrt2"], [p + "_rs"]));
                nodes.Add(UnetFuser.Node("Erf", p + "_erf", "", [p + "_rs"], [p + "_erf_out"]));
                nodes.Add(UnetFuser.Node("Add", p + "_one", "", [p + "_erf_out", "spm.lowering.one"], [p + "_1erf"]));
                nodes.Add(UnetFuser.Node("Mul", p + "_half", "", [p + "_right", "spm.lowering.half"], [p + "_hr"]));
                nodes.Add(UnetFuser.Node("Mul", p + "_gelu", "", [p + "_hr", p + "_1erf"], [p + "_g"]));
                nodes.Add(UnetFuser.Node("Mul", p + "_out", "", [p + "_left", p + "_g"], [n.Output[0]]));
            }
            else
            {
                nodes.Add(n);
            }
        }
        g.Node.Clear();
        g.Node.AddRange(nodes);
        if (constants)
        {
            // fp32 scalars: the fixtures that carry these ops are fp32 (an fp16 graph would need them in fp16).
            g.Initializer.Add(UnetFuser.FloatLikeInit("spm.lowering.inv_sqrt2", [], [(float)(1 / Math.Sqrt(2))], (int)TensorProto.Types.DataType.Float));
            g.Initializer.Add(UnetFuser.FloatLikeInit("spm.lowering.one", [], [1f], (int)TensorProto.Types.DataType.Float));
            g.Initializer.Add(UnetFuser.FloatLikeInit("spm.lowering.half", [], [0.5f], (int)TensorProto.Types.DataType.Float));
        }
        return result;
    }

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
