using Spm.Diffusion.Onnx.Proto;
using static Spm.Diffusion.Onnx.OnnxAttributes;

namespace Spm.Training.Autodiff.Rules;

/// <summary>
/// Resize (nearest or linear) over the last two axes of a 4-D tensor, any scale and coordinate transformation.
/// Resize is linear in x and separable: y = A_h x A_wᵀ with interpolation matrices A [out, in] built at run time
/// from the same coordinate formulas ONNX uses, so dx = A_hᵀ g A_w (two MatMuls).
/// </summary>
internal sealed class ResizeRule : IGradientRule
{
    public string?[] Backward(GradientContext ctx, NodeProto node, string?[] g, bool[] need)
    {
        var (x, y) = (node.Input[0], node.Output[0]);
        if (ctx.Rank(x) != 4) throw ctx.Unsupported(node, "Resize of a tensor that is not 4-D");
        var mode = GetString(node, "mode", "nearest");
        if (mode is not ("nearest" or "linear")) throw ctx.Unsupported(node, $"Resize mode '{mode}'");
        var transform = GetString(node, "coordinate_transformation_mode", "half_pixel");
        if (transform == "tf_crop_and_resize") throw ctx.Unsupported(node, "coordinate_transformation_mode tf_crop_and_resize");
        var nearestMode = GetString(node, "nearest_mode", "round_prefer_floor");
        double[]? scales = node.Input.Count > 2 && node.Input[2].Length > 0 ? ctx.ConstantValue(node.Input[2]) : null;
        if (scales is { Length: > 0 } && (scales.Length != 4 || scales[0] != 1 || scales[1] != 1))
            throw ctx.Unsupported(node, "Resize that scales the batch or channel axis");
        int type = ctx.ElemType(x);

        var ah = Matrix(ctx, x, y, 2, scales?.Length == 4 ? scales[2] : null, mode, transform, nearestMode, type);
        var aw = Matrix(ctx, x, y, 3, scales?.Length == 4 ? scales[3] : null, mode, transform, nearestMode, type);
        var gw = ctx.Op("MatMul", "dx_w", [g[0]!, aw]);
        var gx = ctx.Op("MatMul", "dx", [ctx.Transpose(ah, [1, 0]), gw]);
        var r = new string?[node.Input.Count];
        r[0] = gx;
        return r;
    }

    /// <summary>The [out, in] interpolation matrix of one axis.</summary>
    private static string Matrix(GradientContext ctx, string x, string y, int axis, double? scale, string mode, string transform, string nearestMode, int type)
    {
        var inDim = ctx.Squeeze(ctx.Op("Slice", "in", [ctx.ShapeOf(x), ctx.IntConst(axis), ctx.IntConst(axis + 1)]), 0);
        var outDim = ctx.Squeeze(ctx.Op("Slice", "out", [ctx.ShapeOf(y), ctx.IntConst(axis), ctx.IntConst(axis + 1)]), 0);
        var zero = ctx.Scalar(0, 7);
        var one = ctx.Scalar(1, 7);
        var inF = ctx.Op("Cast", "inf", [inDim], Int("to", type));
        var outF = ctx.Op("Cast", "outf", [outDim], Int("to", type));
        var i = ctx.Op("Cast", "i", [ctx.Op("Range", "i", [zero, outDim, one])], Int("to", type));
        var s = scale is { } sc ? ctx.Scalar(sc, type) : ctx.Div(outF, inF);
        var half = ctx.Scalar(0.5, type);
        string src = transform switch
        {
            "half_pixel" or "pytorch_half_pixel" => ctx.Sub(ctx.Div(ctx.Add(i, half), s), half),
            "asymmetric" => ctx.Div(i, s),
            "tf_half_pixel_for_nn" => ctx.Div(ctx.Add(i, half), s),
            "align_corners" => ctx.Mul(i, ctx.Div(ctx.Sub(inF, ctx.Scalar(1, type)),
                ctx.Op("Max", "den", [ctx.Sub(outF, ctx.Scalar(1, type)), ctx.Scalar(1, type)]))),
            _ => throw new Core.SpmException($"Resize coordinate_transformation_mode '{transform}' is not supported by the gradient builder."),
        };
        var inMinus1 = ctx.Sub(inF, ctx.Scalar(1, type));
        var columns = ctx.Unsqueeze(ctx.Op("Cast", "j", [ctx.Op("Range", "j", [zero, inDim, one])], Int("to", type)), 0);
        if (mode == "nearest")
        {
            string idx = nearestMode switch
            {
                "floor" => ctx.Op("Floor", "idx", [src]),
                "ceil" => ctx.Op("Ceil", "idx", [src]),
                "round_prefer_ceil" => ctx.Op("Floor", "idx", [ctx.Add(src, half)]),
                _ => ctx.Op("Ceil", "idx", [ctx.Sub(src, half)]),
            };
            var clamped = ctx.Op("Min", "idx", [ctx.Op("Max", "idx", [idx, ctx.Scalar(0, type)]), inMinus1]);
            return ctx.Op("Cast", "a", [ctx.Op("Equal", "a", [ctx.Unsqueeze(clamped, 1), columns])], Int("to", type));
        }
        // linear: weight max(0, 1 - |clamp(src) - j|); clamping reproduces edge replication.
        var c = ctx.Op("Min", "src", [ctx.Op("Max", "src", [src, ctx.Scalar(0, type)]), inMinus1]);
        var dist = ctx.Op("Abs", "dist", [ctx.Sub(ctx.Unsqueeze(c, 1), columns)]);
        return ctx.Op("Relu", "a", [ctx.Sub(ctx.Scalar(1, type), dist)]);
    }
}
