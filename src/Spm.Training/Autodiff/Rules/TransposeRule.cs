using Spm.Diffusion.Onnx.Proto;

namespace Spm.Training.Autodiff.Rules;

/// <summary>y = transpose(x, perm): dx = transpose(g, inverse(perm)); the default perm reverses the axes.</summary>
internal sealed class TransposeRule : IGradientRule
{
    public string?[] Backward(GradientContext ctx, NodeProto node, string?[] g, bool[] need)
    {
        int rank = ctx.Rank(node.Input[0]);
        var perm = OnnxAttributes.GetInts(node, "perm") ?? Enumerable.Range(0, rank).Reverse().Select(i => (long)i).ToArray();
        var inverse = new long[perm.Length];
        for (int i = 0; i < perm.Length; i++) inverse[perm[i]] = i;
        return [ctx.Transpose(g[0]!, inverse)];
    }
}
