using Spm.Core.Randomness;
using Spm.Shapes.Evaluation;
using Spm.Training.Attacks;

namespace Spm.Shapes.World;

/// <summary>
/// The prompts a tiny-shapes SPM's learned gate is fitted on: the world's captions with every word slot (shape, colour,
/// pattern) filled, at random, by the real word, its plural, a typo of it, capitals, a random vocabulary word, or nothing,
/// in several templates (adjectives, "with stripes", "that is red", comma lists, long prompts, repetitions). The images the
/// base model draws for them say which prompts carry which concept, so the gate learns what the model reads as a circle,
/// including words it never saw in training, rather than matching the word "circle".
/// </summary>
public static class ShapeGateData
{
    /// <summary>The share of prompts written in the evaluation's phrasings (<see cref="ShapePhrasings.Phrase"/>) of random values.</summary>
    public const double PhrasingShare = 0.4;

    // The phrasings the gate data has always drawn from; synonyms come in through synonymShare, so that a share of 0 keeps
    // writing the prompts earlier versions wrote for the same seed.
    private static readonly PhrasingKind[] GatePhrasings =
        [PhrasingKind.Canonical, PhrasingKind.Plural, PhrasingKind.Typo, PhrasingKind.Capitals, PhrasingKind.WordOrder, PhrasingKind.Long, PhrasingKind.Repeated];

