using Spm.Diffusion.Onnx.Proto;

namespace Spm.Training.Autodiff.Rules;

/// <summary>y = expand(x, shape): dx = g summed over the broadcast axes.</summary>
internal sealed class ExpandRule : IGradientRule
{
    public string?[] Backward(GradientContext ctx, NodeProto node, string?[] g, bool[] need)
        => [ctx.ReduceToOperand(g[0]!, node.Output[0], node.Input[0]), null];
}
