using Spm.Diffusion.Onnx.Proto;

namespace Spm.Training.Autodiff.Rules;

/// <summary>Cast between float types: the gradient is cast back to the input's type (or passes through when equal).</summary>
internal sealed class CastRule : IGradientRule
{
    public string?[] Backward(GradientContext ctx, NodeProto node, string?[] g, bool[] need)
    {
        int from = ctx.ElemType(node.Input[0]);
        if (from == ctx.ElemType(node.Output[0])) return [g[0]];
        return [ctx.Op("Cast", "cast", [g[0]!], OnnxAttributes.Int("to", from))];
    }
}
