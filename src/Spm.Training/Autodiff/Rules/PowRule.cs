using Spm.Diffusion.Onnx.Proto;

namespace Spm.Training.Autodiff.Rules;

/// <summary>
/// y = a ^ e: da = g * e * a^(e-1), with short forms for the constant exponents exports use (2 for variances,
/// 0.5); de = g * y * ln(a) when the exponent is on the gradient path too.
/// </summary>
internal sealed class PowRule : IGradientRule
{
    public string?[] Backward(GradientContext ctx, NodeProto node, string?[] g, bool[] need)
    {
        var (a, e, y) = (node.Input[0], node.Input[1], node.Output[0]);
        int type = ctx.ElemType(a);
        string? ga = null;
        if (need[0])
        {
            var c = ctx.ConstantValue(e);
            bool scalar = c is { Length: 1 };
            string? local;
            if (scalar && c![0] == 1.0) local = null;
            else if (scalar && c![0] == 2.0) local = ctx.Mul(a, ctx.Scalar(2, type));
            else if (scalar && c![0] == 0.5) local = ctx.Div(ctx.Scalar(0.5, type), y);
            else
            {
                // Exponent in a's type (exports may store it as another float type).
                var eCast = ctx.ElemType(e) == type ? e : ctx.Op("Cast", "exp", [e], OnnxAttributes.Int("to", type));
                local = ctx.Mul(eCast, ctx.Op("Pow", "pow", [a, ctx.Sub(eCast, ctx.Scalar(1, type))]));
            }
            ga = ctx.ReduceToOperand(local is null ? g[0]! : ctx.Mul(g[0]!, local), y, a);
        }
        string? ge = null;
        if (need[1])
            ge = ctx.ReduceToOperand(ctx.Mul(ctx.Mul(g[0]!, y), ctx.Op("Log", "log", [a])), y, e);
        return [ga, ge];
    }
}
