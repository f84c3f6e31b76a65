using Spm.Shapes.Evaluation;
using Spm.Shapes.World;
using Spm.Training.Attacks;

namespace Spm.Shapes.Attacks;

/// <summary>The tiny-shapes evaluator as a judge of one concept (shape, colour, pattern or background value).</summary>
public sealed class ShapeConceptJudge : IConceptJudge
{
    private readonly ShapeEvaluator _evaluator;

    /// <summary>Creates a judge of <paramref name="concept"/>.</summary>
    public ShapeConceptJudge(EvalConcept concept, ShapeEvaluator? evaluator = null)
    {
        ArgumentNullException.ThrowIfNull(concept);
        Concept = concept;
        _evaluator = evaluator ?? new ShapeEvaluator();
    }

    /// <summary>The judged concept.</summary>
    public EvalConcept Concept { get; }

    /// <inheritdoc />
    public string Name => $"tiny-shapes evaluator: {Concept.Name}";

    /// <inheritdoc />
    public bool Shows(ReadOnlySpan<float> image, int height, int width) => Concept.IsDetectedIn(_evaluator.Evaluate(image, height, width));
}
