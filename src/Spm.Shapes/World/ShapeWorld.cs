using Spm.Core.Randomness;

namespace Spm.Shapes.World;

/// <summary>
/// How random scenes and captions are drawn.
/// </summary>
/// <param name="ImageSize">Side of the square image in pixels.</param>
/// <param name="MinSize">Smallest circumradius in pixels.</param>
/// <param name="MaxSize">Largest circumradius in pixels.</param>
/// <param name="Margin">Least gap in pixels between the shape's circumcircle and the image border.</param>
/// <param name="PatternMentionProbability">How often a caption names the pattern (otherwise the caption leaves it open).</param>
/// <param name="BackgroundMentionProbability">How often a caption names the background.</param>
/// <param name="ColorMentionProbability">How often a caption names the colour.</param>
/// <param name="NounTemplateProbability">How often a patterned shape is captioned "with stripes/dots" instead of "striped/dotted".</param>
public sealed record ShapeWorldOptions(
    int ImageSize = 64,
    float MinSize = 15f,
    float MaxSize = 25f,
    float Margin = 2f,
    double PatternMentionProbability = 0.8,
    double BackgroundMentionProbability = 0.5,
    double ColorMentionProbability = 0.95,
    double NounTemplateProbability = 0.2)
{
    /// <summary>
    /// How captions are worded: <see cref="CaptionStyle.Basic"/> (one word per value, the shipped models v1-v3) or
    /// <see cref="CaptionStyle.Varied"/> (synonyms, templates, plurals and capitals of <see cref="ShapeLexicon"/>, never a
    /// held-out template or word combination; model v4).
    /// </summary>
    public CaptionStyle Captions { get; init; } = CaptionStyle.Basic;

    /// <summary>
    /// Relative frequencies of plain, striped and dotted scenes, or null for uniform. Leaning toward stripes gives the
    /// weakest attribute more of the UNet's steps.
    /// </summary>
    public IReadOnlyList<double>? PatternWeights { get; init; }

    /// <summary>How shapes are drawn (<see cref="ShapeStyle.Flat"/>: the built-in model's world).</summary>
    public ShapeStyle Style { get; init; } = ShapeStyle.Flat;

    /// <summary>
    /// Stripe period in pixels (<see cref="ShapeRasterizer.StripePeriod"/>, 8, in models v1-v3). At 8 px and the VAE's
    /// factor of 4 one period is two latent cells, the 16x16 latent's Nyquist limit, so the UNet has to place stripes at
    /// the grid's highest frequency; a wider period puts them where the latent can hold them.
    /// </summary>
    public float StripePeriod { get; init; } = ShapeRasterizer.StripePeriod;

    /// <summary>
    /// Null (models v1-v3): stripes turn with the shape, so a circle's stripes lie at any angle. A value fixes them in
    /// image space at that angle in radians (0: horizontal bands), whatever the shape's rotation: a denoiser then never
    /// has to choose an orientation, which averaged over angles reads as a texture (striped drawn as dotted).
    /// </summary>
    public float? StripeAngle { get; init; }

    /// <summary>
    /// Distance between dot centres in pixels (<see cref="ShapeRasterizer.DotSpacing"/>, 7, in models v1-v4). At 7 px a
    /// period is shorter than two latent cells, above the 16x16 latent's Nyquist limit; the dots' radius scales with the
    /// spacing, so the share of the shape they cover stays the same.
    /// </summary>
    public float DotSpacing { get; init; } = ShapeRasterizer.DotSpacing;

    /// <summary>
    /// Null (models v1-v4): the dot lattice turns with the shape and is centred on it. A value fixes the lattice in image
    /// space at that angle in radians, anchored at the image's origin, whatever the shape's rotation and position (as
    /// <see cref="StripeAngle"/> does for stripes).
    /// </summary>
    public float? DotAngle { get; init; }

    /// <summary>The default world: 64x64 images, radii 15–25 px.</summary>
    public static ShapeWorldOptions Default { get; } = new();

    /// <summary>Throws <see cref="ArgumentException"/> when the sizes cannot fit in the image.</summary>
    public void Validate()
    {
        if (ImageSize < 16 || ImageSize > 4096) throw new ArgumentException($"Image size {ImageSize} is outside 16..4096.");
        if (!(MinSize > 0) || MaxSize < MinSize) throw new ArgumentException("Shape sizes must satisfy 0 < MinSize <= MaxSize.");
        if (2 * (MaxSize + Margin) > ImageSize) throw new ArgumentException($"Shapes of radius {MaxSize} do not fit in {ImageSize} px.");
        if (PatternWeights is { } w && (w.Count != ShapeVocabulary.Patterns.Count || w.Any(x => !(x >= 0) || double.IsInfinity(x)) || !(w.Sum() > 0)))
            throw new ArgumentException($"Pattern weights need {ShapeVocabulary.Patterns.Count} non-negative values (plain, striped, dotted) with a positive sum.");
        if (StripeAngle is { } angle && !float.IsFinite(angle)) throw new ArgumentException($"Stripe angle {angle} is not a finite number of radians.");
        if (DotAngle is { } dotAngle && !float.IsFinite(dotAngle)) throw new ArgumentException($"Dot angle {dotAngle} is not a finite number of radians.");
        if (!(DotSpacing >= 4f && DotSpacing <= ImageSize / 4f))
            throw new ArgumentException($"Dot spacing {DotSpacing} px is outside 4..{ImageSize / 4}.");
        if (!(StripePeriod >= 4f && StripePeriod <= ImageSize / 2f))
            throw new ArgumentException($"Stripe period {StripePeriod} px is outside 4..{ImageSize / 2} (at least two stripes must fit in the image).");
    }
}

