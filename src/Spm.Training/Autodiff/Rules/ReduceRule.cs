using Spm.Diffusion.Onnx.Proto;

namespace Spm.Training.Autodiff.Rules;

/// <summary>
/// ReduceSum / ReduceMean (axes as attribute or, from opset 13/18, as input; keepdims; noop_with_empty_axes):
/// the gradient is unsqueezed back over the reduced axes, expanded to the input's shape and, for the mean,
/// divided by the number of reduced elements (computed at run time).
/// </summary>
internal sealed class ReduceRule(bool mean) : IGradientRule
{
    public string?[] Backward(GradientContext ctx, NodeProto node, string?[] g, bool[] need)
    {
        var (x, y) = (node.Input[0], node.Output[0]);
        int rank = ctx.Rank(x);
        long[]? axes = OnnxAttributes.GetInts(node, "axes");
        if (axes is null && node.Input.Count > 1 && node.Input[1].Length > 0)
            axes = ctx.ConstantInts(node.Input[1]) ?? throw ctx.Unsupported(node, "the reduction axes are not a constant");
        bool keep = OnnxAttributes.GetInt(node, "keepdims", 1) != 0;
        if (axes is null || axes.Length == 0)
        {
            if (OnnxAttributes.GetInt(node, "noop_with_empty_axes", 0) != 0)
                return Result(node, g[0]!);
            axes = Enumerable.Range(0, rank).Select(i => (long)i).ToArray();
        }
        var norm = axes.Select(a => GradientContext.Axis(a, rank)).Order().ToArray();
        var gk = keep ? g[0]! : ctx.Unsqueeze(g[0]!, norm);
        if (mean)
        {
            // Scale the small tensor before expanding: g * (ny / nx).
            int type = ctx.ElemType(x);
            var nx = ctx.Op("Cast", "nx", [ctx.Op("Size", "size", [x])], OnnxAttributes.Int("to", type));
            var ny = ctx.Op("Cast", "ny", [ctx.Op("Size", "size", [y])], OnnxAttributes.Int("to", type));
            gk = ctx.Mul(gk, ctx.Div(ny, nx));
        }
        return Result(node, ctx.Op("Expand", "expand", [gk, ctx.ShapeOf(x)]));
    }

    private static string?[] Result(NodeProto node, string g)
    {
        var r = new string?[node.Input.Count];
        r[0] = g;
        return r;
    }
}
