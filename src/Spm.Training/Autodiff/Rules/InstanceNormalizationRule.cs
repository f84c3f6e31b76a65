using Spm.Diffusion.Onnx.Proto;

namespace Spm.Training.Autodiff.Rules;

/// <summary>
/// y = scale[c] * xhat + b[c], normalized per sample and channel over the spatial axes (how exporters write
/// GroupNorm: Reshape to [N, G, -1], InstanceNormalization, Reshape back, affine Mul/Add).
/// </summary>
internal sealed class InstanceNormalizationRule : IGradientRule
{
    public string?[] Backward(GradientContext ctx, NodeProto node, string?[] g, bool[] need)
    {
        var (x, scale) = (node.Input[0], node.Input[1]);
        var gy = g[0]!;
        int rank = ctx.Rank(x);
        var space = Enumerable.Range(2, rank - 2).Select(i => (long)i).ToArray();
        double eps = OnnxAttributes.GetFloat(node, "epsilon", 1e-5f);
        var (xhat, rstd) = NormalizationMath.Normalize(ctx, x, space, eps);
        var r = new string?[node.Input.Count];
        if (need[0])
        {
            var scaleC = ctx.Unsqueeze(scale, Enumerable.Range(1, rank - 2).Select(i => (long)i).ToArray());
            r[0] = NormalizationMath.InputGrad(ctx, ctx.Mul(gy, scaleC), xhat, rstd, space);
        }
        long[] batchSpace = [0, .. space];
        if (need[1]) r[1] = ctx.ReduceSum(ctx.Mul(gy, xhat), batchSpace, keepDims: false);
        if (need[2]) r[2] = ctx.ReduceSum(gy, batchSpace, keepDims: false);
        return r;
    }
}
