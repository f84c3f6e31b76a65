using Spm.Diffusion.Onnx.Proto;
using static Spm.Diffusion.Onnx.OnnxAttributes;

namespace Spm.Training.Autodiff.Rules;

/// <summary>
/// y = alpha * op(a) @ op(b) + beta * c, op = optional transpose: each operand gradient is itself one Gemm with
/// the transposition flags chosen so no explicit Transpose is needed; dc = beta * reduce(g).
/// </summary>
internal sealed class GemmRule : IGradientRule
{
    public string?[] Backward(GradientContext ctx, NodeProto node, string?[] g, bool[] need)
    {
        var (a, b, y) = (node.Input[0], node.Input[1], node.Output[0]);
        bool ta = GetInt(node, "transA", 0) != 0, tb = GetInt(node, "transB", 0) != 0;
        float alpha = GetFloat(node, "alpha", 1f), beta = GetFloat(node, "beta", 1f);
        var r = new string?[node.Input.Count];
        var gy = g[0]!;
        if (need[0])
            r[0] = ta
                ? ctx.Op("Gemm", "da", [b, gy], Float("alpha", alpha), Int("transA", tb ? 1 : 0), Int("transB", 1))
                : ctx.Op("Gemm", "da", [gy, b], Float("alpha", alpha), Int("transB", tb ? 0 : 1));
        if (need[1])
            r[1] = tb
                ? ctx.Op("Gemm", "db", [gy, a], Float("alpha", alpha), Int("transA", 1), Int("transB", ta ? 1 : 0))
                : ctx.Op("Gemm", "db", [a, gy], Float("alpha", alpha), Int("transA", ta ? 0 : 1));
        if (node.Input.Count > 2 && need[2])
        {
            var gc = ctx.ReduceToOperand(gy, y, node.Input[2]);
            r[2] = beta == 1f ? gc : ctx.Mul(gc, ctx.Scalar(beta, ctx.ElemType(y)));
        }
        return r;
    }
}
