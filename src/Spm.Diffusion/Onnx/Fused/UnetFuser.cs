using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using Google.Protobuf;
using Spm.Core;
using Spm.Diffusion.Onnx.Proto;
using DataType = Spm.Diffusion.Onnx.Proto.TensorProto.Types.DataType;

namespace Spm.Diffusion.Onnx.Fused;

/// <summary>How <see cref="UnetFuser"/> feeds a packed projection to <c>com.microsoft.MultiHeadAttention</c>.</summary>
public enum FusedAttentionForm
{
    /// <summary>
    /// Exactly what ONNX Runtime's transformer optimizer writes: the packed MatMul's output reshaped to
    /// [B, S, N, 3, H] (self-attention) or [B, S_kv, N, 2, H] (cross-attention) is MultiHeadAttention's query or key
    /// input. ONNX Runtime 1.31 implements these packed inputs on CUDA only ("Packed QKV ... not implemented for CPU").
    /// </summary>
    PackedInput,

    /// <summary>
    /// The same packed MatMul and weights, split back into Q, K and V ([B, S, N·H] each) before MultiHeadAttention:
    /// the form that runs on the CPU provider, used for the CPU fixtures. Finding, injecting and baking layers see the
    /// same packed weight in both forms.
    /// </summary>
    SplitPacked,
}

/// <summary>Options of <see cref="UnetFuser.Fuse"/>.</summary>
/// <param name="Form">How the packed projections reach MultiHeadAttention.</param>
/// <param name="NumHeads">Attention heads; null reads them from each attention block's head-split Div constant.</param>
/// <param name="BiasOps">Also fuse GEGLU into <c>BiasSplitGelu</c> and projection bias + residual into <c>BiasAdd</c>
/// (CUDA-only contrib ops, as the optimizer does for the SD UNet; run on CPU after <see cref="PackedAttentionLowering.ForCpu"/>).</param>
public sealed record UnetFusionOptions(FusedAttentionForm Form = FusedAttentionForm.SplitPacked, int? NumHeads = null, bool BiasOps = false);

/// <summary>A fused UNet and what was rewritten.</summary>
/// <param name="Model">The fused model (in memory; unchanged weights still refer to the original external data).</param>
/// <param name="SelfAttentions">Self-attention blocks rewritten to a packed QKV MatMul + MultiHeadAttention.</param>
/// <param name="CrossAttentions">Cross-attention blocks rewritten to to_q + a packed KV MatMul + MultiHeadAttention.</param>
/// <param name="BiasSplitGelus">GEGLU blocks fused into BiasSplitGelu (with <see cref="UnetFusionOptions.BiasOps"/>).</param>
/// <param name="BiasAdds">Bias + residual Adds fused into BiasAdd (with <see cref="UnetFusionOptions.BiasOps"/>).</param>
public sealed record FusedUnet(OnnxModel Model, int SelfAttentions, int CrossAttentions, int BiasSplitGelus = 0, int BiasAdds = 0);

/// <summary>
/// Rewrites an unfused SD UNet export (PyTorch's exporter, diffusers module scopes in node names) into the attention
/// patterns ONNX Runtime's transformer optimizer (<c>optimize_model(..., model_type="unet")</c>, as Olive runs it)
/// produces: our own implementation of those rewrites, used to build fused fixtures and to check that membranes
/// behave the same on fused and unfused graphs.
/// </summary>
/// <remarks>
/// <para>Per attention module <c>P</c> (<c>.../attn1</c> or <c>.../attn2</c>), every node of the attention core
/// (head split, scores, softmax, head merge: the nodes scoped under <c>P/</c> other than the projections) is replaced
/// by one <c>com.microsoft.MultiHeadAttention</c> (spec: query [B, S, D] or packed [B, S, N, 3, H]; key [B, L, D] or
/// packed KV [B, L, N, 2, H]; value [B, L, D]; attribute num_heads; default scale 1/√H, which is what diffusers uses).</para>
/// <para>Self-attention (to_q, to_k, to_v read the same input): one MatMul <c>MatMul_QKV_i</c> with weight
/// <c>MatMul_QKV_i_weight</c> [C, 3C] interleaved per head (see <see cref="PackedProjection"/>), a Reshape to
/// [0, 0, N, 3, H] and MultiHeadAttention on it. Cross-attention: to_q stays; to_k and to_v become <c>MatMul_KV_i</c>
/// [C_ctx, 2C] reshaped to [0, 0, N, 2, H] as MultiHeadAttention's key. Names follow the optimizer's, so module paths
/// are gone from the packed nodes: the finder recovers them from the untouched <c>to_out.0</c> projection.</para>
/// </remarks>
public static partial class UnetFuser
{
    /// <summary>The contrib-op domain of ONNX Runtime.</summary>
    public const string MsDomain = "com.microsoft";

