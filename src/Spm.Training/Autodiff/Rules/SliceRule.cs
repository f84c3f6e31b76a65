using Spm.Diffusion.Onnx.Proto;

namespace Spm.Training.Autodiff.Rules;

/// <summary>
/// y = slice(x, starts, ends, axes, steps = 1): dx = zero-padding of g back to x's shape. The begin/end pad of
/// each sliced axis is found at run time by slicing an index range the same way (which applies ONNX's clamping and
/// negative-index rules exactly), so computed starts/ends (as exporters emit for chunk()) work too.
/// </summary>
internal sealed class SliceRule : IGradientRule
{
    public string?[] Backward(GradientContext ctx, NodeProto node, string?[] g, bool[] need)
    {
        var x = node.Input[0];
        int rank = ctx.Rank(x);
        string? Input(int i) => node.Input.Count > i && node.Input[i].Length > 0 ? node.Input[i] : null;
        var (starts, ends, axesT, stepsT) = (node.Input[1], node.Input[2], Input(3), Input(4));
        if (stepsT is not null && (ctx.ConstantInts(stepsT) is not { } steps || steps.Any(v => v != 1)))
            throw ctx.Unsupported(node, "Slice with steps other than a constant 1");
        long[] axes;
        if (axesT is null) axes = Enumerable.Range(0, (int)ctx.Dims(starts)[0]).Select(i => (long)i).ToArray();
        else axes = ctx.ConstantInts(axesT)?.Select(a => GradientContext.Axis(a, rank)).ToArray()
            ?? throw ctx.Unsupported(node, "Slice axes that are not constant");

        var begins = new string[rank];
        var endsPad = new string[rank];
        var zero = ctx.IntConst(0);
        for (int d = 0; d < rank; d++) { begins[d] = zero; endsPad[d] = zero; }
        for (int i = 0; i < axes.Length; i++)
        {
            int a = (int)axes[i];
            var dim = ctx.Op("Slice", "dim", [ctx.ShapeOf(x), ctx.IntConst(a), ctx.IntConst(a + 1)]);
            var idx = ctx.Op("Range", "index", [ctx.Scalar(0, 7), ctx.Squeeze(dim, 0), ctx.Scalar(1, 7)]);
            var picked = ctx.Op("Slice", "picked", [idx, Element(ctx, starts, i), Element(ctx, ends, i), ctx.IntConst(0)]);
            begins[a] = ctx.Op("Slice", "first", [picked, ctx.IntConst(0), ctx.IntConst(1)]);
            var last = ctx.Op("Slice", "last", [picked, ctx.IntConst(-1), ctx.IntConst(long.MaxValue)]);
            endsPad[a] = ctx.Sub(ctx.Sub(dim, last), ctx.IntConst(1));
        }
        var pads = ctx.Op("Concat", "pads", [.. begins, .. endsPad], OnnxAttributes.Int("axis", 0));
        var r = new string?[node.Input.Count];
        r[0] = ctx.Op("Pad", "dx", [g[0]!, pads]);
        return r;
    }

    private static string Element(GradientContext ctx, string vector, int i)
        => ctx.Op("Slice", "bound", [vector, ctx.IntConst(i), ctx.IntConst(i + 1)]);
}
