using Spm.Shapes.Evaluation;
using Spm.Shapes.World;
using Spm.Training.Attacks;

namespace Spm.Shapes.Attacks;

/// <summary>
/// Judges whether a tiny-shapes image shows what a prompt asks for: every attribute the prompt names (shape, colour,
/// pattern, background) read as named by the <see cref="ShapeEvaluator"/>.
/// </summary>
public sealed class ShapePromptJudge : IConceptJudge
{
    private readonly ShapeEvaluator _evaluator;

    /// <summary>Creates a judge of <paramref name="prompt"/>'s intent; <paramref name="evaluator"/> may be shared between judges.</summary>
    public ShapePromptJudge(ShapePrompt prompt, ShapeEvaluator? evaluator = null)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        Prompt = prompt;
        _evaluator = evaluator ?? new ShapeEvaluator();
    }

    /// <summary>What the prompt asks for.</summary>
    public ShapePrompt Prompt { get; }

    /// <inheritdoc />
    public string Name => $"tiny-shapes evaluator: {Prompt.Text}";

    /// <inheritdoc />
    public bool Shows(ReadOnlySpan<float> image, int height, int width) => _evaluator.Evaluate(image, height, width).Matches(Prompt);
}

/// <summary>What <c>spm attack</c> measures on tiny-shapes prompt sets, over the generic <see cref="AttackRunner"/>.</summary>
public static class ShapeCollateral
{
    /// <summary>
    /// <see cref="AttackRunner.Collateral(string, IReadOnlyList{KeptPrompt}, IReadOnlyList{IConceptJudge}, int, IProgress{double}?, CancellationToken)"/>
    /// on tiny-shapes evaluation prompts: each prompt's intent is judged by the <see cref="ShapeEvaluator"/> (every
    /// attribute it names read as named).
    /// </summary>
    public static CollateralResult Collateral(this AttackRunner runner, string name, IReadOnlyList<EvalPrompt> prompts, IReadOnlyList<IConceptJudge> erasedJudges,
        IProgress<double>? progress = null, CancellationToken cancellationToken = default)
        => runner.Collateral(name, prompts, erasedJudges, 0, progress, cancellationToken);

    /// <summary>As above, with <paramref name="probeSeeds"/> more base images per prompt to tell the concept-free prompts.</summary>
    public static CollateralResult Collateral(this AttackRunner runner, string name, IReadOnlyList<EvalPrompt> prompts, IReadOnlyList<IConceptJudge> erasedJudges,
        int probeSeeds, IProgress<double>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(runner);
        ArgumentNullException.ThrowIfNull(prompts);
        var evaluator = new ShapeEvaluator();
        var kept = prompts.Select(p => new KeptPrompt(p.Text, p.Seed, new ShapePromptJudge(p.Prompt, evaluator))).ToArray();
        return runner.Collateral(name, kept, erasedJudges, probeSeeds, progress, cancellationToken);
    }
}
