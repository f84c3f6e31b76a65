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
    /// Reads the attributes out of a caption in any of the world's wordings (<see cref="ShapeLexicon"/>): synonyms
    /// ("a crimson disc", "a scarlet round shape"), templates ("a circle that is red", "red, circular, striped, on white",
    /// "a red circle with polka dots", the held-out "a circle in red"), plurals and capitals, and the earlier spellings
    /// ("grey", "stripes", "dots", "an"). Words it does not know are ignored; returns null when two values of one
    /// attribute are named.
    /// </summary>
    public static ShapePrompt? Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var lower = text.ToLowerInvariant().Replace("grey", "gray");
        ShapeBackground? background = null;
        foreach (Match bg in BackgroundPhrase().Matches(lower))
        {
            var word = bg.Groups["a"].Success ? bg.Groups["a"].Value : bg.Groups["b"].Value;
            if (!Set(ref background, ShapeVocabulary.Backgrounds.First(b => ShapeVocabulary.Word(b) == word))) return null;
        }
        var rest = new StringBuilder(BackgroundPhrase().Replace(lower, " "));
        ShapeKind? shape = null;
        ShapeColor? color = null;
        FillPattern? pattern = null;
        // Longest phrases first; each match is blanked so "five-pointed star" is not read again as "star".
        foreach (var (words, names) in ShapeLexicon.Entries)
        {
            var current = rest.ToString();
            int i = 0;
            while ((i = current.IndexOf(words, i, StringComparison.Ordinal)) >= 0)
            {
                int end = i + words.Length;
                if ((i == 0 || !char.IsLetter(current[i - 1])) && (end == current.Length || !char.IsLetter(current[end])))
                {
                    bool ok = true;
                    if (names.Shape is { } s) ok &= Set(ref shape, s);
                    if (names.Color is { } c) ok &= Set(ref color, c);
                    if (names.Pattern is { } p) ok &= Set(ref pattern, p);
                    if (!ok) return null;
                    for (int k = i; k < end; k++) rest[k] = ' ';
                }
                i = end;
            }
        }
        return new ShapePrompt(shape, color, pattern, background);
    }

    private static bool Set<T>(ref T? slot, T value) where T : struct, Enum
    {
        if (slot is { } existing && !EqualityComparer<T>.Default.Equals(existing, value)) return false;
        slot = value;
        return true;
    }

    // "on a white background", "on white", "against a black background", ", gray background".
    [GeneratedRegex(@"\b(?:on|against) (?:an? )?(?<a>white|black|gray|light blue)\b(?: background)?|(?<b>white|black|gray|light blue) background")]
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
