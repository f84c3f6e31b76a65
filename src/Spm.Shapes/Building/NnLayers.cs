namespace Spm.Shapes.Building;

/// <summary>
/// PyTorch-style layers emitted the way PyTorch's ONNX exporter (opset 14) writes them, each inside its own
/// module scope: Linear as MatMul (+ Add of the bias, bias first) or Gemm, Conv2d, GroupNorm as
/// Reshape → InstanceNormalization → Reshape → Mul/Add, LayerNorm decomposed (ReduceMean/Sub/Pow/Sqrt/Div),
/// SiLU as x·Sigmoid(x), and multi-head attention. Initialisation follows PyTorch's defaults.
/// </summary>
public static class NnLayers
{
    /// <summary>PyTorch's default bound for Linear/Conv weights and biases: 1/sqrt(fan_in).</summary>
    public static float DefaultBound(long fanIn) => (float)(1.0 / Math.Sqrt(fanIn));

    /// <summary>
    /// A Linear layer on the last axis of <paramref name="x"/> as MatMul with a transposed [in, out] weight, plus
    /// <c>Add(bias, ·)</c> when <paramref name="bias"/>. Node names <c>&lt;scope&gt;/&lt;module&gt;/MatMul</c> and <c>/Add</c>.
    /// </summary>
    public static string Linear(this GraphBuilder g, string module, string x, long inFeatures, long outFeatures, bool bias = true)
    {
        using var _ = g.Scope(module);
        var bound = TensorInit.Uniform(DefaultBound(inFeatures));
        var w = g.MatMulWeight(inFeatures, outFeatures, bound);
        var y = g.Node("MatMul", [x, w]);
        if (!bias) return y;
        var b = g.Parameter("bias", [outFeatures], bound);
        return g.Node("Add", [b, y]);
    }

    /// <summary>A Linear layer on a 2-D input as Gemm with the PyTorch [out, in] weight and transB=1 (how the exporter writes 2-D linears).</summary>
    public static string Gemm(this GraphBuilder g, string module, string x, long inFeatures, long outFeatures)
    {
        using var _ = g.Scope(module);
        var bound = TensorInit.Uniform(DefaultBound(inFeatures));
        var w = g.Parameter("weight", [outFeatures, inFeatures], bound);
        var b = g.Parameter("bias", [outFeatures], bound);
        return g.Node("Gemm", [x, w, b], Attr.Float("alpha", 1f), Attr.Float("beta", 1f), Attr.Int("transB", 1));
    }

    /// <summary>A Conv2d with bias (weights [out, in, k, k]); <paramref name="outputName"/> names its output (graph outputs).</summary>
    public static string Conv(this GraphBuilder g, string module, string x, long inChannels, long outChannels, int kernel, int stride = 1, int padding = -1, string? outputName = null)
    {
        if (padding < 0) padding = kernel / 2;
        using var _ = g.Scope(module);
        var bound = TensorInit.Uniform(DefaultBound(inChannels * kernel * kernel));
        var w = g.Parameter("weight", [outChannels, inChannels, kernel, kernel], bound);
        var b = g.Parameter("bias", [outChannels], bound);
        return g.NodeNamed("Conv", [x, w, b], outputName,
            Attr.Ints("dilations", 1, 1), Attr.Int("group", 1), Attr.Ints("kernel_shape", kernel, kernel),
            Attr.Ints("pads", padding, padding, padding, padding), Attr.Ints("strides", stride, stride));
    }

