using System.Text.RegularExpressions;
using Spm.Core;
using Spm.Diffusion.Onnx.Proto;

namespace Spm.Diffusion.Onnx.Fused;

/// <summary>The optimizer's bias fusions of the transformer blocks (contrib ops the CPU provider lacks).</summary>
public static partial class UnetFuser
{
    /// <summary>
    /// <c>com.microsoft.BiasSplitGelu(X, bias)</c> (spec: X [N, S, D], bias [D]; Y [N, S, D/2] = left · Gelu(right) of
    /// X + bias split in halves on the last axis) replacing GEGLU after <c>ff.net.0.proj</c>'s MatMul, whose bias Add it
    /// absorbs; and <c>com.microsoft.BiasAdd(X, bias, skip)</c> (spec: Y = X + bias + skip, X and skip [N, S, C], bias [C])
    /// replacing a projection's bias Add followed by the residual Add (to_out.0 of each attention, ff.net.2).
    /// Both are CUDA-only in ONNX Runtime 1.31; the projections stay MatMuls, so membranes are placed on their outputs,
    /// before the bias (the same sum).
    /// </summary>
    private static (int SplitGelu, int BiasAdd) FuseBiasOps(OnnxModel unet, GraphProto g)
    {
        var nodes = g.Node.ToList();
        var producer = new Dictionary<string, NodeProto>(StringComparer.Ordinal);
        var consumers = new Dictionary<string, List<NodeProto>>(StringComparer.Ordinal);
        foreach (var n in nodes)
        {
            foreach (var o in n.Output) producer.TryAdd(o, n);
            foreach (var i in n.Input)
                if (i.Length > 0) { if (!consumers.TryGetValue(i, out var l)) consumers[i] = l = []; l.Add(n); }
        }
        var inits = g.Initializer.ToDictionary(t => t.Name, StringComparer.Ordinal);
        var removed = new HashSet<NodeProto>(ReferenceEqualityComparer.Instance);
        var replace = new Dictionary<NodeProto, NodeProto>(ReferenceEqualityComparer.Instance);
        int gelu = 0, biasAdd = 0;

        List<NodeProto> Users(string v) => consumers.GetValueOrDefault(v) ?? [];
        string? BiasOf(NodeProto add, string other)
        {
            if (add.OpType != "Add" || add.Input.Count != 2) return null;
            var b = add.Input[0] == other ? add.Input[1] : add.Input[1] == other ? add.Input[0] : null;
            return b is not null && inits.TryGetValue(b, out var t) && t.Dims.Count == 1 ? b : null;
        }

        foreach (var proj in nodes)
        {
            var m = GegluProjRegex().Match(proj.Name);
            if (!m.Success || proj.OpType != "MatMul") continue;
            string p = m.Groups[1].Value; // .../ff/net.0
            var users = Users(proj.Output[0]);
            if (users.Count != 1 || BiasOf(users[0], proj.Output[0]) is not { } bias) continue;
            var core = nodes.Where(n => n.Name.StartsWith(p + "/", StringComparison.Ordinal) && !ReferenceEquals(n, proj)).ToHashSet<NodeProto>(ReferenceEqualityComparer.Instance);
            var next = nodes.FirstOrDefault(n => n.OpType == "MatMul" && n.Name == p[..^"net.0".Length] + "net.2/MatMul");
            if (next is null || !producer.TryGetValue(next.Input[0], out var last) || !core.Contains(last)) continue;
            if (core.Any(n => n.Output.Any(o => Users(o).Any(u => !core.Contains(u) && !ReferenceEquals(u, next)))))
                throw new SpmFormatException(unet.FilePath, p, $"GEGLU nodes of '{p}' are used outside it; cannot fuse them into BiasSplitGelu.");
            var fused = Node("BiasSplitGelu", $"BiasSplitGelu_{gelu++}", MsDomain, [proj.Output[0], bias], [next.Input[0]]);
            foreach (var n in core) removed.Add(n);
            replace[last] = fused;
        }

        foreach (var mm in nodes)
        {
            if (mm.OpType != "MatMul" || removed.Contains(mm)) continue;
            var path = AdaptableLayerFinder.ModulePathFromNodeName(mm.Name, "MatMul");
            if (path is null || !(path.EndsWith(".to_out.0", StringComparison.Ordinal) || path.EndsWith(".ff.net.2", StringComparison.Ordinal))) continue;
            var users = Users(mm.Output[0]);
            if (users.Count != 1 || BiasOf(users[0], mm.Output[0]) is not { } bias) continue;
            var biasNode = users[0];
            var next = Users(biasNode.Output[0]);
            if (next.Count != 1 || next[0].OpType != "Add" || next[0].Input.Count != 2) continue;
            var residual = next[0];
            string skip = residual.Input[0] == biasNode.Output[0] ? residual.Input[1] : residual.Input[0];
            var fused = Node("BiasAdd", $"BiasAdd_{biasAdd++}", MsDomain, [mm.Output[0], bias, skip], [residual.Output[0]]);
            removed.Add(biasNode);
            replace[residual] = fused;
        }

        var result = new List<NodeProto>(nodes.Count);
        foreach (var n in nodes)
        {
            if (replace.TryGetValue(n, out var r)) result.Add(r);
            else if (!removed.Contains(n)) result.Add(n);
        }
        g.Node.Clear();
        g.Node.AddRange(result);
        return (gelu, biasAdd);
    }

    [GeneratedRegex(@"^(/.+/ff/net\.0)/proj/MatMul$", RegexOptions.CultureInvariant)]
    private static partial Regex GegluProjRegex();
}
