using Spm.Diffusion.Onnx.Proto;

namespace Spm.Training.Autodiff.Rules;

/// <summary>y = sigmoid(x): dx = g * y * (1 - y).</summary>
internal sealed class SigmoidRule : IGradientRule
{
    public string?[] Backward(GradientContext ctx, NodeProto node, string?[] g, bool[] need)
    {
        var y = node.Output[0];
        var oneMinusY = ctx.Sub(ctx.Scalar(1, ctx.ElemType(y)), y);
        return [ctx.Mul(ctx.Mul(g[0]!, y), oneMinusY)];
    }
}
