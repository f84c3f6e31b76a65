namespace Spm.Training.Autodiff.Rules;

/// <summary>
/// Shared backward of the normalizations: with xhat = (x - mean) * rstd over <c>axes</c> and gh the gradient
/// reaching xhat, dx = rstd * (gh - mean(gh) - xhat * mean(gh * xhat)). Mean and variance are recomputed from x
/// rather than kept from the forward pass, so no extra activations stay alive.
/// </summary>
internal static class NormalizationMath
{
    /// <summary>Returns (xhat, rstd) recomputed from x.</summary>
    public static (string XHat, string Rstd) Normalize(GradientContext ctx, string x, long[] axes, double epsilon)
    {
        int type = ctx.ElemType(x);
        var mean = ctx.ReduceMean(x, axes, keepDims: true);
        var xc = ctx.Sub(x, mean);
        var variance = ctx.ReduceMean(ctx.Mul(xc, xc), axes, keepDims: true);
        var rstd = ctx.Op("Reciprocal", "rstd", [ctx.Op("Sqrt", "std", [ctx.Add(variance, ctx.Scalar(epsilon, type))])]);
        return (ctx.Mul(xc, rstd), rstd);
    }

    public static string InputGrad(GradientContext ctx, string gh, string xhat, string rstd, long[] axes)
    {
        var meanG = ctx.ReduceMean(gh, axes, keepDims: true);
        var meanGx = ctx.ReduceMean(ctx.Mul(gh, xhat), axes, keepDims: true);
        var inner = ctx.Sub(ctx.Sub(gh, meanG), ctx.Mul(xhat, meanGx));
        return ctx.Mul(inner, rstd);
    }
}
