using Spm.Diffusion.Onnx.Proto;

namespace Spm.Training.Autodiff.Rules;

/// <summary>y = concat(x_1..x_n, axis): the gradient is split back along the axis with the inputs' run-time sizes.</summary>
internal sealed class ConcatRule : IGradientRule
{
    public string?[] Backward(GradientContext ctx, NodeProto node, string?[] g, bool[] need)
    {
        int rank = ctx.Rank(node.Output[0]);
        long axis = GradientContext.Axis(OnnxAttributes.GetInt(node, "axis", 0), rank);
        int n = node.Input.Count;
        var sizes = new string[n];
        for (int i = 0; i < n; i++)
            sizes[i] = ctx.Op("Slice", "size", [ctx.ShapeOf(node.Input[i]), ctx.IntConst(axis), ctx.IntConst(axis + 1)]);
        var split = n == 1 ? sizes[0] : ctx.Op("Concat", "sizes", sizes, OnnxAttributes.Int("axis", 0));
        var parts = ctx.OpMulti("Split", "part", [g[0]!, split], n, OnnxAttributes.Int("axis", axis));
        var r = new string?[n];
        for (int i = 0; i < n; i++) r[i] = need[i] ? parts[i] : null;
        return r;
    }
}
