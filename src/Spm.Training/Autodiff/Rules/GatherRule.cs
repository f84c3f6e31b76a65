using Spm.Diffusion.Onnx.Proto;
using static Spm.Diffusion.Onnx.OnnxAttributes;

namespace Spm.Training.Autodiff.Rules;

/// <summary>
/// y = gather(x, indices, axis) with float x: dx accumulates g rows into the gathered positions (repeated indices
/// add up). Written as a one-hot matrix product, which needs no scatter-with-reduction op and so works at any opset:
/// the gathered axis is moved to the front, onehot(indices)ᵀ @ g[K, rest], then moved back.
/// </summary>
internal sealed class GatherRule : IGradientRule
{
    public string?[] Backward(GradientContext ctx, NodeProto node, string?[] g, bool[] need)
    {
        var (x, indices) = (node.Input[0], node.Input[1]);
        int r = ctx.Rank(x), q = ctx.Rank(indices);
        long axis = GradientContext.Axis(GetInt(node, "axis", 0), r);
        int type = ctx.ElemType(x);

        // g: x[:axis] + indices.shape + x[axis+1:]  ->  indices.shape + x[:axis] + x[axis+1:]  ->  [K, R]
        var gPerm = Enumerable.Range((int)axis, q)
            .Concat(Enumerable.Range(0, (int)axis))
            .Concat(Enumerable.Range((int)axis + q, r - 1 - (int)axis))
            .Select(i => (long)i).ToArray();
        var gy = q == 0 && axis == 0 ? g[0]! : ctx.Transpose(g[0]!, gPerm);
        var g2 = ctx.Op("Flatten", "rows", [gy], Int("axis", q));

        var depth = ctx.Op("Slice", "depth", [ctx.ShapeOf(x), ctx.IntConst(axis), ctx.IntConst(axis + 1)]);
        var idx = ctx.Op("Reshape", "idx", [ctx.ElemType(indices) == 7 ? indices : ctx.Op("Cast", "idx", [indices], Int("to", 7)), ctx.IntConst(-1)]);
        // Negative indices count from the end.
        var wrapped = ctx.Op("Where", "idx", [ctx.Op("Less", "neg", [idx, ctx.Scalar(0, 7)]), ctx.Add(idx, depth), idx]);
        var positions = ctx.Op("Range", "pos", [ctx.Scalar(0, 7), ctx.Squeeze(depth, 0), ctx.Scalar(1, 7)]);
        var match = ctx.Op("Equal", "match", [ctx.Unsqueeze(wrapped, 1), ctx.Unsqueeze(positions, 0)]);
        var onehot = ctx.Op("Cast", "onehot", [match], Int("to", type));
        var gx2 = ctx.Op("Gemm", "dx", [onehot, g2], Int("transA", 1));

        // [D, R] -> x moved axis-first -> x.
        var xPerm = new long[r];
        xPerm[0] = axis;
        for (int i = 0, k = 1; i < r; i++) if (i != axis) xPerm[k++] = i;
        var movedShape = ctx.Op("Gather", "shape", [ctx.ShapeOf(x), ctx.IntConst(xPerm)]);
        var moved = ctx.Op("Reshape", "dx", [gx2, movedShape]);
        var inverse = new long[r];
        for (int i = 0; i < r; i++) inverse[xPerm[i]] = i;
        return [axis == 0 ? moved : ctx.Transpose(moved, inverse), null];
    }
}
