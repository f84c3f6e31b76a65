using System.Text;
using Spm.Core.Randomness;

namespace Spm.Shapes.World;

/// <summary>Which captions a caption generator may write (see <see cref="ShapeLexicon"/>).</summary>
public enum CaptionSplit
{
    /// <summary>Training captions: the seen templates, never a held-out word combination.</summary>
    Training,

    /// <summary>Held-out captions: a held-out template or a held-out word combination (never written for training).</summary>
    HeldOut,
}

/// <summary>The wordings of a caption (see <see cref="ShapeLexicon.Templates"/>).</summary>
public enum CaptionForm
{
    /// <summary>"a striped red circle on a white background" (the canonical wording; also with synonyms).</summary>
    Adjectives,

    /// <summary>"a red circle with stripes on a white background" (patterned shapes; plain ones fall back to adjectives).</summary>
    WithNoun,

    /// <summary>"a striped circle that is red on a white background".</summary>
    ThatIs,

    /// <summary>"red, circular, striped, on white" (shape as an adjective, comma list).</summary>
    CommaList,

    /// <summary>"striped red circles on a white background" (the shape noun in the plural, no article).</summary>
    Plural,

    /// <summary>Held out: "a striped circle in red on a white background".</summary>
    InColour,

    /// <summary>Held out: "a drawing of a striped red circle, white background".</summary>
    DrawingOf,
}

/// <summary>
/// The tiny-shapes world's vocabulary with synonyms and several caption templates (issue 20): at least three words for
/// every shape, colour and pattern value (the first is <see cref="ShapeVocabulary"/>'s canonical word), adjective forms of
/// the shapes ("circular"), nouns of the patterns ("stripes", "polka dots"), plurals and capitals. One place also keeps
/// what training never sees: the templates <see cref="HeldOutForms"/> and the held-out word combinations
/// (<see cref="IsHeldOutCombination"/>: the third colour word with the third shape word), so an evaluation can ask
/// whether an erased concept stays erased under words and word orders the model and the SPM were never shown.
/// </summary>
public static class ShapeLexicon
{
    /// <summary>Words for each shape, the canonical one first (nouns; the third is the held-out combination's).</summary>
    public static IReadOnlyDictionary<ShapeKind, string[]> ShapeWords { get; } = new Dictionary<ShapeKind, string[]>
    {
        [ShapeKind.Circle] = ["circle", "disc", "round shape"],
        [ShapeKind.Square] = ["square", "tile", "block"],
        [ShapeKind.Triangle] = ["triangle", "wedge", "trigon"],
        [ShapeKind.Star] = ["star", "pentagram", "five-pointed star"],
    };

    /// <summary>Adjective forms of the shapes, for the comma-list template ("red, circular, on white").</summary>
    public static IReadOnlyDictionary<ShapeKind, string[]> ShapeAdjectives { get; } = new Dictionary<ShapeKind, string[]>
    {
        [ShapeKind.Circle] = ["circular", "round"],
        [ShapeKind.Square] = ["square", "squared"],
        [ShapeKind.Triangle] = ["triangular", "three-sided"],
        [ShapeKind.Star] = ["star-shaped", "starry"],
    };

    /// <summary>Words for each colour, the canonical one first.</summary>
    public static IReadOnlyDictionary<ShapeColor, string[]> ColorWords { get; } = new Dictionary<ShapeColor, string[]>
    {
        [ShapeColor.Red] = ["red", "crimson", "scarlet"],
        [ShapeColor.Green] = ["green", "emerald", "jade"],
        [ShapeColor.Blue] = ["blue", "cobalt", "sapphire"],
        [ShapeColor.Yellow] = ["yellow", "lemon", "canary"],
        [ShapeColor.Purple] = ["purple", "violet", "amethyst"],
        [ShapeColor.Orange] = ["orange", "tangerine", "amber"],
    };

    /// <summary>Adjectives for each pattern, the canonical one first.</summary>
    public static IReadOnlyDictionary<FillPattern, string[]> PatternWords { get; } = new Dictionary<FillPattern, string[]>
    {
        [FillPattern.Plain] = ["plain", "solid", "unpatterned"],
        [FillPattern.Striped] = ["striped", "stripy", "banded"],
        [FillPattern.Dotted] = ["dotted", "spotted", "polka-dot"],
    };

    /// <summary>Nouns of the patterned fills, for "with ..." ("with stripes", "with polka dots").</summary>
    public static IReadOnlyDictionary<FillPattern, string[]> PatternNouns { get; } = new Dictionary<FillPattern, string[]>
    {
        [FillPattern.Striped] = ["stripes", "bands", "stripes"],
        [FillPattern.Dotted] = ["dots", "spots", "polka dots"],
    };

    /// <summary>Templates training captions use.</summary>
    public static IReadOnlyList<CaptionForm> TrainingForms { get; } =
        [CaptionForm.Adjectives, CaptionForm.WithNoun, CaptionForm.ThatIs, CaptionForm.CommaList, CaptionForm.Plural];

