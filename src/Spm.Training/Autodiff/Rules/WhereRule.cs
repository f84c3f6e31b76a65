using Spm.Diffusion.Onnx.Proto;

namespace Spm.Training.Autodiff.Rules;

/// <summary>y = where(c, a, b): da = reduce(where(c, g, 0)), db = reduce(where(c, 0, g)); the condition has none.</summary>
internal sealed class WhereRule : IGradientRule
{
    public string?[] Backward(GradientContext ctx, NodeProto node, string?[] g, bool[] need)
    {
        var (c, a, b, y) = (node.Input[0], node.Input[1], node.Input[2], node.Output[0]);
        var zero = ctx.Scalar(0, ctx.ElemType(y));
        return
        [
            null,
            need[1] ? ctx.ReduceToOperand(ctx.Op("Where", "where", [c, g[0]!, zero]), y, a) : null,
            need[2] ? ctx.ReduceToOperand(ctx.Op("Where", "where", [c, zero, g[0]!]), y, b) : null,
        ];
    }
}
