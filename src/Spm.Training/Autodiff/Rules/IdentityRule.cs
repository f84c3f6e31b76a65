using Spm.Diffusion.Onnx.Proto;

namespace Spm.Training.Autodiff.Rules;

/// <summary>Identity (and Dropout in inference form): the gradient passes through unchanged.</summary>
internal sealed class IdentityRule : IGradientRule
{
    public string?[] Backward(GradientContext ctx, NodeProto node, string?[] g, bool[] need)
    {
        var r = new string?[node.Input.Count];
        r[0] = g[0];
        return r;
    }
}
