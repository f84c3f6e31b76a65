using Spm.Diffusion.Onnx.Proto;

namespace Spm.Training.Autodiff.Rules;

/// <summary>y = ln(x): dx = g / x.</summary>
internal sealed class LogRule : IGradientRule
{
    public string?[] Backward(GradientContext ctx, NodeProto node, string?[] g, bool[] need)
        => [ctx.Div(g[0]!, node.Input[0])];
}
