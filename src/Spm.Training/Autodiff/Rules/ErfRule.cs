using Spm.Diffusion.Onnx.Proto;

namespace Spm.Training.Autodiff.Rules;

/// <summary>y = erf(x): dx = g * 2/sqrt(pi) * exp(-x^2).</summary>
internal sealed class ErfRule : IGradientRule
{
    public string?[] Backward(GradientContext ctx, NodeProto node, string?[] g, bool[] need)
    {
        var x = node.Input[0];
        int type = ctx.ElemType(x);
        var expNegSq = ctx.Op("Exp", "exp", [ctx.Mul(ctx.Mul(x, x), ctx.Scalar(-1, type))]);
        return [ctx.Mul(ctx.Mul(g[0]!, ctx.Scalar(2.0 / Math.Sqrt(Math.PI), type)), expNegSq)];
    }
}
