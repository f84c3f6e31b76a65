using Spm.Diffusion.Onnx.Proto;

namespace Spm.Training.Autodiff.Rules;

/// <summary>y = -x: dx = -g.</summary>
internal sealed class NegRule : IGradientRule
{
    public string?[] Backward(GradientContext ctx, NodeProto node, string?[] g, bool[] need) => [ctx.Neg(g[0]!)];
}
