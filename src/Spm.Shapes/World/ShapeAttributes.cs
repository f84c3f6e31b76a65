namespace Spm.Shapes.World;

/// <summary>The shapes of the tiny-shapes world.</summary>
public enum ShapeKind
{
    /// <summary>A disc.</summary>
    Circle,

    /// <summary>A square (rotated freely).</summary>
    Square,

    /// <summary>An equilateral triangle.</summary>
    Triangle,

    /// <summary>A five-pointed star.</summary>
    Star,
}

/// <summary>The fill colours of the tiny-shapes world.</summary>
public enum ShapeColor
{
    /// <summary>Red.</summary>
    Red,

    /// <summary>Green.</summary>
    Green,

    /// <summary>Blue.</summary>
    Blue,

    /// <summary>Yellow.</summary>
    Yellow,

    /// <summary>Purple.</summary>
    Purple,

    /// <summary>Orange.</summary>
    Orange,
}

/// <summary>How the inside of a shape is filled.</summary>
public enum FillPattern
{
    /// <summary>One flat colour.</summary>
    Plain,

    /// <summary>Parallel bands of the colour and a shade of it, turning with the shape.</summary>
    Striped,

    /// <summary>A grid of round dots in a shade of the colour, turning with the shape.</summary>
    Dotted,
}

/// <summary>The flat backgrounds of the tiny-shapes world.</summary>
public enum ShapeBackground
{
    /// <summary>White.</summary>
    White,

    /// <summary>Black.</summary>
    Black,

    /// <summary>Mid gray.</summary>
    Gray,

    /// <summary>A pale sky blue.</summary>
    LightBlue,
}

/// <summary>An RGB colour with components in [0, 1].</summary>
/// <param name="R">Red.</param>
/// <param name="G">Green.</param>
/// <param name="B">Blue.</param>
public readonly record struct Rgb(float R, float G, float B)
{
    /// <summary>Linear mix: this colour at weight 1 - <paramref name="t"/>, <paramref name="other"/> at <paramref name="t"/>.</summary>
    public Rgb Lerp(Rgb other, float t) => new(R + (other.R - R) * t, G + (other.G - G) * t, B + (other.B - B) * t);

    /// <summary>Euclidean distance in RGB.</summary>
    public float DistanceTo(Rgb other)
    {
        float dr = R - other.R, dg = G - other.G, db = B - other.B;
        return MathF.Sqrt(dr * dr + dg * dg + db * db);
    }
}

/// <summary>
/// The words and colours of the world, in one place so that renderer, captions and evaluator agree.
/// Colours are chosen to sit at distinct hues (red 0°, orange ~32°, yellow ~53°, green ~124°, blue ~229°,
/// purple ~283°) and far (RGB distance ≥ 0.4) from every background, shades included.
/// </summary>
public static class ShapeVocabulary
{
    /// <summary>Every shape, in enum order.</summary>
    public static IReadOnlyList<ShapeKind> Shapes { get; } = Enum.GetValues<ShapeKind>();

    /// <summary>Every colour, in enum order.</summary>
    public static IReadOnlyList<ShapeColor> Colors { get; } = Enum.GetValues<ShapeColor>();

    /// <summary>Every fill pattern, in enum order.</summary>
    public static IReadOnlyList<FillPattern> Patterns { get; } = Enum.GetValues<FillPattern>();

    /// <summary>Every background, in enum order.</summary>
    public static IReadOnlyList<ShapeBackground> Backgrounds { get; } = Enum.GetValues<ShapeBackground>();

    /// <summary>The caption word for a shape ("circle").</summary>
    public static string Word(ShapeKind shape) => shape switch
    {
        ShapeKind.Circle => "circle",
        ShapeKind.Square => "square",
        ShapeKind.Triangle => "triangle",
        ShapeKind.Star => "star",
        _ => throw new ArgumentOutOfRangeException(nameof(shape)),
    };

    /// <summary>The caption word for a colour ("red").</summary>
    public static string Word(ShapeColor color) => color switch
    {
        ShapeColor.Red => "red",
        ShapeColor.Green => "green",
        ShapeColor.Blue => "blue",
        ShapeColor.Yellow => "yellow",
        ShapeColor.Purple => "purple",
        ShapeColor.Orange => "orange",
        _ => throw new ArgumentOutOfRangeException(nameof(color)),
    };

    /// <summary>The caption word for a pattern ("plain", "striped", "dotted").</summary>
    public static string Word(FillPattern pattern) => pattern switch
    {
        FillPattern.Plain => "plain",
        FillPattern.Striped => "striped",
        FillPattern.Dotted => "dotted",
        _ => throw new ArgumentOutOfRangeException(nameof(pattern)),
    };

    /// <summary>The caption words for a background ("white", "light blue").</summary>
    public static string Word(ShapeBackground background) => background switch
    {
        ShapeBackground.White => "white",
        ShapeBackground.Black => "black",
        ShapeBackground.Gray => "gray",
        ShapeBackground.LightBlue => "light blue",
        _ => throw new ArgumentOutOfRangeException(nameof(background)),
    };

    /// <summary>The rendered RGB of a colour.</summary>
    public static Rgb ToRgb(ShapeColor color) => color switch
    {
        ShapeColor.Red => new(0.90f, 0.10f, 0.10f),
        ShapeColor.Green => new(0.10f, 0.70f, 0.15f),
        ShapeColor.Blue => new(0.10f, 0.25f, 0.90f),
        ShapeColor.Yellow => new(0.95f, 0.85f, 0.10f),
        ShapeColor.Purple => new(0.55f, 0.15f, 0.75f),
        ShapeColor.Orange => new(1.00f, 0.55f, 0.05f),
        _ => throw new ArgumentOutOfRangeException(nameof(color)),
    };

    /// <summary>The rendered RGB of a background.</summary>
    public static Rgb ToRgb(ShapeBackground background) => background switch
    {
        ShapeBackground.White => new(1f, 1f, 1f),
        ShapeBackground.Black => new(0f, 0f, 0f),
        ShapeBackground.Gray => new(0.5f, 0.5f, 0.5f),
        ShapeBackground.LightBlue => new(0.70f, 0.85f, 0.95f),
        _ => throw new ArgumentOutOfRangeException(nameof(background)),
    };

    /// <summary>
    /// The second colour of a pattern: a darker shade of the fill, or on black a lighter tint (a dark shade
    /// would melt into black). Both keep the fill's hue, so colour naming is unaffected by the pattern.
    /// </summary>
    public static Rgb PatternRgb(ShapeColor color, ShapeBackground background)
    {
        var c = ToRgb(color);
        return background == ShapeBackground.Black ? c.Lerp(new Rgb(1f, 1f, 1f), 0.55f) : c.Lerp(new Rgb(0f, 0f, 0f), 0.5f);
    }
}
