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
        var tally = new FidelityTally();
        for (int i = 0; i < count; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var prompt = prompts[i];
            var image = source(prompt, cancellationToken);
            int expected = 3 * imageSize * imageSize;
            if (image is null || image.Length != expected)
                throw new Spm.Core.SpmException($"The image source returned {image?.Length ?? 0} values for \"{prompt.Text}\", expected {expected} (3 x {imageSize} x {imageSize}).");
            tally.Add(prompt.Prompt, evaluator.Evaluate(image, imageSize));
            progress?.Report(new EvalProgress(i + 1, count, "fidelity"));
        }
        return tally.Result();
    }

    /// <summary>
    /// Judges pictures against the scenes they show (every attribute named): how much of each scene survives a
    /// round trip, say through an autoencoder, before any model is asked to draw it.
    /// </summary>
    /// <param name="pictures">Each scene with its planar RGB picture in [0, 1] of side <paramref name="imageSize"/>.</param>
    /// <param name="imageSize">Side of the pictures.</param>
    /// <param name="evaluator">The judge (default options when null).</param>
    public static FidelityResult MeasureScenes(IEnumerable<(ShapeScene Scene, float[] Picture)> pictures, int imageSize = 64, ShapeEvaluator? evaluator = null)
    {
        ArgumentNullException.ThrowIfNull(pictures);
        evaluator ??= new ShapeEvaluator();
        var tally = new FidelityTally();
        foreach (var (scene, picture) in pictures)
            tally.Add(new ShapePrompt(scene.Shape, scene.Color, scene.Pattern, scene.Background), evaluator.Evaluate(picture, imageSize));
        if (tally.Images == 0) throw new ArgumentException("At least one picture is needed.", nameof(pictures));
        return tally.Result();
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
}

/// <summary>Counts judgements against what was asked, per attribute, into a <see cref="FidelityResult"/>.</summary>
internal sealed class FidelityTally
{
    private int shape, color, colorNamed, pattern, patternNamed, background, backgroundNamed, found;
    private readonly AttributeConfusion shapes = AttributeConfusion.Empty("shape", ShapeVocabulary.Shapes, ShapeVocabulary.Word);
    private readonly AttributeConfusion colors = AttributeConfusion.Empty("colour", ShapeVocabulary.Colors, ShapeVocabulary.Word);
    private readonly AttributeConfusion patterns = AttributeConfusion.Empty("pattern", ShapeVocabulary.Patterns, ShapeVocabulary.Word);
    private readonly AttributeConfusion backgrounds = AttributeConfusion.Empty("background", ShapeVocabulary.Backgrounds, ShapeVocabulary.Word);

    /// <summary>Judgements counted so far.</summary>
    public int Images { get; private set; }

    /// <summary>Counts one judgement of a picture asked for as <paramref name="asked"/>.</summary>
    public void Add(ShapePrompt asked, ShapeJudgement j)
    {
        Images++;
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
    }

    /// <summary>The rates and confusion matrices of everything counted.</summary>
    public FidelityResult Result()
    {
        static double Rate(int hits, int of) => of == 0 ? double.NaN : hits / (double)of;
        return new FidelityResult(Images, Rate(shape, Images), Rate(color, colorNamed), Rate(pattern, patternNamed), Rate(background, backgroundNamed), Rate(found, Images))
        {
            Confusion = [shapes, colors, patterns, backgrounds],
        };
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
