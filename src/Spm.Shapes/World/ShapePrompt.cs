using System.Text;
using System.Text.RegularExpressions;

namespace Spm.Shapes.World;

/// <summary>
/// What a caption or prompt asks for: each attribute is either named (non-null) or left open (null: any value
/// is a correct picture). Captions of training pictures name a subset of the picture's true attributes.
/// </summary>
/// <param name="Shape">The shape asked for, or null ("a red shape").</param>
/// <param name="Color">The colour asked for, or null.</param>
/// <param name="Pattern">The fill pattern asked for, or null.</param>
/// <param name="Background">The background asked for, or null.</param>
public sealed partial record ShapePrompt(ShapeKind? Shape, ShapeColor? Color, FillPattern? Pattern, ShapeBackground? Background)
{
    /// <summary>The prompt in the canonical template: "a [pattern] [colour] (shape|shape-word) [on a (background) background]".</summary>
    public string Text => ToText(CaptionTemplate.Adjectives);

    /// <summary>Renders the prompt with a template; falls back to <see cref="CaptionTemplate.Adjectives"/> where the template does not apply.</summary>
    public string ToText(CaptionTemplate template)
    {
        var sb = new StringBuilder("a ");
        bool withNoun = template == CaptionTemplate.WithNoun && Pattern is FillPattern.Striped or FillPattern.Dotted;
        if (Pattern is { } p && !withNoun) sb.Append(ShapeVocabulary.Word(p)).Append(' ');
        if (Color is { } c) sb.Append(ShapeVocabulary.Word(c)).Append(' ');
        sb.Append(Shape is { } s ? ShapeVocabulary.Word(s) : "shape");
        if (withNoun) sb.Append(Pattern == FillPattern.Striped ? " with stripes" : " with dots");
        if (Background is { } b) sb.Append(" on a ").Append(ShapeVocabulary.Word(b)).Append(" background");
        // "a orange ..." reads badly; captions use the right article.
        if (sb.Length > 2 && "aeiou".Contains(sb[2])) sb.Insert(1, 'n');
        return sb.ToString();
    }

    /// <summary>True when a scene satisfies every attribute this prompt names.</summary>
    public bool IsSatisfiedBy(ShapeScene scene) =>
        (Shape is null || Shape == scene.Shape) && (Color is null || Color == scene.Color)
        && (Pattern is null || Pattern == scene.Pattern) && (Background is null || Background == scene.Background);

    /// <summary>The prompt naming every attribute of <paramref name="scene"/>.</summary>
    public static ShapePrompt Describe(ShapeScene scene) => new(scene.Shape, scene.Color, scene.Pattern, scene.Background);

    /// <summary>
    /// Reads the attributes out of a caption written by <see cref="ToText"/> or by hand in the same words
    /// ("a striped red circle", "a red circle with stripes on a black background", "grey" for "gray").
    /// Words it does not know are ignored; returns null when two values of one attribute are named.
    /// </summary>
    public static ShapePrompt? Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var lower = text.ToLowerInvariant().Replace("grey", "gray");
        ShapeBackground? background = null;
        var bg = BackgroundPhrase().Match(lower);
        if (bg.Success)
        {
            background = ShapeVocabulary.Backgrounds.First(b => ShapeVocabulary.Word(b) == bg.Groups[1].Value);
            lower = lower.Remove(bg.Index, bg.Length);
        }
        ShapeKind? shape = null;
        ShapeColor? color = null;
        FillPattern? pattern = null;
        foreach (var word in lower.Split([' ', ',', '.', '-'], StringSplitOptions.RemoveEmptyEntries))
        {
            bool ok = true;
            foreach (var s in ShapeVocabulary.Shapes)
                if (word == ShapeVocabulary.Word(s) || word == ShapeVocabulary.Word(s) + "s") ok &= Set(ref shape, s);
            foreach (var c in ShapeVocabulary.Colors)
                if (word == ShapeVocabulary.Word(c)) ok &= Set(ref color, c);
            if (word is "plain") ok &= Set(ref pattern, FillPattern.Plain);
            if (word is "striped" or "stripes" or "stripy") ok &= Set(ref pattern, FillPattern.Striped);
            if (word is "dotted" or "dots" or "spotted") ok &= Set(ref pattern, FillPattern.Dotted);
            if (!ok) return null;
        }
        return new ShapePrompt(shape, color, pattern, background);
    }

    private static bool Set<T>(ref T? slot, T value) where T : struct, Enum
    {
        if (slot is { } existing && !EqualityComparer<T>.Default.Equals(existing, value)) return false;
        slot = value;
        return true;
    }

    [GeneratedRegex(@"on an? (white|black|gray|light blue) background")]
    private static partial Regex BackgroundPhrase();
}

/// <summary>Caption wordings.</summary>
public enum CaptionTemplate
{
    /// <summary>"a striped red circle on a white background".</summary>
    Adjectives,

    /// <summary>"a red circle with stripes on a white background" (patterned shapes only).</summary>
    WithNoun,
}
