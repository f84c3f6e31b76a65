using Spm.Diffusion.Onnx.Proto;

namespace Spm.Training.Autodiff.Rules;

/// <summary>y = sqrt(x): dx = g * 0.5 / y.</summary>
internal sealed class SqrtRule : IGradientRule
{
    public string?[] Backward(GradientContext ctx, NodeProto node, string?[] g, bool[] need)
    {
        var y = node.Output[0];
        return [ctx.Div(ctx.Mul(g[0]!, ctx.Scalar(0.5, ctx.ElemType(y))), y)];
    }
}
