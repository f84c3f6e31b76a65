using Spm.Diffusion.Onnx.Proto;

namespace Spm.Training.Autodiff.Rules;

/// <summary>
/// GroupNormalization (opset 18: scale/bias per group; opset 21: per channel): computed in the grouped view
/// [N, G, C/G, L] where each group is normalized over its last two axes.
/// </summary>
internal sealed class GroupNormalizationRule : IGradientRule
{
    public string?[] Backward(GradientContext ctx, NodeProto node, string?[] g, bool[] need)
    {
        var (x, scale) = (node.Input[0], node.Input[1]);
        var gy = g[0]!;
        long groups = OnnxAttributes.GetInt(node, "num_groups", 0);
        long channels = ctx.Dims(x)[1];
        if (groups <= 0 || channels % groups != 0) throw ctx.Unsupported(node, $"num_groups={groups} with {channels} channels");
        long cg = channels / groups;
        bool perChannel = ctx.Dims(scale)[0] == channels && !(channels == groups && ctx.Opset < 21);
        double eps = OnnxAttributes.GetFloat(node, "epsilon", 1e-5f);
        var grouped = ctx.IntConst(0, groups, cg, -1);
        var xr = ctx.Op("Reshape", "xg", [x, grouped]);
        var gr = ctx.Op("Reshape", "gg", [gy, grouped]);
        ctx.SetInfo(xr, ctx.ElemType(x), [ctx.Dims(x)[0], groups, cg, -1]);
        long[] axes = [2, 3];
        var (xhat, rstd) = NormalizationMath.Normalize(ctx, xr, axes, eps);
        var scaleShape = perChannel ? ctx.IntConst(groups, cg, 1) : ctx.IntConst(groups, 1, 1);
        var r = new string?[node.Input.Count];
        if (need[0])
        {
            var gh = ctx.Mul(gr, ctx.Op("Reshape", "scale", [scale, scaleShape]));
            r[0] = ctx.ReshapeLike(NormalizationMath.InputGrad(ctx, gh, xhat, rstd, axes), x);
        }
        long[] reduceAxes = perChannel ? [0, 3] : [0, 2, 3];
        if (need[1]) r[1] = ctx.ReshapeLike(ctx.ReduceSum(ctx.Mul(gr, xhat), reduceAxes, keepDims: false), scale);
        if (node.Input.Count > 2 && need[2]) r[2] = ctx.ReshapeLike(ctx.ReduceSum(gr, reduceAxes, keepDims: false), node.Input[2]);
        return r;
    }
}
