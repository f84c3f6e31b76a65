using Spm.Shapes.World;
using Spm.Training.Evaluation;

namespace Spm.Shapes.Evaluation;

/// <summary>The image load of <c>spm eval</c>, for benchmarks and projections (<c>spm bench eval</c>).</summary>
public static class EvalWorkload
{
    /// <summary>
    /// Eval-like requests: <paramref name="count"/> prompts asking for a circle, distinct seeds, multipliers of
    /// <paramref name="spms"/> SPMs cycling through base / the first SPM / all SPMs / all at half strength.
    /// </summary>
    public static IReadOnlyList<EvalImageRequest> Requests(int count, int spms)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(spms);
        var prompts = EvalPromptSets.Target(EvalConcept.Of(ShapeKind.Circle), count, 12345);
        return prompts.Select((p, i) =>
        {
            var m = new float[spms];
            if (spms > 0)
                switch (i % 4)
                {
                    case 1: m[0] = 1f; break;
                    case 2: Array.Fill(m, 1f); break;
                    case 3: Array.Fill(m, 0.5f); break;
                }
            return new EvalImageRequest(p.Text, p.Seed, m);
        }).ToArray();
    }

    /// <summary>
    /// Distinct images of a standard evaluation with 3 SPMs and 3 no-anchoring SPMs at <paramref name="imagesPerSet"/>
    /// (base images shared between cases counted once; variant multipliers assumed distinct).
    /// </summary>
    public static int StandardRunImages(int imagesPerSet)
    {
        var concepts = new[] { EvalConcept.Of(ShapeKind.Circle), EvalConcept.Of(ShapeColor.Red), EvalConcept.Of(FillPattern.Striped) };
        var cases = SpmErasureEvaluator.StandardCases(concepts, concepts);
        var options = new EvalOptions(imagesPerSet);
        var prompts = cases.Select(c => ErasureEvaluation.PromptsOf(new EvalCase(c.Name, c.Concepts, []), options)).ToArray();
        int distinctBase = prompts.SelectMany(p => p).Select(p => (p.Text, p.Seed)).Distinct().Count();
        return distinctBase + cases.Select((c, i) => c.Variants.Count * prompts[i].Count).Sum();
    }
}
