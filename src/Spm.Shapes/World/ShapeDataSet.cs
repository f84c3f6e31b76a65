using System.Globalization;
using System.Text;
using System.Text.Json;
using Spm.Core;
using Spm.Core.IO;
using Spm.Core.Randomness;
using Spm.Training.Evaluation;

namespace Spm.Shapes.World;

/// <summary>
/// A data set of the tiny-shapes world on disk (<c>spm shapes render</c>): pictures <c>NNNNNN.png</c>, one line per picture
/// in <c>captions.jsonl</c> (file, caption, the scene's attributes and geometry) and a contact sheet <c>grid.png</c> of the
/// first 64. The same seed gives the same pictures and captions.
/// </summary>
public static class ShapeDataSet
{
    /// <summary>The most pictures one call writes.</summary>
    public const int MaxCount = 1_000_000;

    /// <summary>
    /// Writes <paramref name="count"/> random captioned pictures of <paramref name="size"/> pixels into
    /// <paramref name="folder"/> (created). Shapes scale with the size (the world's 64-pixel geometry times size / 64).
    /// </summary>
    /// <exception cref="SpmException">A count outside 1..<see cref="MaxCount"/> or a size outside 32..1024.</exception>
    public static void Write(string folder, int count, ulong seed, int size = 64, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(folder);
        if (count is < 1 or > MaxCount) throw new SpmException($"--count must be 1..{MaxCount}, got {count}.");
        if (size is < 32 or > 1024) throw new SpmException($"--size must be 32..1024, got {size}.");
        var scale = size / 64f;
        var world = new ShapeWorld(ShapeWorldOptions.Default with { ImageSize = size, MinSize = 15 * scale, MaxSize = 25 * scale, Margin = 2 * scale });
        var rng = new SeededRandom(seed);
        Directory.CreateDirectory(folder);
        var lines = new StringBuilder();
        var sheet = new List<float[]?>();
        for (int i = 0; i < count; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var sample = world.Sample(rng);
            var image = ShapeRasterizer.Render(sample.Scene, size);
            var file = i.ToString("D6", CultureInfo.InvariantCulture) + ".png";
            ImageGrid.SavePng(Path.Combine(folder, file), image, size, size);
            lines.Append(CaptionLine(file, sample)).Append('\n');
            if (sheet.Count < 64) sheet.Add(image);
        }
        AtomicFile.WriteAllText(Path.Combine(folder, "captions.jsonl"), lines.ToString());
        int columns = Math.Min(8, sheet.Count), rows = (sheet.Count + columns - 1) / columns;
        var (grid, gh, gw) = ImageGrid.Compose(sheet, rows, columns, size, size);
        ImageGrid.SavePng(Path.Combine(folder, "grid.png"), grid, gh, gw);
    }

    /// <summary>One line of <c>captions.jsonl</c>.</summary>
    private static string CaptionLine(string file, ShapeSample sample) => JsonSerializer.Serialize(new
    {
        file,
        caption = sample.Caption,
        shape = ShapeVocabulary.Word(sample.Scene.Shape),
        color = ShapeVocabulary.Word(sample.Scene.Color),
        pattern = ShapeVocabulary.Word(sample.Scene.Pattern),
        background = ShapeVocabulary.Word(sample.Scene.Background),
        centerX = sample.Scene.CenterX,
        centerY = sample.Scene.CenterY,
        size = sample.Scene.Size,
        rotation = sample.Scene.Rotation,
    });
}