    /// <summary>Templates no training caption uses (evaluation only).</summary>
    public static IReadOnlyList<CaptionForm> HeldOutForms { get; } = [CaptionForm.InColour, CaptionForm.DrawingOf];

    /// <summary>Every template, seen first.</summary>
    public static IReadOnlyList<CaptionForm> Templates { get; } = [.. TrainingForms, .. HeldOutForms];

    /// <summary>
    /// True for the word combinations training never writes: a caption that names both the shape with its third word
    /// ("round shape", "block", "trigon", "five-pointed star") and the colour with its third word ("scarlet", "jade", ...).
    /// Each word alone is seen in training; only the pair is new.
    /// </summary>
    public static bool IsHeldOutCombination(int shapeWordIndex, int colorWordIndex) => shapeWordIndex == 2 && colorWordIndex == 2;

    /// <summary>The words a caption uses for each named attribute (indices into the word lists).</summary>
    /// <param name="Shape">Index into <see cref="ShapeWords"/> (or <see cref="ShapeAdjectives"/> for the comma list).</param>
    /// <param name="Color">Index into <see cref="ColorWords"/>.</param>
    /// <param name="Pattern">Index into <see cref="PatternWords"/> (or <see cref="PatternNouns"/>).</param>
    public readonly record struct WordChoice(int Shape, int Color, int Pattern)
    {
        /// <summary>The canonical words.</summary>
        public static WordChoice Canonical => new(0, 0, 0);
    }

