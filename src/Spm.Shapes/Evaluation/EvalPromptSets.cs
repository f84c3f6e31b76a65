using Spm.Core.Randomness;
using Spm.Shapes.World;

namespace Spm.Shapes.Evaluation;

/// <summary>One evaluation prompt with the seed its images are generated from.</summary>
/// <param name="Prompt">What it asks for.</param>
/// <param name="Text">The prompt text given to the model.</param>
/// <param name="Seed">The generation seed (the same for the base and every erased variant, so images compare pixel by pixel).</param>
public sealed record EvalPrompt(ShapePrompt Prompt, string Text, ulong Seed);

/// <summary>
/// The prompt sets of an erasure evaluation, deterministic from a seed:
/// <list type="bullet">
/// <item><b>target</b> prompts ask for one concept ("a striped blue circle", "a circle on a black background"):
///   the concept's detection rate is measured on their images;</item>
/// <item><b>preservation</b> prompts name, for every erased concept's attribute, a different value
///   explicitly ("a red square", "a plain green star"), so that nothing erased is asked for and every named
///   attribute has a known right answer.</item>
/// </list>
/// Prompts always name the shape and colour and name the pattern (60%) and background (50%) at random, as the
/// training captions do. When the erased concepts are every value of an attribute (a family membrane erasing all four
/// shapes), preservation prompts leave that attribute open ("a red shape"): none is left to ask for.
/// </summary>
public static class EvalPromptSets
{
    /// <summary><paramref name="count"/> prompts asking for <paramref name="concept"/>.</summary>
    /// <param name="concept">The concept asked for.</param>
    /// <param name="count">How many prompts.</param>
    /// <param name="seed">Seed of the prompts and their image seeds.</param>
    /// <param name="wording">How the texts are worded; the intents and image seeds are the same for every wording.</param>
    public static IReadOnlyList<EvalPrompt> Target(EvalConcept concept, int count, ulong seed, PromptWording wording = PromptWording.Canonical)
    {
        ArgumentNullException.ThrowIfNull(concept);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        // Each concept gets its own stream so that adding a concept does not change another's prompts.
        var rng = new SeededRandom(seed ^ (0x5EED0000UL + (ulong)concept.Attribute * 64 + (ulong)concept.Value));
        var list = new List<EvalPrompt>(count);
        for (int i = 0; i < count; i++)
        {
            var prompt = concept.WithValue(RandomPrompt(rng), concept.Value);
            ulong imageSeed = rng.NextUInt64();
            list.Add(new EvalPrompt(prompt, Word(prompt, wording, imageSeed), imageSeed));
        }
        return list;
    }

    /// <summary>
    /// <paramref name="count"/> prompts that ask for none of <paramref name="erased"/> (each of their attributes named
    /// with another value, or left open when every value of it is erased).
    /// </summary>
    /// <param name="erased">The concepts none of the prompts asks for.</param>
    /// <param name="count">How many prompts.</param>
    /// <param name="seed">Seed of the prompts and their image seeds.</param>
    /// <param name="wording">How the texts are worded; the intents and image seeds are the same for every wording.</param>
    public static IReadOnlyList<EvalPrompt> Preservation(IReadOnlyList<EvalConcept> erased, int count, ulong seed, PromptWording wording = PromptWording.Canonical)
    {
        ArgumentNullException.ThrowIfNull(erased);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        var excluded = erased.GroupBy(c => c.Attribute).ToDictionary(g => g.Key, g => g.Select(c => c.Value).ToHashSet());
        var allowed = new Dictionary<ConceptAttribute, int[]>();
        foreach (var (attribute, values) in excluded)
        {
            var rest = Enumerable.Range(0, EvalConcept.CountOf(attribute)).Where(v => !values.Contains(v)).ToArray();
            // Every value erased: the attribute is left open (an empty list), so no prompt asks for an erased value.
            allowed[attribute] = rest;
        }
        var rng = new SeededRandom(seed ^ 0x9E5E_7A7E_0000UL);
        var list = new List<EvalPrompt>(count);
        for (int i = 0; i < count; i++)
        {
            var prompt = RandomPrompt(rng);
            foreach (var (attribute, values) in allowed)
            {
                var probe = new EvalConcept(attribute, 0);
                prompt = probe.WithValue(prompt, values.Length == 0 ? null : values[rng.NextInt(0, values.Length)]);
            }
            ulong imageSeed = rng.NextUInt64();
            list.Add(new EvalPrompt(prompt, Word(prompt, wording, imageSeed), imageSeed));
        }
        return list;
    }

    /// <summary>
    /// The text of <paramref name="prompt"/> in <paramref name="wording"/>. The words are drawn from a stream of their own
    /// (seeded by the image seed), so every wording keeps the canonical sets' intents and image seeds: a synonym row and
    /// a canonical row differ only in the words.
    /// </summary>
    public static string Word(ShapePrompt prompt, PromptWording wording, ulong imageSeed)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        var rng = new SeededRandom(imageSeed ^ 0x5_7A0_0000_0000UL);
        return wording switch
        {
            PromptWording.Canonical => prompt.Text,
            PromptWording.Synonyms => ShapeLexicon.TrainingCaption(prompt, rng, canonicalShare: 0),
            PromptWording.HeldOut => ShapeLexicon.HeldOutCaption(prompt, rng),
            _ => throw new ArgumentOutOfRangeException(nameof(wording)),
        };
    }

    private static ShapePrompt RandomPrompt(SeededRandom rng) => new(
        ShapeVocabulary.Shapes[rng.NextInt(0, ShapeVocabulary.Shapes.Count)],
        ShapeVocabulary.Colors[rng.NextInt(0, ShapeVocabulary.Colors.Count)],
        rng.NextDouble() < 0.6 ? ShapeVocabulary.Patterns[rng.NextInt(0, ShapeVocabulary.Patterns.Count)] : null,
        rng.NextDouble() < 0.5 ? ShapeVocabulary.Backgrounds[rng.NextInt(0, ShapeVocabulary.Backgrounds.Count)] : null);
}

/// <summary>How evaluation prompts are worded (<see cref="EvalPromptSets"/>).</summary>
public enum PromptWording
{
    /// <summary>The canonical template and words ("a striped red circle on a white background").</summary>
    Canonical,

    /// <summary>Synonyms only, in the templates training uses ("a crimson disc with bands", "red, round, stripy").</summary>
    Synonyms,

    /// <summary>Held-out templates and word combinations no training caption contains (<see cref="ShapeLexicon.IsHeldOut"/>).</summary>
    HeldOut,
}
