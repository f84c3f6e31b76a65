using Spm.Diffusion.Onnx.Proto;

namespace Spm.Training.Autodiff.Rules;

/// <summary>y = tanh(x): dx = g * (1 - y^2).</summary>
internal sealed class TanhRule : IGradientRule
{
    public string?[] Backward(GradientContext ctx, NodeProto node, string?[] g, bool[] need)
    {
        var y = node.Output[0];
        var oneMinusSq = ctx.Sub(ctx.Scalar(1, ctx.ElemType(y)), ctx.Mul(y, y));
        return [ctx.Mul(g[0]!, oneMinusSq)];
    }
}
