using Spm.Core;
using Spm.Shapes.World;

namespace Spm.Shapes.Evaluation;

/// <summary>Which attribute of a tiny-shapes picture a concept is about.</summary>
public enum ConceptAttribute
{
    /// <summary>The shape (circle, square, ...).</summary>
    Shape,

    /// <summary>The fill colour.</summary>
    Color,

    /// <summary>The fill pattern.</summary>
    Pattern,

    /// <summary>The background.</summary>
    Background,
}

/// <summary>
/// A concept to erase and measure, one value of one attribute ("circle", "red", "striped"): what a prompt must
/// name to ask for it and what the evaluator must read to detect it.
/// </summary>
/// <param name="Attribute">The attribute.</param>
/// <param name="Value">The attribute's enum value as an integer (see <see cref="Name"/> for the word).</param>
public sealed record EvalConcept(ConceptAttribute Attribute, int Value)
{
    /// <summary>The caption word(s) of the concept ("circle", "red", "striped", "light blue").</summary>
    public string Name => Attribute switch
    {
        ConceptAttribute.Shape => ShapeVocabulary.Word((ShapeKind)Value),
        ConceptAttribute.Color => ShapeVocabulary.Word((ShapeColor)Value),
        ConceptAttribute.Pattern => ShapeVocabulary.Word((FillPattern)Value),
        _ => ShapeVocabulary.Word((ShapeBackground)Value),
    };

    /// <summary>The number of values of <see cref="Attribute"/>.</summary>
    public int ValueCount => CountOf(Attribute);

    /// <summary>The concept for a shape.</summary>
    public static EvalConcept Of(ShapeKind shape) => new(ConceptAttribute.Shape, (int)shape);

    /// <summary>The concept for a colour.</summary>
    public static EvalConcept Of(ShapeColor color) => new(ConceptAttribute.Color, (int)color);

    /// <summary>The concept for a fill pattern.</summary>
    public static EvalConcept Of(FillPattern pattern) => new(ConceptAttribute.Pattern, (int)pattern);

    /// <summary>The concept for a background.</summary>
    public static EvalConcept Of(ShapeBackground background) => new(ConceptAttribute.Background, (int)background);

    /// <summary>Reads a concept from its word ("circle", "Red", "striped", "light blue" or "light-blue").</summary>
    /// <exception cref="SpmException">The word names no value of any attribute.</exception>
    public static EvalConcept Parse(string word)
    {
        ArgumentNullException.ThrowIfNull(word);
        var w = word.Trim().ToLowerInvariant().Replace('-', ' ').Replace('_', ' ');
        if (w == "grey") w = "gray";
        foreach (var s in ShapeVocabulary.Shapes) if (ShapeVocabulary.Word(s) == w) return Of(s);
        foreach (var c in ShapeVocabulary.Colors) if (ShapeVocabulary.Word(c) == w) return Of(c);
        foreach (var p in ShapeVocabulary.Patterns) if (ShapeVocabulary.Word(p) == w) return Of(p);
        foreach (var b in ShapeVocabulary.Backgrounds) if (ShapeVocabulary.Word(b) == w) return Of(b);
        throw new SpmException($"Unknown concept '{word}': expected a shape, colour, pattern or background word of the tiny-shapes world (e.g. circle, red, striped).");
    }

