using Spm.Core.Randomness;
using Spm.Training.Shapes;

namespace Spm.Training.Evaluation;

/// <summary>How faithfully a model draws random captions: per attribute, the share of images read as the caption names it.</summary>
/// <param name="Images">Images made.</param>
/// <param name="ShapeAccuracy">Shape read as named (every caption names the shape).</param>
/// <param name="ColorAccuracy">Colour read as named, over captions naming a colour.</param>
/// <param name="PatternAccuracy">Pattern read as named, over captions naming a pattern.</param>
/// <param name="BackgroundAccuracy">Background read as named, over captions naming one.</param>
/// <param name="FoundObjectRate">Share of images in which any object was found.</param>
public sealed record FidelityResult(int Images, double ShapeAccuracy, double ColorAccuracy, double PatternAccuracy, double BackgroundAccuracy, double FoundObjectRate);

/// <summary>Measures a model's fidelity to random tiny-shapes captions (the training caption distribution).</summary>
public static class FidelityEvaluation
{
    /// <summary>Generates <paramref name="count"/> images for random captions and reads them back.</summary>
    public static FidelityResult Measure(
        ImageSource source, int count, ulong seed, int imageSize = 64, ShapeEvaluator? evaluator = null,
        IProgress<EvalProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(source);
        if (count < 1) throw new ArgumentOutOfRangeException(nameof(count), "At least one image is needed.");
        evaluator ??= new ShapeEvaluator();
        var prompts = Prompts(count, seed);
        int shape = 0, color = 0, colorNamed = 0, pattern = 0, patternNamed = 0, background = 0, backgroundNamed = 0, found = 0;
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
            progress?.Report(new EvalProgress(i + 1, count, "fidelity"));
        }
        static double Rate(int hits, int of) => of == 0 ? double.NaN : hits / (double)of;
        return new FidelityResult(count, Rate(shape, count), Rate(color, colorNamed), Rate(pattern, patternNamed), Rate(background, backgroundNamed), Rate(found, count));
    }

    /// <summary>
    /// The random training-style captions (with their generation seeds) <see cref="Measure"/> asks for, in order, at
    /// any image size, so a caller can generate the images ahead in batches.
    /// </summary>
    public static IReadOnlyList<EvalPrompt> Prompts(int count, ulong seed)
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
            prompts[i] = new EvalPrompt(sample.Prompt, sample.Caption, rng.NextUInt64());
        }
        return prompts;
    }

    private static void Tally<T>(T? named, T read, ref int hits, ref int total, bool found) where T : struct, Enum
    {
        if (named is not { } value) return;
        total++;
        if (found && EqualityComparer<T>.Default.Equals(value, read)) hits++;
    }
}
