using Spm.Diffusion.Onnx.Proto;

namespace Spm.Training.Autodiff.Rules;

/// <summary>y = a * b: da = reduce(g * b), db = reduce(g * a).</summary>
internal sealed class MulRule : IGradientRule
{
    public string?[] Backward(GradientContext ctx, NodeProto node, string?[] g, bool[] need)
    {
        var (a, b, y) = (node.Input[0], node.Input[1], node.Output[0]);
        return
        [
            need[0] ? ctx.ReduceToOperand(ctx.Mul(g[0]!, b), y, a) : null,
            need[1] ? ctx.ReduceToOperand(ctx.Mul(g[0]!, a), y, b) : null,
        ];
    }
}