    /// <summary>
    /// The concept an SPM erases, read from its prompts: the one tiny-shapes word they name ("circle", "a red shape").
    /// </summary>
    /// <param name="prompts">The SPM's prompts (its file's <c>prompts</c>).</param>
    /// <param name="file">The SPM file, for the message.</param>
    /// <exception cref="SpmException">The prompts name no tiny-shapes value, or several.</exception>
    public static EvalConcept FromPrompts(IReadOnlyList<string> prompts, string file)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        var found = prompts.SelectMany(NamedIn).Distinct().ToArray();
        return found.Length == 1 ? found[0] : throw new SpmException(
            $"cannot tell which tiny-shapes concept '{file}' erases (its prompts: {string.Join(", ", prompts.Select(c => $"'{c}'"))}{(found.Length > 1 ? $" name {string.Join(", ", found.Select(f => f.Name))}" : "")}); pass --concepts.");
    }

    /// <summary>
    /// The concepts a family membrane erases, read from its prompts: every prompt names exactly one tiny-shapes value
    /// ("a circle", "a square"); the concepts in prompt order, each once.
    /// </summary>
    /// <param name="prompts">The family's prompts (the trainer's <c>family</c> record, or the file's <c>prompts</c>).</param>
    /// <param name="file">The SPM file, for the message.</param>
    /// <exception cref="SpmException">No prompts, or a prompt names no tiny-shapes value or several.</exception>
    public static IReadOnlyList<EvalConcept> FamilyFromPrompts(IReadOnlyList<string> prompts, string file)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        if (prompts.Count == 0) throw new SpmException($"'{file}' names no concepts; pass --concepts.");
        var concepts = new List<EvalConcept>();
        foreach (var p in prompts)
        {
            var found = NamedIn(p).Distinct().ToArray();
            if (found.Length != 1)
                throw new SpmException($"cannot tell which tiny-shapes concept the family prompt '{p}' of '{file}' names{(found.Length > 1 ? $" (it names {string.Join(", ", found.Select(f => f.Name))})" : "")}; pass --concepts with the family's concepts joined by commas (e.g. circle,square).");
            if (!concepts.Contains(found[0])) concepts.Add(found[0]);
        }
        return concepts;
    }

    /// <summary>Reads one SPM's concepts from a word or, for a family membrane, words joined by commas ("circle,square").</summary>
    /// <exception cref="SpmException">A word names no value, or one is given twice.</exception>
    public static IReadOnlyList<EvalConcept> ParseList(string words)
    {
        ArgumentNullException.ThrowIfNull(words);
        var concepts = words.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(Parse).ToArray();
        if (concepts.Length == 0) throw new SpmException($"'{words}' names no concept.");
        var twice = concepts.GroupBy(c => c).FirstOrDefault(g => g.Count() > 1);
        if (twice is not null) throw new SpmException($"'{words}' names '{twice.Key.Name}' twice.");
        return concepts;
    }

    private static IEnumerable<EvalConcept> NamedIn(string text)
    {
        if (TryParse(text) is { } whole)
        {
            yield return whole;
            yield break;
        }
        var words = text.ToLowerInvariant().Split([' ', ',', '\t'], StringSplitOptions.RemoveEmptyEntries);
        for (int i = 0; i < words.Length; i++)
        {
            // Two-word values first ("light blue"), so "blue" alone is not read out of them.
            if (i + 1 < words.Length && TryParse(words[i] + " " + words[i + 1]) is { } pair)
            {
                yield return pair;
                i++;
            }
            else if (TryParse(words[i]) is { } single) yield return single;
        }
    }

    private static EvalConcept? TryParse(string word)
    {
        try
        {
            return Parse(word);
        }
        catch (SpmException)
        {
            return null;
        }
    }

    /// <summary>The value this prompt names for the concept's attribute, or null when it leaves it open.</summary>
    public int? NamedBy(ShapePrompt prompt)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        return Attribute switch
        {
            ConceptAttribute.Shape => (int?)prompt.Shape,
            ConceptAttribute.Color => (int?)prompt.Color,
            ConceptAttribute.Pattern => (int?)prompt.Pattern,
            _ => (int?)prompt.Background,
        };
    }

    /// <summary>True when the prompt asks for this concept.</summary>
    public bool IsAskedBy(ShapePrompt prompt) => NamedBy(prompt) == Value;

    /// <summary>True when the evaluator found an object and read this concept's value for the attribute.</summary>
    public bool IsDetectedIn(ShapeJudgement judgement)
    {
        ArgumentNullException.ThrowIfNull(judgement);
        if (!judgement.FoundObject && Attribute != ConceptAttribute.Background) return false;
        int read = Attribute switch
        {
            ConceptAttribute.Shape => (int)judgement.Shape.Value,
            ConceptAttribute.Color => (int)judgement.Color.Value,
            ConceptAttribute.Pattern => (int)judgement.Pattern.Value,
            _ => (int)judgement.Background.Value,
        };
        return read == Value;
    }

    /// <summary>The prompt with this concept's attribute set to <paramref name="value"/> (null leaves it open).</summary>
    public ShapePrompt WithValue(ShapePrompt prompt, int? value)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        return Attribute switch
        {
            ConceptAttribute.Shape => prompt with { Shape = (ShapeKind?)value },
            ConceptAttribute.Color => prompt with { Color = (ShapeColor?)value },
            ConceptAttribute.Pattern => prompt with { Pattern = (FillPattern?)value },
            _ => prompt with { Background = (ShapeBackground?)value },
        };
    }

    /// <inheritdoc />
    public override string ToString() => Name;

    internal static int CountOf(ConceptAttribute attribute) => attribute switch
    {
        ConceptAttribute.Shape => ShapeVocabulary.Shapes.Count,
        ConceptAttribute.Color => ShapeVocabulary.Colors.Count,
        ConceptAttribute.Pattern => ShapeVocabulary.Patterns.Count,
        _ => ShapeVocabulary.Backgrounds.Count,
    };
}