/// <summary>How <see cref="ShapeWorld.Sample"/> words captions.</summary>
public enum CaptionStyle
{
    /// <summary>One word per value: "a striped red circle on a white background", 20 % of patterned shapes "with stripes".</summary>
    Basic,

    /// <summary>Synonyms, several templates, plurals and capitals (<see cref="ShapeLexicon.TrainingCaption"/>).</summary>
    Varied,
}

/// <summary>A random scene with its caption.</summary>
/// <param name="Scene">The picture's content.</param>
/// <param name="Prompt">The attributes the caption names.</param>
/// <param name="Caption">The caption text.</param>
public sealed record ShapeSample(ShapeScene Scene, ShapePrompt Prompt, string Caption);

/// <summary>
/// The tiny-shapes world: draws scenes and captions from a <see cref="SeededRandom"/>, so a seed fixes the data.
/// </summary>
public sealed class ShapeWorld
{
    /// <summary>Creates a world with <paramref name="options"/> (default: <see cref="ShapeWorldOptions.Default"/>).</summary>
    public ShapeWorld(ShapeWorldOptions? options = null)
    {
        Options = options ?? ShapeWorldOptions.Default;
        Options.Validate();
    }

    /// <summary>The sampling options.</summary>
    public ShapeWorldOptions Options { get; }

    /// <summary>A uniformly random scene (every attribute uniform, size and position uniform within bounds, any rotation).</summary>
    public ShapeScene RandomScene(SeededRandom rng)
    {
        ArgumentNullException.ThrowIfNull(rng);
        var shape = ShapeVocabulary.Shapes[rng.NextInt(0, ShapeVocabulary.Shapes.Count)];
        var color = ShapeVocabulary.Colors[rng.NextInt(0, ShapeVocabulary.Colors.Count)];
        var pattern = Options.PatternWeights is { } weights ? Weighted(weights, rng) : ShapeVocabulary.Patterns[rng.NextInt(0, ShapeVocabulary.Patterns.Count)];
        var background = ShapeVocabulary.Backgrounds[rng.NextInt(0, ShapeVocabulary.Backgrounds.Count)];
        return Place(new ShapePrompt(shape, color, pattern, background), rng);
    }

    /// <summary>
    /// A random scene satisfying <paramref name="prompt"/>: named attributes as given, open ones uniform,
    /// geometry uniform within bounds.
    /// </summary>
    public ShapeScene RandomScene(ShapePrompt prompt, SeededRandom rng)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(rng);
        var filled = new ShapePrompt(
            prompt.Shape ?? ShapeVocabulary.Shapes[rng.NextInt(0, ShapeVocabulary.Shapes.Count)],
            prompt.Color ?? ShapeVocabulary.Colors[rng.NextInt(0, ShapeVocabulary.Colors.Count)],
            prompt.Pattern ?? ShapeVocabulary.Patterns[rng.NextInt(0, ShapeVocabulary.Patterns.Count)],
            prompt.Background ?? ShapeVocabulary.Backgrounds[rng.NextInt(0, ShapeVocabulary.Backgrounds.Count)]);
        return Place(filled, rng);
    }

    /// <summary>A random scene and a caption naming the shape always and the other attributes at the configured rates.</summary>
    public ShapeSample Sample(SeededRandom rng)
    {
        var scene = RandomScene(rng);
        var o = Options;
        var prompt = new ShapePrompt(
            scene.Shape,
            rng.NextDouble() < o.ColorMentionProbability ? scene.Color : null,
            rng.NextDouble() < o.PatternMentionProbability ? scene.Pattern : null,
            rng.NextDouble() < o.BackgroundMentionProbability ? scene.Background : null);
        if (o.Captions == CaptionStyle.Varied) return new ShapeSample(scene, prompt, ShapeLexicon.TrainingCaption(prompt, rng));
        var template = rng.NextDouble() < o.NounTemplateProbability ? CaptionTemplate.WithNoun : CaptionTemplate.Adjectives;
        return new ShapeSample(scene, prompt, prompt.ToText(template));
    }

    private static FillPattern Weighted(IReadOnlyList<double> weights, SeededRandom rng)
    {
        double u = rng.NextDouble() * weights.Sum();
        for (int i = 0; i < weights.Count; i++)
            if ((u -= weights[i]) < 0) return ShapeVocabulary.Patterns[i];
        return ShapeVocabulary.Patterns[^1];
    }

    private ShapeScene Place(ShapePrompt full, SeededRandom rng)
    {
        var o = Options;
        float size = (float)(o.MinSize + (o.MaxSize - o.MinSize) * rng.NextDouble());
        float lo = size + o.Margin, hi = o.ImageSize - size - o.Margin;
        float cx = (float)(lo + (hi - lo) * rng.NextDouble());
        float cy = (float)(lo + (hi - lo) * rng.NextDouble());
        float rotation = (float)(2 * Math.PI * rng.NextDouble());
        return new ShapeScene(full.Shape!.Value, full.Color!.Value, full.Pattern!.Value, full.Background!.Value, cx, cy, size, rotation);
    }
}
