using Spm.Diffusion.Onnx.Proto;

namespace Spm.Training.Autodiff.Rules;

/// <summary>
/// y = a @ b (batched, broadcasting, ranks ≥ 2): da = g @ bᵀ, db = aᵀ @ g, each summed over the batch axes its
/// operand was broadcast along. A 2-D b (a Linear weight) gets db as one Gemm over all rows, no batched temporary.
/// </summary>
internal sealed class MatMulRule : IGradientRule
{
    public string?[] Backward(GradientContext ctx, NodeProto node, string?[] g, bool[] need)
    {
        var (a, b, y) = (node.Input[0], node.Input[1], node.Output[0]);
        int ra = ctx.Rank(a), rb = ctx.Rank(b);
        if (ra < 2 || rb < 2) throw ctx.Unsupported(node, "MatMul with a 1-D operand");
        int type = ctx.ElemType(y);
        var yDims = ctx.Dims(y);
        var batch = yDims[..^2];
        string? ga = null, gb = null;
        if (need[0])
        {
            var raw = ctx.Op("MatMul", "da", [g[0]!, ctx.Transpose(b, SwapLast(rb))]);
            ctx.SetInfo(raw, type, [.. batch, ctx.Dims(a)[^2], ctx.Dims(a)[^1]]);
            ga = ctx.ReduceToOperand(raw, raw, a);
        }
        if (need[1])
        {
            if (rb == 2)
            {
                long k = ctx.Dims(b)[0], n = ctx.Dims(b)[1];
                var a2 = ra == 2 ? a : ctx.Op("Reshape", "a2d", [a, ctx.IntConst(-1, k)]);
                var g2 = ra == 2 ? g[0]! : ctx.Op("Reshape", "g2d", [g[0]!, ctx.IntConst(-1, n)]);
                gb = ctx.Op("Gemm", "db", [a2, g2], OnnxAttributes.Int("transA", 1));
            }
            else
            {
                var raw = ctx.Op("MatMul", "db", [ctx.Transpose(a, SwapLast(ra)), g[0]!]);
                ctx.SetInfo(raw, type, [.. batch, ctx.Dims(b)[^2], ctx.Dims(b)[^1]]);
                gb = ctx.ReduceToOperand(raw, raw, b);
            }
        }
        return [ga, gb];
    }

    private static long[] SwapLast(int rank)
    {
        var p = Enumerable.Range(0, rank).Select(i => (long)i).ToArray();
        (p[rank - 1], p[rank - 2]) = (p[rank - 2], p[rank - 1]);
        return p;
    }
}
