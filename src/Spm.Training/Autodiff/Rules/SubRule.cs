using Spm.Diffusion.Onnx.Proto;

namespace Spm.Training.Autodiff.Rules;

/// <summary>y = a - b: da = reduce(g), db = -reduce(g) (negating after the reduction touches fewer elements).</summary>
internal sealed class SubRule : IGradientRule
{
    public string?[] Backward(GradientContext ctx, NodeProto node, string?[] g, bool[] need)
    {
        var y = node.Output[0];
        return
        [
            need[0] ? ctx.ReduceToOperand(g[0]!, y, node.Input[0]) : null,
            need[1] ? ctx.Neg(ctx.ReduceToOperand(g[0]!, y, node.Input[1])) : null,
        ];
    }
}
