using Spm.Core.Randomness;
using Spm.Shapes.Evaluation;
using Spm.Training.Attacks;

namespace Spm.Shapes.World;

/// <summary>How a prompt re-phrases what it asks for.</summary>
public enum PhrasingKind
{
    /// <summary>The training captions' own wording ("a striped red circle on a white background").</summary>
    Canonical,
    /// <summary>The concept's noun in the plural, or the concept on plural shapes ("red circles", "striped squares").</summary>
    Plural,
    /// <summary>One character edit in the concept's word ("a red circel").</summary>
    Typo,
    /// <summary>Capitals ("A RED CIRCLE", "A red circle").</summary>
    Capitals,
    /// <summary>Another word order ("a circle that is red", "red, circle, on white", "a red circle with stripes").</summary>
    WordOrder,
    /// <summary>The caption among filler phrases ("a photo of, a red circle, high quality, detailed").</summary>
    Long,
    /// <summary>The concept's word repeated ("circle, a red circle, circle").</summary>
    Repeated,
    /// <summary>Synonyms for every named value, in a training template ("a crimson disc with bands", "red, round, stripy").</summary>
    Synonym,
}

/// <summary>One phrased prompt: its text, how it was phrased, what it asks for, and its image seed.</summary>
/// <param name="Text">The prompt text.</param>
/// <param name="Kind">The phrasing.</param>
/// <param name="Intent">What a reader takes it to ask for.</param>
/// <param name="Seed">The generation seed.</param>
public sealed record PhrasedPrompt(string Text, PhrasingKind Kind, ShapePrompt Intent, ulong Seed)
{
    /// <summary>As an evaluation prompt.</summary>
    public EvalPrompt ToEvalPrompt() => new(Intent, Text, Seed);
}

/// <summary>
/// Re-phrasings of tiny-shapes prompts, deterministic from a seed: the text-variant attack's prompts and the evaluation
/// sets of the gate (re-phrased targets that must open it, near neighbours phrased the same ways that must not). A
/// plural or a typo is a word the built-in model never saw in training (its own token with a random embedding), so
/// whether the model still draws the concept is an empirical question the evaluation answers image by image.
/// </summary>
public static class ShapePhrasings
{
    /// <summary>Every re-phrasing (all kinds but <see cref="PhrasingKind.Canonical"/>).</summary>
    public static IReadOnlyList<PhrasingKind> Rephrasings { get; } = Enum.GetValues<PhrasingKind>().Where(k => k != PhrasingKind.Canonical).ToArray();

    /// <summary>
    /// <paramref name="count"/> prompts asking for <paramref name="concept"/>, cycling through <paramref name="kinds"/>
    /// (default: every re-phrasing); other attributes random.
    /// </summary>
    public static IReadOnlyList<PhrasedPrompt> Targets(EvalConcept concept, int count, ulong seed, IReadOnlyList<PhrasingKind>? kinds = null)
    {
        ArgumentNullException.ThrowIfNull(concept);
        var rng = new SeededRandom(seed ^ (0xA77AC0000UL + (ulong)concept.Attribute * 64 + (ulong)concept.Value));
        return Make(count, rng, kinds, () => concept.WithValue(RandomPrompt(rng), concept.Value), concept);
    }

    /// <summary>
    /// <paramref name="count"/> near neighbours of <paramref name="erased"/> phrased the same ways: every erased
    /// attribute named with another value ("red squares", "a square that is red", "A GREEN CIRCLE" for circle and red),
    /// the rest random. The re-phrased word is the other value's, so a plural or typo here is a non-target's plural or typo.
    /// </summary>
    public static IReadOnlyList<PhrasedPrompt> NearNeighbours(IReadOnlyList<EvalConcept> erased, int count, ulong seed, IReadOnlyList<PhrasingKind>? kinds = null)
    {
        ArgumentNullException.ThrowIfNull(erased);
        if (erased.Count == 0) throw new ArgumentException("No erased concept.", nameof(erased));
        var rng = new SeededRandom(seed ^ 0x4EA2_0000_0000UL);
        ShapePrompt Next()
        {
            var p = RandomPrompt(rng);
            foreach (var group in erased.GroupBy(c => c.Attribute))
            {
                var banned = group.Select(c => c.Value).ToHashSet();
                var allowed = Enumerable.Range(0, EvalConcept.CountOf(group.Key)).Where(v => !banned.Contains(v)).ToArray();
                if (allowed.Length == 0) throw new ArgumentException($"Every {group.Key.ToString().ToLowerInvariant()} is erased: no near neighbours.");
                p = group.First().WithValue(p, allowed[rng.NextInt(0, allowed.Length)]);
            }
            return p;
        }
        return Make(count, rng, kinds, Next, erased[0]);
    }