    /// <summary>
    /// <paramref name="count"/> prompts, deterministic from <paramref name="seed"/>; <paramref name="vocabulary"/> supplies
    /// the random words.
    /// </summary>
    /// <param name="count">How many prompts.</param>
    /// <param name="seed">Seed of every choice.</param>
    /// <param name="vocabulary">Words for the "random vocabulary word" slot fillers (the tokenizer's words).</param>
    /// <param name="synonymShare">
    /// For a model trained on the synonym vocabulary (<see cref="ShapeLexicon"/>, <c>--captions varied</c>): the share of
    /// prompts written as training captions with synonyms only ("a crimson disc with bands"), and the chance that a
    /// template's word slot holds a synonym instead of the canonical word. Never a held-out template or word combination,
    /// so evaluations on held-out wording stay unseen by the gate too. 0 (the default) writes exactly the prompts of
    /// earlier versions for the same seed.
    /// </param>
    public static IReadOnlyList<string> Prompts(int count, ulong seed, IReadOnlyList<string> vocabulary, double synonymShare = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentNullException.ThrowIfNull(vocabulary);
        if (vocabulary.Count == 0) throw new ArgumentException("No vocabulary words.", nameof(vocabulary));
        if (!(synonymShare >= 0 && synonymShare <= 1)) throw new ArgumentOutOfRangeException(nameof(synonymShare), synonymShare, "The synonym share must lie in [0, 1].");
        var rng = new SeededRandom(seed ^ 0x6A7E_DA7AUL);
        bool synonyms = synonymShare > 0;
        // A word of a value: the canonical one, or (with synonyms) any of the value's training words.
        int WordIndex() => synonyms && rng.NextDouble() < synonymShare ? rng.NextInt(1, 3) : 0;
        string Word() => vocabulary[rng.NextInt(0, vocabulary.Count)];
        string Vary(string w, bool noun)
        {
            double u = rng.NextDouble();
            if (u < 0.35) return w;
            if (u < 0.50 && noun) return TextEdits.Plural(w);
            if (u < 0.75) return TextEdits.Typo(w, rng);
            if (u < 0.82) return TextEdits.Capitalise(w, allCapitals: rng.NextDouble() < 0.5);
            return Word();
        }
        string Pick<T>(IReadOnlyList<T> values, Func<T, string> word) => word(values[rng.NextInt(0, values.Count)]);

        var prompts = new List<string>(count);
        var attributes = new[] { Evaluation.ConceptAttribute.Shape, Evaluation.ConceptAttribute.Color, Evaluation.ConceptAttribute.Pattern };
        while (prompts.Count < count)
        {
            // Two prompts in five are the evaluation's own phrasings (word orders, long prompts, repetitions, plurals, typos,
            // capitals) of random values, so the gate learns how the model reads each phrasing of each value, concept or not.
            if (synonyms && rng.NextDouble() < synonymShare)
            {
                prompts.Add(ShapeLexicon.TrainingCaption(RandomIntent(rng), rng, canonicalShare: 0));
                continue;
            }
            if (rng.NextDouble() < PhrasingShare)
            {
                var attribute = attributes[rng.NextInt(0, attributes.Length)];
                var intent = new ShapePrompt(
                    ShapeVocabulary.Shapes[rng.NextInt(0, ShapeVocabulary.Shapes.Count)],
                    ShapeVocabulary.Colors[rng.NextInt(0, ShapeVocabulary.Colors.Count)],
                    attribute == Evaluation.ConceptAttribute.Pattern || rng.NextDouble() < 0.6 ? ShapeVocabulary.Patterns[rng.NextInt(0, ShapeVocabulary.Patterns.Count)] : null,
                    rng.NextDouble() < 0.5 ? ShapeVocabulary.Backgrounds[rng.NextInt(0, ShapeVocabulary.Backgrounds.Count)] : null);
                prompts.Add(ShapePhrasings.Phrase(intent, GatePhrasings[rng.NextInt(0, GatePhrasings.Length)], attribute, rng));
                continue;
            }
            string? shape, color;
            string adjective, with;
            int pattern;
            string? bg;
            if (!synonyms)
            {
                shape = rng.NextDouble() < 0.9 ? Vary(Pick(ShapeVocabulary.Shapes, ShapeVocabulary.Word), true) : null;
                color = rng.NextDouble() < 0.85 ? Vary(Pick(ShapeVocabulary.Colors, ShapeVocabulary.Word), false) : null;
                pattern = rng.NextInt(0, 4); // none, plain, striped, dotted
                bg = rng.NextDouble() < 0.4 ? Pick(ShapeVocabulary.Backgrounds, ShapeVocabulary.Word) : null;
                adjective = pattern switch { 1 => Vary("plain", false) + " ", 2 => Vary("striped", false) + " ", 3 => Vary("dotted", false) + " ", _ => "" };
                with = pattern switch { 2 => " with " + Vary("stripes", false), 3 => " with " + Vary("dots", false), _ => "" };
            }
            else
            {
                int shapeWord = WordIndex(), colorWord = WordIndex();
                if (ShapeLexicon.IsHeldOutCombination(shapeWord, colorWord)) colorWord = 1;
                shape = rng.NextDouble() < 0.9 ? Vary(ShapeLexicon.ShapeWords[ShapeVocabulary.Shapes[rng.NextInt(0, ShapeVocabulary.Shapes.Count)]][shapeWord], true) : null;
                color = rng.NextDouble() < 0.85 ? Vary(ShapeLexicon.ColorWords[ShapeVocabulary.Colors[rng.NextInt(0, ShapeVocabulary.Colors.Count)]][colorWord], false) : null;
                pattern = rng.NextInt(0, 4);
                bg = rng.NextDouble() < 0.4 ? Pick(ShapeVocabulary.Backgrounds, ShapeVocabulary.Word) : null;
                var fill = pattern switch { 1 => FillPattern.Plain, 2 => FillPattern.Striped, 3 => FillPattern.Dotted, _ => (FillPattern?)null };
                int patternWord = WordIndex();
                adjective = fill is { } a ? Vary(ShapeLexicon.PatternWords[a][patternWord], false) + " " : "";
                with = fill is { } n && ShapeLexicon.PatternNouns.TryGetValue(n, out var nouns) ? " with " + Vary(nouns[patternWord], false) : "";
            }
            string noun = shape ?? "shape";
            string colorAdj = color is null ? "" : color + " ";
            string onBg = bg is null ? "" : $" on a {bg} background";
            string text = rng.NextInt(0, 7) switch
            {
                0 or 1 => $"a {adjective}{colorAdj}{noun}{onBg}",
                2 => $"a {colorAdj}{noun}{with}{onBg}",
                3 => $"a {adjective}{noun} that is {color ?? Word()}{onBg}",
                4 => TextEdits.Bury($"a {adjective}{colorAdj}{noun}", rng.NextInt(0, 3), rng.NextInt(0, 5), rng,
                    rng.NextDouble() < 0.5 ? TextEdits.DefaultFillers : Enumerable.Range(0, 16).Select(_ => Word()).ToArray()),
                5 => string.Join(", ", new[] { color, noun, adjective.Trim(), bg is null ? null : "on " + bg }.Where(s => !string.IsNullOrEmpty(s))),
                _ => $"{noun}, {noun} {colorAdj}{noun}",
            };
            prompts.Add(text.Replace("  ", " ").Trim());
        }
        return prompts;
    }

