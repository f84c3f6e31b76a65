using Spm.Diffusion.Onnx.Proto;

namespace Spm.Training.Autodiff.Rules;

/// <summary>y = softmax(x, axis) (opset 13+, one axis): dx = y * (g - sum(g * y, axis)), the fused form.</summary>
internal sealed class SoftmaxRule : IGradientRule
{
    public string?[] Backward(GradientContext ctx, NodeProto node, string?[] g, bool[] need)
    {
        if (ctx.Opset < 13) throw ctx.Unsupported(node, "Softmax before opset 13 flattens axes; only opset 13+ is supported");
        var y = node.Output[0];
        long axis = GradientContext.Axis(OnnxAttributes.GetInt(node, "axis", -1), ctx.Rank(y));
        var gy = ctx.Mul(g[0]!, y);
        var s = ctx.ReduceSum(gy, [axis], keepDims: true);
        // y*(g - s) = g*y - y*s reuses g*y and avoids a second full-size temporary for (g - s).
        return [ctx.Sub(gy, ctx.Mul(y, s))];
    }
}