    /// <summary>Fuses every attention block of <paramref name="unet"/>.</summary>
    /// <exception cref="SpmFormatException">An attention block does not have the unfused export's structure (names the node).</exception>
    public static FusedUnet Fuse(OnnxModel unet, UnetFusionOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(unet);
        options ??= new UnetFusionOptions();
        var proto = unet.Proto.Clone();
        var g = proto.Graph;
        var nodes = g.Node.ToList();
        var byName = new Dictionary<string, NodeProto>(StringComparer.Ordinal);
        foreach (var n in nodes) if (n.Name.Length > 0) byName.TryAdd(n.Name, n);
        var producer = new Dictionary<string, NodeProto>(StringComparer.Ordinal);
        var consumers = new Dictionary<string, List<NodeProto>>(StringComparer.Ordinal);
        foreach (var n in nodes)
        {
            foreach (var o in n.Output) producer.TryAdd(o, n);
            foreach (var i in n.Input)
            {
                if (i.Length == 0) continue;
                if (!consumers.TryGetValue(i, out var list)) consumers[i] = list = [];
                list.Add(n);
            }
        }
        var graphOutputs = g.Output.Select(o => o.Name).ToHashSet(StringComparer.Ordinal);

        var removed = new HashSet<NodeProto>(ReferenceEqualityComparer.Instance);
        var insertBefore = new Dictionary<NodeProto, List<NodeProto>>(ReferenceEqualityComparer.Instance);
        var newInits = new List<TensorProto>();
        int selfCount = 0, crossCount = 0, id = 0;

        foreach (var outProj in nodes)
        {
            var m = ToOutRegex().Match(outProj.Name);
            if (!m.Success || outProj.OpType != "MatMul") continue;
            string p = m.Groups[1].Value;
            NodeProto Need(string suffix) => byName.TryGetValue(p + suffix, out var n) && n.OpType == "MatMul"
                ? n
                : throw new SpmFormatException(unet.FilePath, p + suffix, $"attention block '{p}' has no MatMul '{p}{suffix}' (pattern: unfused attention with to_q, to_k, to_v and to_out.0 MatMuls).");
            var q = Need("/to_q/MatMul");
            var k = Need("/to_k/MatMul");
            var v = Need("/to_v/MatMul");

            var core = nodes.Where(n => n.Name.StartsWith(p + "/", StringComparison.Ordinal) && !n.Name.StartsWith(p + "/to_", StringComparison.Ordinal))
                .ToHashSet<NodeProto>(ReferenceEqualityComparer.Instance);
            string coreOut = outProj.Input[0];
            if (!producer.TryGetValue(coreOut, out var coreLast) || !core.Contains(coreLast))
                throw new SpmFormatException(unet.FilePath, outProj.Name, $"the input of '{outProj.Name}' is not produced inside '{p}' (pattern: attention core scoped under the attention module).");
            foreach (var n in core)
                foreach (var o in n.Output)
                {
                    if (graphOutputs.Contains(o))
                        throw new SpmFormatException(unet.FilePath, n.Name, $"attention core value '{o}' is a graph output; cannot fuse '{p}'.");
                    if (consumers.TryGetValue(o, out var users) && users.Any(u => !core.Contains(u) && !ReferenceEquals(u, outProj)))
                        throw new SpmFormatException(unet.FilePath, n.Name, $"attention core value '{o}' is used outside '{p}'; cannot fuse it (pattern: self-contained attention core).");
                }

            bool self = q.Input[0] == k.Input[0] && k.Input[0] == v.Input[0];
            if (!self && k.Input[0] != v.Input[0])
                throw new SpmFormatException(unet.FilePath, k.Name, $"'{p}': to_k and to_v read different inputs (pattern: self-attention or cross-attention).");

            var wq = ReadWeight(unet, q);
            var wk = ReadWeight(unet, k);
            var wv = ReadWeight(unet, v);
            int heads = options.NumHeads ?? DetectHeads(unet, core, producer, p);
            int dim = wq.Shape[1];
            if (heads <= 0 || dim % heads != 0 || wk.Shape[1] != dim || wv.Shape[1] != dim)
                throw new SpmFormatException(unet.FilePath, q.Name, $"'{p}': projections of {wq.Shape[1]}/{wk.Shape[1]}/{wv.Shape[1]} outputs cannot be split into {heads} heads.");
            int headSize = dim / heads;
            int dtype = unet.GetInitializer(WeightName(unet, q)).DataType;

            var packedWeights = self ? new[] { wq, wk, wv } : new[] { wk, wv };
            int count = packedWeights.Length;
            string mha = $"MultiHeadAttention_{id}";
            string mm = self ? $"MatMul_QKV_{id}" : $"MatMul_KV_{id}";
            id++;
            newInits.Add(PackedWeight($"{mm}_weight", packedWeights, heads, headSize, dtype));
            newInits.Add(Int64Init($"{mm}_reshape_shape", [0, 0, heads, count, headSize]));
            var added = new List<NodeProto>
            {
                Node("MatMul", mm, "", [self ? q.Input[0] : k.Input[0], $"{mm}_weight"], [$"{mm}_out"]),
                Node("Reshape", $"{mm}_reshape", "", [$"{mm}_out", $"{mm}_reshape_shape"], [self ? $"{mha}_qkv_input" : $"{mha}_kv_input"]),
            };
            string packed = added[1].Output[0];
            string[] mhaInputs;
            if (options.Form == FusedAttentionForm.PackedInput)
            {
                mhaInputs = self ? [packed] : [q.Output[0], packed];
            }
            else
            {
                var parts = (self ? new[] { "q", "k", "v" } : ["k", "v"]).Select(s => $"{mha}_{s}").ToArray();
                var split = Node("Split", $"{mha}_split", "", [packed], parts.Select(s => s + "_bsn1h").ToArray());
                split.Attribute.Add(new AttributeProto { Name = "axis", Type = AttributeProto.Types.AttributeType.Int, I = 3 });
                added.Add(split);
                newInits.Add(Int64Init($"{mha}_bsd_shape", [0, 0, dim]));
                foreach (var s in parts) added.Add(Node("Reshape", s + "_reshape", "", [s + "_bsn1h", $"{mha}_bsd_shape"], [s]));
                mhaInputs = self ? parts : [q.Output[0], parts[0], parts[1]];
            }
            var attention = Node("MultiHeadAttention", mha, MsDomain, mhaInputs, [coreOut]);
            attention.Attribute.Add(new AttributeProto { Name = "num_heads", Type = AttributeProto.Types.AttributeType.Int, I = heads });
            added.Add(attention);
            insertBefore[outProj] = added;

            foreach (var n in core) removed.Add(n);
            removed.Add(k);
            removed.Add(v);
            if (self) { removed.Add(q); selfCount++; } else crossCount++;
        }

        var result = new List<NodeProto>(nodes.Count);
        foreach (var n in nodes)
        {
            if (insertBefore.TryGetValue(n, out var extra)) result.AddRange(extra);
            if (!removed.Contains(n)) result.Add(n);
        }
        g.Node.Clear();
        g.Node.AddRange(result);
        g.Initializer.AddRange(newInits);
        var (gelus, biasAdds) = options.BiasOps ? FuseBiasOps(unet, g) : (0, 0);
        DropUnusedInitializers(g);
        if (!proto.OpsetImport.Any(o => o.Domain == MsDomain))
            proto.OpsetImport.Add(new OperatorSetIdProto { Domain = MsDomain, Version = 1 });
        return new FusedUnet(OnnxModel.FromProto(proto, unet.BaseDirectory, unet.FilePath), selfCount, crossCount, gelus, biasAdds);
    }

