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

    /// <summary><paramref name="count"/> prompts, deterministic from <paramref name="seed"/>; <paramref name="vocabulary"/> supplies the random words.</summary>
    public static IReadOnlyList<string> Prompts(int count, ulong seed, IReadOnlyList<string> vocabulary)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentNullException.ThrowIfNull(vocabulary);
        if (vocabulary.Count == 0) throw new ArgumentException("No vocabulary words.", nameof(vocabulary));
        var rng = new SeededRandom(seed ^ 0x6A7E_DA7AUL);
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
            if (rng.NextDouble() < PhrasingShare)
            {
                var attribute = attributes[rng.NextInt(0, attributes.Length)];
                var intent = new ShapePrompt(
                    ShapeVocabulary.Shapes[rng.NextInt(0, ShapeVocabulary.Shapes.Count)],
                    ShapeVocabulary.Colors[rng.NextInt(0, ShapeVocabulary.Colors.Count)],
                    attribute == Evaluation.ConceptAttribute.Pattern || rng.NextDouble() < 0.6 ? ShapeVocabulary.Patterns[rng.NextInt(0, ShapeVocabulary.Patterns.Count)] : null,
                    rng.NextDouble() < 0.5 ? ShapeVocabulary.Backgrounds[rng.NextInt(0, ShapeVocabulary.Backgrounds.Count)] : null);
                var kinds = Enum.GetValues<PhrasingKind>();
                prompts.Add(ShapePhrasings.Phrase(intent, kinds[rng.NextInt(0, kinds.Length)], attribute, rng));
                continue;
            }
            string? shape = rng.NextDouble() < 0.9 ? Vary(Pick(ShapeVocabulary.Shapes, ShapeVocabulary.Word), true) : null;
            string? color = rng.NextDouble() < 0.85 ? Vary(Pick(ShapeVocabulary.Colors, ShapeVocabulary.Word), false) : null;
            int pattern = rng.NextInt(0, 4); // none, plain, striped, dotted
            string? bg = rng.NextDouble() < 0.4 ? Pick(ShapeVocabulary.Backgrounds, ShapeVocabulary.Word) : null;
            string noun = shape ?? "shape";
            string adjective = pattern switch { 1 => Vary("plain", false) + " ", 2 => Vary("striped", false) + " ", 3 => Vary("dotted", false) + " ", _ => "" };
            string with = pattern switch { 2 => " with " + Vary("stripes", false), 3 => " with " + Vary("dots", false), _ => "" };
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
}
