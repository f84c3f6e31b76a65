using Spm.Diffusion.Onnx;
using Spm.Diffusion.Onnx.Proto;

namespace Spm.Diffusion.Tests.Membranes;

/// <summary>
/// A small, test-only stand-in for the project's adaptable-layer finder: maps PyTorch-exporter node names
/// (<c>/a/b.0/c/MatMul</c>) to module paths, for MatMul/Conv/Gemm nodes with a weight initializer.
/// </summary>
internal static class TestLayerFinder
{
    public static IReadOnlyList<AdaptableLayer> Find(ModelProto model)
    {
        var g = model.Graph;
        var inits = g.Initializer.ToDictionary(t => t.Name);
        var consumers = new Dictionary<string, List<NodeProto>>();
        foreach (var n in g.Node)
            foreach (var i in n.Input)
                (consumers.TryGetValue(i, out var l) ? l : consumers[i] = []).Add(n);
        var layers = new List<AdaptableLayer>();
        foreach (var n in g.Node)
        {
            if (n.OpType is not ("MatMul" or "Conv" or "Gemm") || n.Input.Count < 2 || !inits.TryGetValue(n.Input[1], out var w)) continue;
            var name = n.Name.TrimStart('/');
            int slash = name.LastIndexOf('/');
            if (slash < 0) continue;
            var path = name[..slash].Replace('/', '.');
            var dims = w.Dims.Select(d => (int)d).ToArray();
            string output = n.Output[0];
            if (n.OpType == "MatMul" && consumers.TryGetValue(output, out var cs) && cs.Count == 1 && cs[0].OpType == "Add"
                && cs[0].Input.Any(inits.ContainsKey))
                output = cs[0].Output[0];
            int[] Ints(string a) => n.Attribute.FirstOrDefault(x => x.Name == a)?.Ints.Select(v => (int)v).ToArray() ?? [];
            bool inT = path.Contains(".attentions.", StringComparison.Ordinal);
            switch (n.OpType)
            {
                case "MatMul":
                    layers.Add(new AdaptableLayer(path, LayerKind.MatMul, dims[0], dims[1], n.Name, n.Input[0], w.Name, output, [], [], [], [], 1, inT));
                    break;
                case "Gemm":
                    bool transB = n.Attribute.Any(a => a.Name == "transB" && a.I != 0);
                    layers.Add(new AdaptableLayer(path, LayerKind.Gemm, transB ? dims[1] : dims[0], transB ? dims[0] : dims[1], n.Name, n.Input[0], w.Name, output, [], [], [], [], 1, inT));
                    break;
                default:
                    int group = (int)(n.Attribute.FirstOrDefault(a => a.Name == "group")?.I ?? 1);
                    layers.Add(new AdaptableLayer(path, LayerKind.Conv, dims[1] * group, dims[0], n.Name, n.Input[0], w.Name, output,
                        [dims[2], dims[3]], Ints("strides"), Ints("pads"), Ints("dilations"), group, inT));
                    break;
            }
        }
        return layers;
    }
}
