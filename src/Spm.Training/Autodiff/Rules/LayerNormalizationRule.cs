using Spm.Diffusion.Onnx.Proto;

namespace Spm.Training.Autodiff.Rules;

/// <summary>y = scale * xhat + b, normalized over the axes from <c>axis</c> to the last (opset 17).</summary>
internal sealed class LayerNormalizationRule : IGradientRule
{
    public string?[] Backward(GradientContext ctx, NodeProto node, string?[] g, bool[] need)
    {
        if (node.Output.Count > 1 && g.Skip(1).Any(v => v is not null))
            throw ctx.Unsupported(node, "gradients through the Mean/InvStdDev outputs");
        var (x, scale) = (node.Input[0], node.Input[1]);
        var gy = g[0]!;
        int rank = ctx.Rank(x);
        long axis = GradientContext.Axis(OnnxAttributes.GetInt(node, "axis", -1), rank);
        var normAxes = Enumerable.Range((int)axis, rank - (int)axis).Select(i => (long)i).ToArray();
        var outer = Enumerable.Range(0, (int)axis).Select(i => (long)i).ToArray();
        double eps = OnnxAttributes.GetFloat(node, "epsilon", 1e-5f);
        var (xhat, rstd) = NormalizationMath.Normalize(ctx, x, normAxes, eps);
        var r = new string?[node.Input.Count];
        if (need[0]) r[0] = NormalizationMath.InputGrad(ctx, ctx.Mul(gy, scale), xhat, rstd, normAxes);
        if (need[1]) r[1] = ctx.ReduceToOperand(ctx.Mul(gy, xhat), node.Output[0], scale);
        if (node.Input.Count > 2 && node.Input[2].Length > 0 && need[2]) r[2] = ctx.ReduceToOperand(gy, node.Output[0], node.Input[2]);
        return r;
    }
}
