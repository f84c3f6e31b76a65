using Spm.Diffusion.Onnx.Proto;

namespace Spm.Training.Autodiff.Rules;

/// <summary>Reshape, Flatten, Squeeze, Unsqueeze: the gradient is reshaped to the input's run-time shape.</summary>
internal sealed class ReshapeRule : IGradientRule
{
    public string?[] Backward(GradientContext ctx, NodeProto node, string?[] g, bool[] need)
    {
        var r = new string?[node.Input.Count];
        r[0] = ctx.ReshapeLike(g[0]!, node.Input[0]);
        return r;
    }
}
