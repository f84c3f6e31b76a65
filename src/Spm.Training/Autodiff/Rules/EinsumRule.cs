using Spm.Diffusion.Onnx.Proto;

namespace Spm.Training.Autodiff.Rules;

/// <summary>
/// y = einsum(equation, x_1..x_n): the gradient of x_i is the einsum of g with the other operands that produces
/// x_i's subscripts ("out,others->in_i"). Supported when x_i has no repeated subscript and every one of its
/// subscripts appears in the output or another operand; operands must not broadcast through an ellipsis.
/// </summary>
internal sealed class EinsumRule : IGradientRule
{
    public string?[] Backward(GradientContext ctx, NodeProto node, string?[] g, bool[] need)
    {
        var equation = OnnxAttributes.GetString(node, "equation", "").Replace(" ", "");
        var arrow = equation.IndexOf("->", StringComparison.Ordinal);
        if (arrow < 0) throw ctx.Unsupported(node, "an Einsum equation without an explicit output ('->')");
        var terms = equation[..arrow].Split(',');
        var output = equation[(arrow + 2)..];
        var r = new string?[node.Input.Count];
        for (int i = 0; i < terms.Length; i++)
        {
            if (!need[i]) continue;
            var mine = terms[i].Replace("...", "");
            if (mine.Distinct().Count() != mine.Length) throw ctx.Unsupported(node, $"repeated subscripts in '{terms[i]}'");
            var available = output + string.Concat(terms.Where((_, k) => k != i));
            if (mine.Any(c => !available.Contains(c))) throw ctx.Unsupported(node, $"subscripts of '{terms[i]}' summed away inside that operand only");
            if (terms[i].Contains("...") && ctx.Rank(node.Input[i]) != ctx.Rank(node.Output[0]) - output.Replace("...", "").Length + mine.Length)
                throw ctx.Unsupported(node, "an operand broadcast through '...'");
            var others = Enumerable.Range(0, terms.Length).Where(k => k != i).ToArray();
            var eq = string.Join(",", new[] { output }.Concat(others.Select(k => terms[k]))) + "->" + terms[i];
            r[i] = ctx.Op("Einsum", "dx", [g[0]!, .. others.Select(k => node.Input[k])], OnnxAttributes.String("equation", eq));
        }
        return r;
    }
}
