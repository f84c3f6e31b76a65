using Spm.Diffusion.Onnx.Proto;

namespace Spm.Training.Autodiff.Rules;

/// <summary>y_1..y_n = split(x, axis): dx = concat of the output gradients, zeros standing in for unused outputs.</summary>
internal sealed class SplitRule : IGradientRule
{
    public string?[] Backward(GradientContext ctx, NodeProto node, string?[] g, bool[] need)
    {
        int rank = ctx.Rank(node.Input[0]);
        long axis = GradientContext.Axis(OnnxAttributes.GetInt(node, "axis", 0), rank);
        var parts = new string[node.Output.Count];
        for (int i = 0; i < parts.Length; i++) parts[i] = g[i] ?? ctx.ZerosLike(node.Output[i]);
        var r = new string?[node.Input.Count];
        r[0] = ctx.Op("Concat", "concat", parts, OnnxAttributes.Int("axis", axis));
        return r;
    }
}