    /// <summary>
    /// Writes <paramref name="prompt"/> in <paramref name="form"/> with the chosen words; capitals are not applied here
    /// (<see cref="Capitalise"/>). Open attributes are left out (a shape that is open is "shape").
    /// </summary>
    public static string Write(ShapePrompt prompt, CaptionForm form, WordChoice words)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        string Noun() => prompt.Shape is { } s ? ShapeWords[s][words.Shape % ShapeWords[s].Length] : "shape";
        string? Colour() => prompt.Color is { } c ? ColorWords[c][words.Color % ColorWords[c].Length] : null;
        string? PatternAdj() => prompt.Pattern is { } p ? PatternWords[p][words.Pattern % PatternWords[p].Length] : null;
        string? Bg() => prompt.Background is { } b ? ShapeVocabulary.Word(b) : null;
        bool patterned = prompt.Pattern is FillPattern.Striped or FillPattern.Dotted;
        string BgPhrase() => Bg() is { } b ? $" on a {b} background" : "";
        string Adjectives(string noun) => string.Join(' ', new[] { PatternAdj(), Colour(), noun }.Where(w => w is not null));
        string text;
        switch (form)
        {
            case CaptionForm.WithNoun when patterned:
                text = "a " + string.Join(' ', new[] { Colour(), Noun() }.Where(w => w is not null))
                    + " with " + PatternNouns[prompt.Pattern!.Value][words.Pattern % 3] + BgPhrase();
                break;
            case CaptionForm.ThatIs when prompt.Color is not null:
                text = "a " + string.Join(' ', new[] { PatternAdj(), Noun() }.Where(w => w is not null)) + " that is " + Colour() + BgPhrase();
                break;
            case CaptionForm.CommaList:
            {
                var parts = new List<string>();
                if (Colour() is { } c) parts.Add(c);
                parts.Add(prompt.Shape is { } s ? ShapeAdjectives[s][words.Shape % ShapeAdjectives[s].Length] : "shape");
                if (PatternAdj() is { } p) parts.Add(p);
                if (Bg() is { } b) parts.Add("on " + b);
                return string.Join(", ", parts);
            }
            case CaptionForm.Plural:
                return Adjectives(Pluralise(Noun())) + BgPhrase();
            case CaptionForm.InColour when prompt.Color is not null:
                text = "a " + string.Join(' ', new[] { PatternAdj(), Noun() }.Where(w => w is not null)) + " in " + Colour() + BgPhrase();
                break;
            case CaptionForm.DrawingOf:
                text = "a drawing of a " + Adjectives(Noun()) + (Bg() is { } bg ? $", {bg} background" : "");
                break;
            default:
                text = "a " + Adjectives(Noun()) + BgPhrase();
                break;
        }
        return WithArticles(text);
    }

    /// <summary>
    /// A training caption of <paramref name="prompt"/>: a seen template, canonical words with probability
    /// <paramref name="canonicalShare"/> (else one of the synonyms, uniformly), capitals on one caption in ten, and never a
    /// held-out word combination.
    /// </summary>
    public static string TrainingCaption(ShapePrompt prompt, SeededRandom rng, double canonicalShare = 0.4)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(rng);
        var form = rng.NextDouble() < canonicalShare ? CaptionForm.Adjectives : TrainingForms[rng.NextInt(0, TrainingForms.Count)];
        int Pick(int n) => rng.NextDouble() < canonicalShare ? 0 : rng.NextInt(1, n);
        var words = new WordChoice(Pick(3), Pick(3), Pick(3));
        if (prompt.Shape is not null && prompt.Color is not null && IsHeldOutCombination(words.Shape, words.Color))
            words = words with { Color = 1 };
        var text = Write(prompt, form, words);
        return rng.NextDouble() < 0.1 ? Capitalise(text, rng.NextDouble() < 0.5) : text;
    }

    /// <summary>
    /// A held-out caption of <paramref name="prompt"/>: either a held-out template (with random words) or, when the prompt
    /// names shape and colour, a seen template with the held-out word combination. Never equal to a training caption.
    /// </summary>
    public static string HeldOutCaption(ShapePrompt prompt, SeededRandom rng)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(rng);
        bool combination = prompt.Shape is not null && prompt.Color is not null && rng.NextDouble() < 0.5;
        if (combination)
            return Write(prompt, TrainingForms[rng.NextInt(0, TrainingForms.Count)] is var f && f == CaptionForm.CommaList ? CaptionForm.Adjectives : f,
                new WordChoice(2, 2, rng.NextInt(0, 3)));
        var form = prompt.Color is null ? CaptionForm.DrawingOf : HeldOutForms[rng.NextInt(0, HeldOutForms.Count)];
        return Write(prompt, form, new WordChoice(rng.NextInt(0, 3), rng.NextInt(0, 3), rng.NextInt(0, 3)));
    }

    /// <summary>"A red circle" (first letter) or "A RED CIRCLE" (all).</summary>
    public static string Capitalise(string text, bool all)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (text.Length == 0) return text;
        return all ? text.ToUpperInvariant() : char.ToUpperInvariant(text[0]) + text[1..];
    }

    /// <summary>Every word the lexicon reads, with the attribute value it names (lower case, single words and phrases).</summary>
    public static IReadOnlyList<(string Words, ShapePrompt Names)> Entries { get; } = BuildEntries();

    /// <summary>True when a caption uses a held-out template or word combination (what training must never contain).</summary>
    public static bool IsHeldOut(string caption)
    {
        ArgumentNullException.ThrowIfNull(caption);
        var lower = caption.ToLowerInvariant();
        if (lower.StartsWith("a drawing of ", StringComparison.Ordinal) || System.Text.RegularExpressions.Regex.IsMatch(lower, @"\bin (\w+)( on|$)")) return true;
        bool thirdShape = ShapeWords.Values.Any(w => ContainsPhrase(lower, w[2]) || ContainsPhrase(lower, Pluralise(w[2])));
        bool thirdColour = ColorWords.Values.Any(w => ContainsPhrase(lower, w[2]));
        return thirdShape && thirdColour;
    }

    /// <summary>Plural of a shape noun ("circles", "round shapes", "five-pointed stars").</summary>
    public static string Pluralise(string noun) => noun.EndsWith("shape", StringComparison.Ordinal) ? noun + "s" : Spm.Training.Attacks.TextEdits.Plural(noun);

    private static bool ContainsPhrase(string text, string phrase)
    {
        int i = 0;
        while ((i = text.IndexOf(phrase, i, StringComparison.Ordinal)) >= 0)
        {
            bool startOk = i == 0 || !char.IsLetter(text[i - 1]);
            int end = i + phrase.Length;
            bool endOk = end == text.Length || !char.IsLetter(text[end]);
            if (startOk && endOk) return true;
            i = end;
        }
        return false;
    }

    private static string WithArticles(string text)
    {
        // "a orange ..." / "a amber ..." read badly: the article follows the next word.
        var sb = new StringBuilder(text);
        for (int i = 0; i + 2 < sb.Length; i++)
        {
            bool atWord = i == 0 || sb[i - 1] == ' ';
            if (atWord && sb[i] == 'a' && sb[i + 1] == ' ' && "aeiou".Contains(sb[i + 2]))
                sb.Insert(i + 1, 'n');
        }
        return sb.ToString();
    }

    private static List<(string, ShapePrompt)> BuildEntries()
    {
        var list = new List<(string, ShapePrompt)>();
        foreach (var (s, words) in ShapeWords)
        {
            foreach (var w in words)
            {
                list.Add((w, new ShapePrompt(s, null, null, null)));
                list.Add((Pluralise(w), new ShapePrompt(s, null, null, null)));
            }
            foreach (var w in ShapeAdjectives[s]) list.Add((w, new ShapePrompt(s, null, null, null)));
        }
        foreach (var (c, words) in ColorWords)
            foreach (var w in words) list.Add((w, new ShapePrompt(null, c, null, null)));
        foreach (var (p, words) in PatternWords)
            foreach (var w in words) list.Add((w, new ShapePrompt(null, null, p, null)));
        foreach (var (p, words) in PatternNouns)
            foreach (var w in words.Distinct()) list.Add((w, new ShapePrompt(null, null, p, null)));
        // Earlier spellings the parser has always read.
        list.Add(("stripe", new ShapePrompt(null, null, FillPattern.Striped, null)));
        list.Add(("dot", new ShapePrompt(null, null, FillPattern.Dotted, null)));
        list.Add(("polka dot", new ShapePrompt(null, null, FillPattern.Dotted, null)));
        // Longest first, so "round shape" is read before a bare "shape" is skipped and "five-pointed star" as one phrase.
        return list.DistinctBy(e => e.Item1).OrderByDescending(e => e.Item1.Length).ToList();
    }
}
