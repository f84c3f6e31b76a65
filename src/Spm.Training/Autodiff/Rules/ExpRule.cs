using Spm.Diffusion.Onnx.Proto;

namespace Spm.Training.Autodiff.Rules;

/// <summary>y = exp(x): dx = g * y.</summary>
internal sealed class ExpRule : IGradientRule
{
    public string?[] Backward(GradientContext ctx, NodeProto node, string?[] g, bool[] need)
        => [ctx.Mul(g[0]!, node.Output[0])];
}
