namespace Spm.Shapes.World;

/// <summary>One attribute as the evaluator sees it: the most likely value and how sure it is (0..1).</summary>
/// <typeparam name="T">The attribute's enum.</typeparam>
/// <param name="Value">The most likely value.</param>
/// <param name="Confidence">A probability-like score in [0, 1]; 0 when no object was found.</param>
public readonly record struct AttributeGuess<T>(T Value, float Confidence) where T : struct, Enum;

/// <summary>The measurements the evaluator decides from (for diagnostics and tuning).</summary>
/// <param name="Harmonic3">Relative strength of the 3- and 6-fold harmonics of the outline's radius profile (triangle).</param>
/// <param name="Harmonic4">Same for 4 and 8 (square).</param>
/// <param name="Harmonic5">Same for 5 and 10 (star).</param>
/// <param name="HueDegrees">Mean hue of the object in degrees (opponent-colour angle, red 0).</param>
/// <param name="Chroma">Mean chroma vector length of the object.</param>
/// <param name="PatternContrast">Colour standard deviation inside the object beyond the background's noise.</param>
/// <param name="PatternCoherence">Coherence of the inside's structure tensor: near 1 for stripes, near 0 for dots.</param>
/// <param name="ForegroundFraction">Share of the image covered by the object.</param>
public sealed record ShapeFeatures(
    float Harmonic3,
    float Harmonic4,
    float Harmonic5,
    float HueDegrees,
    float Chroma,
    float PatternContrast,
    float PatternCoherence,
    float ForegroundFraction);

/// <summary>What the evaluator reads from one picture.</summary>
/// <param name="FoundObject">False when nothing stands out from the background (all confidences are then 0 except the background's).</param>
/// <param name="Shape">The shape.</param>
/// <param name="Color">The fill colour.</param>
/// <param name="Pattern">The fill pattern.</param>
/// <param name="Background">The background.</param>
/// <param name="Features">The raw measurements.</param>
public sealed record ShapeJudgement(
    bool FoundObject,
    AttributeGuess<ShapeKind> Shape,
    AttributeGuess<ShapeColor> Color,
    AttributeGuess<FillPattern> Pattern,
    AttributeGuess<ShapeBackground> Background,
    ShapeFeatures Features)
{
    /// <summary>True when an object was found and every attribute named by <paramref name="prompt"/> was read as named.</summary>
    public bool Matches(ShapePrompt prompt)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        return FoundObject
            && (prompt.Shape is null || prompt.Shape == Shape.Value)
            && (prompt.Color is null || prompt.Color == Color.Value)
            && (prompt.Pattern is null || prompt.Pattern == Pattern.Value)
            && (prompt.Background is null || prompt.Background == Background.Value);
    }
}
