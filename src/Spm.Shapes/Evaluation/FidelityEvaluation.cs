using Spm.Core.Randomness;
using Spm.Shapes.World;

namespace Spm.Shapes.Evaluation;

/// <summary>How faithfully a model draws random captions: per attribute, the share of images read as the caption names it.</summary>
/// <param name="Images">Images made.</param>
/// <param name="ShapeAccuracy">Shape read as named (every caption names the shape).</param>
/// <param name="ColorAccuracy">Colour read as named, over captions naming a colour.</param>
/// <param name="PatternAccuracy">Pattern read as named, over captions naming a pattern.</param>
/// <param name="BackgroundAccuracy">Background read as named, over captions naming one.</param>
/// <param name="FoundObjectRate">Share of images in which any object was found.</param>
public sealed record FidelityResult(int Images, double ShapeAccuracy, double ColorAccuracy, double PatternAccuracy, double BackgroundAccuracy, double FoundObjectRate)
{
    /// <summary>
    /// Per attribute (shape, colour, pattern, background), how each named value was read: what an accuracy below 100 %
    /// is made of (say, orange read as yellow). Objects the evaluator did not find are left out (backgrounds always count).
    /// </summary>
    public IReadOnlyList<AttributeConfusion> Confusion { get; init; } = [];
}

/// <summary>A confusion matrix of one attribute: <c>Counts[i][j]</c> images whose caption named <c>Labels[i]</c> were read as <c>Labels[j]</c>.</summary>
/// <param name="Attribute">"shape", "colour", "pattern" or "background".</param>
/// <param name="Labels">The attribute's values, as caption words.</param>
/// <param name="Counts">Rows: the named value; columns: the value read.</param>
public sealed record AttributeConfusion(string Attribute, IReadOnlyList<string> Labels, IReadOnlyList<int[]> Counts)
{
    /// <summary>Images whose caption named <paramref name="label"/>.</summary>
    public int Named(string label) => Counts[Index(label)].Sum();

    /// <summary>Share of the images naming <paramref name="label"/> that were read as it (NaN when none named it).</summary>
    public double Accuracy(string label)
    {
        int i = Index(label), n = Counts[i].Sum();
        return n == 0 ? double.NaN : Counts[i][i] / (double)n;
    }

    /// <summary>The value most often read instead of <paramref name="label"/> and how often, or null when it was never misread.</summary>
    public (string Label, int Count)? MostCommonMisreading(string label)
    {
        int i = Index(label), best = -1;
        for (int j = 0; j < Labels.Count; j++)
            if (j != i && Counts[i][j] > 0 && (best < 0 || Counts[i][j] > Counts[i][best])) best = j;
        return best < 0 ? null : (Labels[best], Counts[i][best]);
    }

    private int Index(string label)
    {
        for (int i = 0; i < Labels.Count; i++) if (Labels[i] == label) return i;
        throw new ArgumentException($"'{label}' is not a {Attribute} (one of {string.Join(", ", Labels)}).", nameof(label));
    }

    internal static AttributeConfusion Empty<T>(string attribute, IReadOnlyList<T> values, Func<T, string> word)
        => new(attribute, values.Select(word).ToArray(), values.Select(_ => new int[values.Count]).ToArray());
}

