using Spm.Diffusion.Onnx.Proto;

namespace Spm.Training.Autodiff.Rules;

/// <summary>y = a / b: da = reduce(g / b), db = -reduce(g * y / b).</summary>
internal sealed class DivRule : IGradientRule
{
    public string?[] Backward(GradientContext ctx, NodeProto node, string?[] g, bool[] need)
    {
        var (a, b, y) = (node.Input[0], node.Input[1], node.Output[0]);
        string? gOverB = need[0] || need[1] ? ctx.Div(g[0]!, b) : null;
        return
        [
            need[0] ? ctx.ReduceToOperand(gOverB!, y, a) : null,
            need[1] ? ctx.Neg(ctx.ReduceToOperand(ctx.Mul(gOverB!, y), y, b)) : null,
        ];
    }
}
