using Spm.Core;
using Spm.Shapes.Evaluation;

namespace Spm.Shapes.World;

/// <summary>
/// Erasure pairs of the tiny-shapes world (<c>spm train --pairs</c>): every caption that names the concept, once for each
/// combination of the other attributes (each value or left open), with the same caption naming the surrogate in its place
/// ("a striped red circle on a white background => a plain red circle on a white background"). Patterns also get the
/// noun wording ("a red circle with stripes"), since the model reads both.
/// </summary>
public static class ShapePairs
{
    /// <summary>The bare concept against the bare surrogate first, then the concept in every context.</summary>
    /// <exception cref="SpmException">The surrogate is not another value of the concept's attribute.</exception>
    public static IReadOnlyList<(string Target, string Surrogate)> For(EvalConcept concept, EvalConcept surrogate)
    {
        CheckSurrogate(concept, surrogate);
        var pairs = new List<(string, string)> { (concept.Name, surrogate.Name) };
        foreach (var shape in Open(ShapeVocabulary.Shapes))
            foreach (var color in Open(ShapeVocabulary.Colors))
                foreach (var pattern in Open(ShapeVocabulary.Patterns))
                    foreach (var background in Open(ShapeVocabulary.Backgrounds))
                    {
                        var context = new ShapePrompt(shape, color, pattern, background);
                        // Each context once: the concept's own slot is overwritten, so only its open variant is kept.
                        if (Slot(context, concept.Attribute) is not null) continue;
                        var target = With(context, concept);
                        var sur = With(context, surrogate).Text;
                        pairs.Add((target.Text, sur));
                        if (concept.Attribute == ConceptAttribute.Pattern && target.Pattern is FillPattern.Striped or FillPattern.Dotted)
                            pairs.Add((target.ToText(CaptionTemplate.WithNoun), sur));
                    }
        return pairs;
    }

    /// <summary>
    /// The caption with the concept swapped for the surrogate ("a striped red circle" -> "a plain red circle"), in the
    /// adjective wording; null when the caption does not name the concept (or names two values of its attribute).
    /// </summary>
    /// <exception cref="SpmException">The surrogate is not another value of the concept's attribute.</exception>
    public static string? Swap(string caption, EvalConcept concept, EvalConcept surrogate)
    {
        ArgumentNullException.ThrowIfNull(caption);
        CheckSurrogate(concept, surrogate);
        if (ShapePrompt.Parse(caption) is not { } parsed || Slot(parsed, concept.Attribute) != concept.Value) return null;
        return With(parsed, surrogate).Text;
    }

    private static void CheckSurrogate(EvalConcept concept, EvalConcept surrogate)
    {
        ArgumentNullException.ThrowIfNull(concept);
        ArgumentNullException.ThrowIfNull(surrogate);
        if (surrogate.Attribute != concept.Attribute || surrogate.Value == concept.Value)
            throw new SpmException($"The surrogate '{surrogate.Name}' must be another {concept.Attribute.ToString().ToLowerInvariant()} than '{concept.Name}': a pair swaps one value for another.");
    }

    private static IEnumerable<T?> Open<T>(IEnumerable<T> values) where T : struct => [null, .. values.Select(v => (T?)v)];

    private static int? Slot(ShapePrompt p, ConceptAttribute a) => a switch
    {
        ConceptAttribute.Shape => (int?)p.Shape,
        ConceptAttribute.Color => (int?)p.Color,
        ConceptAttribute.Pattern => (int?)p.Pattern,
        _ => (int?)p.Background,
    };

    private static ShapePrompt With(ShapePrompt p, EvalConcept c) => c.Attribute switch
    {
        ConceptAttribute.Shape => p with { Shape = (ShapeKind)c.Value },
        ConceptAttribute.Color => p with { Color = (ShapeColor)c.Value },
        ConceptAttribute.Pattern => p with { Pattern = (FillPattern)c.Value },
        _ => p with { Background = (ShapeBackground)c.Value },
    };
}