    /// <summary>Packs [in, N·H] weights into [in, N·count·H], interleaved per head as the optimizer does.</summary>
    private static TensorProto PackedWeight(string name, Core.Tensors.FloatTensor[] weights, int heads, int headSize, int dtype)
    {
        int rows = weights[0].Shape[0], count = weights.Length, dim = heads * headSize, packedCols = dim * count;
        foreach (var w in weights)
            if (w.Shape[0] != rows)
                throw new SpmFormatException(null, name, $"projections to pack have {weights[0].Shape[0]} and {w.Shape[0]} input features.");
        var data = new float[rows * packedCols];
        for (int j = 0; j < count; j++)
        {
            var packing = new PackedProjection(heads, headSize, count, j);
            var w = weights[j].Data;
            for (int r = 0; r < rows; r++)
                for (int c = 0; c < dim; c++)
                    data[r * packedCols + packing.PackedColumn(c)] = w[r * dim + c];
        }
        return FloatLikeInit(name, [rows, packedCols], data, dtype);
    }

    /// <summary>A FLOAT or FLOAT16 initializer (the packed weight keeps the precision of the weights it replaces).</summary>
    internal static TensorProto FloatLikeInit(string name, long[] dims, float[] data, int dtype)
    {
        var t = new TensorProto { Name = name, DataType = dtype };
        t.Dims.AddRange(dims);
        if (dtype == (int)DataType.Float16)
        {
            var half = new Half[data.Length];
            for (int i = 0; i < data.Length; i++) half[i] = (Half)data[i];
            t.RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(half.AsSpan()));
        }
        else if (dtype == (int)DataType.Float)
        {
            t.RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(data.AsSpan()));
        }
        else
        {
            throw new SpmFormatException(null, name, $"cannot pack weights of type {OnnxDataTypes.Name(dtype)} (FLOAT or FLOAT16 only).");
        }
        return t;
    }

    private static string WeightName(OnnxModel unet, NodeProto matmul) => matmul.Input.Count == 2 && unet.HasInitializer(matmul.Input[1])
        ? matmul.Input[1]
        : throw new SpmFormatException(unet.FilePath, matmul.Name, $"'{matmul.Name}' has no weight initializer (pattern: MatMul(x, W) with W an initializer).");

    private static Core.Tensors.FloatTensor ReadWeight(OnnxModel unet, NodeProto matmul)
    {
        var w = unet.ReadFloat(WeightName(unet, matmul));
        if (w.Rank != 2)
            throw new SpmFormatException(unet.FilePath, matmul.Name, $"weight of '{matmul.Name}' is {w.ShapeString}, not 2-D.");
        return w;
    }

    /// <summary>
    /// The head count of an attention core as PyTorch exports diffusers' head split: <c>Div(dim, heads)</c> with a
    /// Constant divisor. Every such divisor in the block must agree.
    /// </summary>
    private static int DetectHeads(OnnxModel unet, IEnumerable<NodeProto> core, Dictionary<string, NodeProto> producer, string block)
    {
        var found = new HashSet<long>();
        foreach (var n in core)
        {
            if (n.OpType != "Div" || n.Input.Count != 2) continue;
            if (!producer.TryGetValue(n.Input[1], out var c) || c.OpType != "Constant") continue;
            var t = c.Attribute.FirstOrDefault(a => a.Name == "value")?.T;
            if (t is null || t.DataType != (int)DataType.Int64 || t.Dims.Count != 0) continue;
            long value = t.Int64Data.Count == 1 ? t.Int64Data[0] : t.RawData.Length == 8 ? BitConverter.ToInt64(t.RawData.Span) : -1;
            if (value > 0) found.Add(value);
        }
        if (found.Count != 1)
            throw new SpmFormatException(unet.FilePath, block, $"cannot read the head count of '{block}' ({(found.Count == 0 ? "no" : "conflicting")} head-split Div constants); pass UnetFusionOptions.NumHeads.");
        return checked((int)found.Single());
    }

    private static void DropUnusedInitializers(GraphProto g)
    {
        var used = new HashSet<string>(StringComparer.Ordinal);
        foreach (var n in g.Node) foreach (var i in n.Input) used.Add(i);
        foreach (var o in g.Output) used.Add(o.Name);
        var keep = g.Initializer.Where(t => used.Contains(t.Name)).ToList();
        if (keep.Count == g.Initializer.Count) return;
        g.Initializer.Clear();
        g.Initializer.AddRange(keep);
    }

    internal static NodeProto Node(string op, string name, string domain, string[] inputs, string[] outputs)
    {
        var n = new NodeProto { OpType = op, Name = name, Domain = domain };
        n.Input.AddRange(inputs);
        n.Output.AddRange(outputs);
        return n;
    }

    internal static TensorProto Int64Init(string name, long[] values)
    {
        var t = new TensorProto { Name = name, DataType = (int)DataType.Int64 };
        t.Dims.Add(values.Length);
        t.Int64Data.AddRange(values);
        return t;
    }

    [GeneratedRegex(@"^(/.+/attn\d+)/to_out\.0/MatMul$", RegexOptions.CultureInvariant)]
    private static partial Regex ToOutRegex();
}