    private static ShapePrompt RandomIntent(SeededRandom rng) => new(
        ShapeVocabulary.Shapes[rng.NextInt(0, ShapeVocabulary.Shapes.Count)],
        rng.NextDouble() < 0.85 ? ShapeVocabulary.Colors[rng.NextInt(0, ShapeVocabulary.Colors.Count)] : null,
        rng.NextDouble() < 0.75 ? ShapeVocabulary.Patterns[rng.NextInt(0, ShapeVocabulary.Patterns.Count)] : null,
        rng.NextDouble() < 0.5 ? ShapeVocabulary.Backgrounds[rng.NextInt(0, ShapeVocabulary.Backgrounds.Count)] : null);

    /// <summary>
    /// Candidate prompts for active labelling (<c>spm gate fit --mine</c>): half are <see cref="Prompts"/> at
    /// <paramref name="seed"/>; the other half are the evaluation's own phrasing generators at that seed, split evenly
    /// between the concepts: prompts of the concept's near neighbours written with unknown words (plurals and typos of
    /// the other values: "a ttriangle", "a dotted oorange star") and with synonyms, and the concept itself re-phrased.
    /// Those are where a gate fitted on <see cref="Prompts"/> alone opens wrongly: a typo that splits into a one-letter
    /// token and a real word leaves, at the letter, a causal state the probe cannot tell from the start of the concept's
    /// own typos. The evaluation uses other seeds, so its prompts stay unseen.
    /// </summary>
    /// <param name="concepts">The concepts mined for ("circle", "red", "striped").</param>
    /// <param name="count">Candidates in all.</param>
    /// <param name="seed">Seed; give one the evaluation does not use.</param>
    /// <param name="vocabulary">Vocabulary words for <see cref="Prompts"/>.</param>
    /// <param name="synonymShare">As for <see cref="Prompts"/>.</param>
    public static IReadOnlyList<string> MiningCandidates(IReadOnlyList<string> concepts, int count, ulong seed, IReadOnlyList<string> vocabulary, double synonymShare = 0)
    {
        ArgumentNullException.ThrowIfNull(concepts);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        var targets = concepts.Select(EvalConcept.Parse).ToList();
        if (targets.Count == 0) return Prompts(count, seed, vocabulary, synonymShare);
        var list = new List<string>(count);
        int perConcept = count / 2 / targets.Count;
        list.AddRange(Prompts(count - perConcept * targets.Count, seed, vocabulary, synonymShare));
        for (int c = 0; c < targets.Count; c++)
        {
            ulong s = unchecked(seed * 0x9E37_79B9_7F4A_7C15UL + (ulong)c * 0x1000_0003UL);
            int unknown = perConcept / 2, synonyms = perConcept / 4, rephrased = perConcept - unknown - synonyms;
            list.AddRange(ShapePhrasings.NearNeighbours([targets[c]], unknown, s ^ 0x554EUL, [PhrasingKind.Plural, PhrasingKind.Typo]).Select(p => p.Text));
            list.AddRange(ShapePhrasings.NearNeighbours([targets[c]], synonyms, s ^ 0x5359UL, [PhrasingKind.Synonym]).Select(p => p.Text));
            list.AddRange(ShapePhrasings.Targets(targets[c], rephrased, s ^ 0x5245UL).Select(p => p.Text));
        }
        return list;
    }
}