    /// <summary>
    /// GroupNorm over [B, C, ...] as the opset-14 exporter writes it. The affine parameters are stored
    /// [C, 1, 1] under <c>&lt;module&gt;.weight</c>/<c>.bias</c> (the exporter calls them <c>onnx::Mul_N</c>/<c>onnx::Add_N</c>).
    /// </summary>
    public static string GroupNorm(this GraphBuilder g, string module, string x, long channels, int groups, float eps)
    {
        if (groups <= 0 || channels % groups != 0) throw new ArgumentException($"GroupNorm '{module}': {channels} channels are not divisible into {groups} groups.");
        using var _ = g.Scope(module);
        var grouped = g.Node("Reshape", [x, g.ConstInt64([0, groups, -1])], Attr.Int("allowzero", 0));
        var ones = g.ConstFloat(Enumerable.Repeat(1f, groups).ToArray(), groups);
        var zeros = g.ConstFloat(new float[groups], groups);
        var normed = g.Node("InstanceNormalization", [grouped, ones, zeros], Attr.Float("epsilon", eps));
        var shape = g.Node("Shape", [x]);
        var back = g.Node("Reshape", [normed, shape], Attr.Int("allowzero", 0));
        var w = g.Parameter("weight", [channels, 1, 1], TensorInit.Ones);
        var b = g.Parameter("bias", [channels, 1, 1], TensorInit.Zeros);
        return g.Node("Add", [g.Node("Mul", [back, w]), b]);
    }

    /// <summary>LayerNorm over the last axis, decomposed as the opset-14 exporter writes it; <paramref name="outputName"/> names its output.</summary>
    public static string LayerNorm(this GraphBuilder g, string module, string x, long features, float eps, string? outputName = null)
    {
        using var _ = g.Scope(module);
        var mean = g.Node("ReduceMean", [x], Attr.Ints("axes", -1));
        var centered = g.Node("Sub", [x, mean]);
        var sq = g.Node("Pow", [centered, g.ConstScalar(2f)]);
        var variance = g.Node("ReduceMean", [sq], Attr.Ints("axes", -1));
        var std = g.Node("Sqrt", [g.Node("Add", [variance, g.ConstScalar(eps)])]);
        var normed = g.Node("Div", [centered, std]);
        var w = g.Parameter("weight", [features], TensorInit.Ones);
        var b = g.Parameter("bias", [features], TensorInit.Zeros);
        return g.NodeNamed("Add", [g.Node("Mul", [normed, w]), b], outputName);
    }

    /// <summary>SiLU as x·Sigmoid(x) in its own scope (e.g. <c>nonlinearity</c>, <c>act</c>).</summary>
    public static string Silu(this GraphBuilder g, string module, string x)
    {
        using var _ = g.Scope(module);
        return g.Node("Mul", [x, g.Node("Sigmoid", [x])]);
    }

    /// <summary>Splits [B, N, heads·dh] into [B, heads, N, dh] (or [B, heads, dh, N] when <paramref name="keyLayout"/>).</summary>
    public static string SplitHeads(this GraphBuilder g, string x, int heads, long headDim, bool keyLayout = false)
    {
        var r = g.Node("Reshape", [x, g.ConstInt64([0, -1, heads, headDim])], Attr.Int("allowzero", 0));
        return g.Node("Transpose", [r], Attr.Ints("perm", keyLayout ? [0, 2, 3, 1] : [0, 2, 1, 3]));
    }

    /// <summary>Merges [B, heads, N, dh] back into [B, N, heads·dh].</summary>
    public static string MergeHeads(this GraphBuilder g, string x, long width)
    {
        var t = g.Node("Transpose", [x], Attr.Ints("perm", 0, 2, 1, 3));
        return g.Node("Reshape", [t, g.ConstInt64([0, -1, width])], Attr.Int("allowzero", 0));
    }

    /// <summary>
    /// Scaled dot-product attention over split heads: softmax(q·kᵀ·scale + mask)·v, with q [B,h,N,dh],
    /// kT [B,h,dh,M], v [B,h,M,dh]; <paramref name="mask"/> (optional) is added before the softmax.
    /// </summary>
    public static string Attend(this GraphBuilder g, string q, string kT, string v, float scale, string? mask = null, bool scaleQueryFirst = false)
    {
        string scores;
        if (scaleQueryFirst)
            scores = g.Node("MatMul", [g.Node("Mul", [q, g.ConstScalar(scale)]), kT]);
        else
            scores = g.Node("Mul", [g.Node("MatMul", [q, kT]), g.ConstScalar(scale)]);
        if (mask is not null) scores = g.Node("Add", [scores, mask]);
        var p = g.Node("Softmax", [scores], Attr.Int("axis", -1));
        return g.Node("MatMul", [p, v]);
    }
}