/// <summary>Measures a model's fidelity to random tiny-shapes captions (the training caption distribution).</summary>
public static class FidelityEvaluation
{
    /// <summary>Generates <paramref name="count"/> images for random captions and reads them back.</summary>
    public static FidelityResult Measure(
        ImageSource source, int count, ulong seed, int imageSize = 64, ShapeEvaluator? evaluator = null,
        IProgress<EvalProgress>? progress = null, CancellationToken cancellationToken = default, PromptWording wording = PromptWording.Canonical)
    {
        ArgumentNullException.ThrowIfNull(source);
        if (count < 1) throw new ArgumentOutOfRangeException(nameof(count), "At least one image is needed.");
        evaluator ??= new ShapeEvaluator();
        var prompts = Prompts(count, seed, wording);
        int shape = 0, color = 0, colorNamed = 0, pattern = 0, patternNamed = 0, background = 0, backgroundNamed = 0, found = 0;
        var shapes = AttributeConfusion.Empty("shape", ShapeVocabulary.Shapes, ShapeVocabulary.Word);
        var colors = AttributeConfusion.Empty("colour", ShapeVocabulary.Colors, ShapeVocabulary.Word);
        var patterns = AttributeConfusion.Empty("pattern", ShapeVocabulary.Patterns, ShapeVocabulary.Word);
        var backgrounds = AttributeConfusion.Empty("background", ShapeVocabulary.Backgrounds, ShapeVocabulary.Word);
        for (int i = 0; i < count; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var prompt = prompts[i];
            var asked = prompt.Prompt;
            var image = source(prompt, cancellationToken);
            int expected = 3 * imageSize * imageSize;
            if (image is null || image.Length != expected)
                throw new Spm.Core.SpmException($"The image source returned {image?.Length ?? 0} values for \"{prompt.Text}\", expected {expected} (3 x {imageSize} x {imageSize}).");
            var j = evaluator.Evaluate(image, imageSize);
            if (j.FoundObject) found++;
            if (j.FoundObject && j.Shape.Value == asked.Shape) shape++;
            Tally(asked.Color, j.Color.Value, ref color, ref colorNamed, j.FoundObject);
            Tally(asked.Pattern, j.Pattern.Value, ref pattern, ref patternNamed, j.FoundObject);
            Tally(asked.Background, j.Background.Value, ref background, ref backgroundNamed, true);
            if (j.FoundObject)
            {
                Count(shapes, asked.Shape, j.Shape.Value);
                Count(colors, asked.Color, j.Color.Value);
                Count(patterns, asked.Pattern, j.Pattern.Value);
            }
            Count(backgrounds, asked.Background, j.Background.Value);
            progress?.Report(new EvalProgress(i + 1, count, "fidelity"));
        }
        static double Rate(int hits, int of) => of == 0 ? double.NaN : hits / (double)of;
        return new FidelityResult(count, Rate(shape, count), Rate(color, colorNamed), Rate(pattern, patternNamed), Rate(background, backgroundNamed), Rate(found, count))
        {
            Confusion = [shapes, colors, patterns, backgrounds],
        };
    }

    /// <summary>
    /// The random training-style captions (with their generation seeds) <see cref="Measure"/> asks for, in order, at
    /// any image size, so a caller can generate the images ahead in batches.
    /// </summary>
    /// <param name="count">How many captions.</param>
    /// <param name="seed">Seed of the captions and image seeds.</param>
    /// <param name="wording">Canonical: the basic training captions (models v1-v3); synonyms or held-out: the same intents
    /// and seeds re-worded (<see cref="EvalPromptSets.Word"/>).</param>
    public static IReadOnlyList<EvalPrompt> Prompts(int count, ulong seed, PromptWording wording = PromptWording.Canonical)
    {
        if (count < 1) throw new ArgumentOutOfRangeException(nameof(count), "At least one image is needed.");
        // Captions and seeds do not depend on the image size (geometry draws are scaled, not added), so the
        // default world serves every size, including sizes too small to place the world's shapes in.
        var world = new ShapeWorld();
        var rng = new SeededRandom(seed ^ 0xF1DE_11E7UL);
        var prompts = new EvalPrompt[count];
        for (int i = 0; i < count; i++)
        {
            var sample = world.Sample(rng);
            ulong imageSeed = rng.NextUInt64();
            prompts[i] = new EvalPrompt(sample.Prompt, wording == PromptWording.Canonical ? sample.Caption : EvalPromptSets.Word(sample.Prompt, wording, imageSeed), imageSeed);
        }
        return prompts;
    }

    private static void Count<T>(AttributeConfusion confusion, T? named, T read) where T : struct, Enum
    {
        // The attribute enums run 0..n-1 in declaration order, the order ShapeVocabulary lists (and Labels holds) them.
        if (named is { } value) confusion.Counts[Convert.ToInt32(value)][Convert.ToInt32(read)]++;
    }

    private static void Tally<T>(T? named, T read, ref int hits, ref int total, bool found) where T : struct, Enum
    {
        if (named is not { } value) return;
        total++;
        if (found && EqualityComparer<T>.Default.Equals(value, read)) hits++;
    }
}
