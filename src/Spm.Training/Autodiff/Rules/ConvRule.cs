using Spm.Diffusion.Onnx.Proto;
using static Spm.Diffusion.Onnx.OnnxAttributes;

namespace Spm.Training.Autodiff.Rules;

/// <summary>
/// y = conv(x, w, b) with any kernel, strides, pads, dilations and groups (1-D/2-D/3-D):
/// dx = ConvTranspose(g, w) with the same attributes (with a stride: cropping only the begin padding, then cut or
/// zero-padded to x's run-time size); dw = a Conv with batch and channels swapped (x as input, g as kernel,
/// strides and dilations exchanged), cut to the kernel size; db = sum of g over batch and space.
/// </summary>
internal sealed class ConvRule : IGradientRule
{
    public string?[] Backward(GradientContext ctx, NodeProto node, string?[] g, bool[] need)
    {
        var (x, w) = (node.Input[0], node.Input[1]);
        var gy = g[0]!;
        int rank = ctx.Rank(x), nsp = rank - 2;
        var autoPad = GetString(node, "auto_pad", "NOTSET");
        if (autoPad is not ("NOTSET" or "VALID"))
            throw ctx.Unsupported(node, $"auto_pad={autoPad} (re-export with explicit pads)");
        var strides = GetInts(node, "strides") ?? Ones(nsp);
        var dilations = GetInts(node, "dilations") ?? Ones(nsp);
        var pads = GetInts(node, "pads") ?? new long[2 * nsp];
        long group = GetInt(node, "group", 1);
        var kernel = ctx.Dims(w)[2..];
        bool strided = strides.Any(s => s != 1);
        var r = new string?[node.Input.Count];

        if (need[0])
        {
            // With a stride, how much of the end padding the windows reach depends on the run-time size, so the
            // transposed conv crops only the begin padding; the result is then cut or zero-padded to x's size
            // (trailing rows no window reached get zero gradient).
            var ctPads = strided ? pads[..nsp].Concat(new long[nsp]).ToArray() : pads;
            var gx = ctx.Op("ConvTranspose", "dx", [gy, w],
                Ints("strides", strides), Ints("pads", ctPads), Ints("dilations", dilations),
                Ints("kernel_shape", kernel), Int("group", group));
            if (strided)
            {
                var spatialAxes = ctx.IntConst(Enumerable.Range(2, nsp).Select(i => (long)i).ToArray());
                var xSpace = ctx.Op("Slice", "xspace", [ctx.ShapeOf(x), ctx.IntConst(2), ctx.IntConst(rank)]);
                gx = ctx.Op("Slice", "dx", [gx, ctx.IntConst(new long[nsp]), xSpace, spatialAxes]);
                var gSpace = ctx.Op("Slice", "gspace", [ctx.Op("Shape", "shape", [gx]), ctx.IntConst(2), ctx.IntConst(rank)]);
                var padsT = ctx.Op("Concat", "pads", [ctx.IntConst(new long[rank + 2]), ctx.Sub(xSpace, gSpace)], Int("axis", 0));
                gx = ctx.Op("Pad", "dx", [gx, padsT]);
            }
            r[0] = gx;
        }
        if (need[1])
        {
            long cg = ctx.Dims(w)[1];
            var spatialPerm = Enumerable.Range(2, nsp).Select(i => (long)i);
            string xt;
            if (group == 1)
                xt = ctx.Transpose(x, [1, 0, .. spatialPerm]);
            else
            {
                // [N, G*Cg, S] -> [N, G, Cg, S] -> [Cg, G, N, S] -> [Cg, G*N, S]: each group's samples become that group's channels.
                var space = ctx.Op("Slice", "space", [ctx.ShapeOf(x), ctx.IntConst(2), ctx.IntConst(rank)]);
                var nDim = ctx.Op("Slice", "n", [ctx.ShapeOf(x), ctx.IntConst(0), ctx.IntConst(1)]);
                var split = ctx.Op("Concat", "shape", [nDim, ctx.IntConst(group, cg), space], Int("axis", 0));
                var x5 = ctx.Op("Reshape", "xg", [x, split]);
                var t = ctx.Transpose(x5, [2, 1, 0, .. Enumerable.Range(3, nsp).Select(i => (long)i)]);
                var merged = ctx.Op("Concat", "shape", [ctx.IntConst(cg, -1), space], Int("axis", 0));
                xt = ctx.Op("Reshape", "xt", [t, merged]);
            }
            var gt = ctx.Transpose(gy, [1, 0, .. spatialPerm]);
            var dwt = ctx.Op("Conv", "dw", [xt, gt],
                Ints("strides", dilations), Ints("dilations", strides), Ints("pads", pads), Int("group", group));
            if (strided)
                dwt = ctx.Op("Slice", "dw", [dwt, ctx.IntConst(new long[nsp]), ctx.IntConst(kernel),
                    ctx.IntConst(Enumerable.Range(2, nsp).Select(i => (long)i).ToArray())]);
            r[1] = ctx.Transpose(dwt, [1, 0, .. spatialPerm]);
        }
        if (node.Input.Count > 2 && node.Input[2].Length > 0 && need[2])
            r[2] = ctx.ReduceSum(gy, [0, .. Enumerable.Range(2, nsp).Select(i => (long)i)], keepDims: false);
        return r;
    }

    private static long[] Ones(int n) => Enumerable.Repeat(1L, n).ToArray();
}
