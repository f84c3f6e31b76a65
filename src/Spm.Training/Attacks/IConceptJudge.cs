using Spm.Training.Evaluation;
using Spm.Training.Shapes;

namespace Spm.Training.Attacks;

/// <summary>
/// Decides whether an image shows a concept: the judge of attack success and the labeller of the data a learned gate is
/// fitted on. The tiny-shapes world has an exact one (<see cref="ShapeConceptJudge"/>); for a real model, plug in a
/// classifier (<see cref="OnnxConceptJudge"/>: an ONNX image classifier you supply, e.g. a nudity or object detector).
/// </summary>
public interface IConceptJudge
{
    /// <summary>A short name for reports ("tiny-shapes: circle", "onnx: nsfw.onnx[1] > 0.5").</summary>
    string Name { get; }

    /// <summary>Whether the image shows the concept.</summary>
    /// <param name="image">Planar RGB [3, height, width], values in [0, 1].</param>
    /// <param name="height">Image height.</param>
    /// <param name="width">Image width.</param>
    bool Shows(ReadOnlySpan<float> image, int height, int width);
}

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