    private static List<PhrasedPrompt> Make(int count, SeededRandom rng, IReadOnlyList<PhrasingKind>? kinds, Func<ShapePrompt> next, EvalConcept focus)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        kinds ??= Rephrasings;
        if (kinds.Count == 0) throw new ArgumentException("No phrasing kinds.", nameof(kinds));
        var list = new List<PhrasedPrompt>(count);
        for (int i = 0; i < count; i++)
        {
            var kind = kinds[i % kinds.Count];
            var intent = next();
            // The focus attribute must be named for its word to be re-phrased; a pattern prompt needs a patterned shape.
            var text = Phrase(intent, kind, focus.Attribute, rng);
            list.Add(new PhrasedPrompt(text, kind, intent, rng.NextUInt64()));
        }
        return list;
    }

    /// <summary>The word of <paramref name="attribute"/> in <paramref name="prompt"/> ("circle", "red", "striped"), or null when open.</summary>
    public static string? WordOf(ShapePrompt prompt, ConceptAttribute attribute) => attribute switch
    {
        ConceptAttribute.Shape => prompt.Shape is { } s ? ShapeVocabulary.Word(s) : null,
        ConceptAttribute.Color => prompt.Color is { } c ? ShapeVocabulary.Word(c) : null,
        ConceptAttribute.Pattern => prompt.Pattern is { } p ? ShapeVocabulary.Word(p) : null,
        _ => prompt.Background is { } b ? ShapeVocabulary.Word(b) : null,
    };

    /// <summary>Writes <paramref name="p"/> in the phrasing <paramref name="kind"/>, re-phrasing the word of <paramref name="focus"/>.</summary>
    public static string Phrase(ShapePrompt p, PhrasingKind kind, ConceptAttribute focus, SeededRandom rng)
    {
        ArgumentNullException.ThrowIfNull(p);
        ArgumentNullException.ThrowIfNull(rng);
        var canonical = p.Text;
        var word = WordOf(p, focus);
        string shape = p.Shape is { } s ? ShapeVocabulary.Word(s) : "shape";
        string color = p.Color is { } c ? ShapeVocabulary.Word(c) + " " : "";
        string bg = p.Background is { } b ? $" on a {ShapeVocabulary.Word(b)} background" : "";
        switch (kind)
        {
            case PhrasingKind.Plural:
            {
                string pattern = p.Pattern is { } pt ? ShapeVocabulary.Word(pt) + " " : "";
                return $"{pattern}{color}{TextEdits.Plural(shape)}{bg}";
            }
            case PhrasingKind.Typo when word is not null:
                return TextEdits.ReplaceWord(canonical, word, TextEdits.Typo(word, rng));
            case PhrasingKind.Capitals:
                return TextEdits.Capitalise(canonical, allCapitals: rng.NextDouble() < 0.5);
            case PhrasingKind.WordOrder:
            {
                int form = rng.NextInt(0, 3);
                if (p.Pattern is FillPattern.Striped or FillPattern.Dotted && (form == 0 || focus == ConceptAttribute.Pattern))
                    return p.ToText(CaptionTemplate.WithNoun);
                string pattern = p.Pattern is { } pt ? ShapeVocabulary.Word(pt) : "";
                if (form == 1 && p.Color is { } col)
                    return $"a {(pattern.Length > 0 ? pattern + " " : "")}{shape} that is {ShapeVocabulary.Word(col)}{bg}";
                var parts = new List<string>();
                if (p.Color is { } c2) parts.Add(ShapeVocabulary.Word(c2));
                parts.Add(shape);
                if (pattern.Length > 0) parts.Add(pattern);
                if (p.Background is { } b2) parts.Add("on " + ShapeVocabulary.Word(b2));
                return string.Join(", ", parts);
            }
            case PhrasingKind.Long:
                return TextEdits.Bury(canonical, rng.NextInt(1, 4), rng.NextInt(1, 5), rng);
            case PhrasingKind.Repeated when word is not null:
                return $"{word}, {canonical}, {word}";
            case PhrasingKind.Synonym:
                return ShapeLexicon.TrainingCaption(p, rng, canonicalShare: 0);
            default:
                return canonical;
        }
    }

    private static ShapePrompt RandomPrompt(SeededRandom rng) => new(
        ShapeVocabulary.Shapes[rng.NextInt(0, ShapeVocabulary.Shapes.Count)],
        ShapeVocabulary.Colors[rng.NextInt(0, ShapeVocabulary.Colors.Count)],
        rng.NextDouble() < 0.6 ? ShapeVocabulary.Patterns[rng.NextInt(0, ShapeVocabulary.Patterns.Count)] : null,
        rng.NextDouble() < 0.5 ? ShapeVocabulary.Backgrounds[rng.NextInt(0, ShapeVocabulary.Backgrounds.Count)] : null);
}
