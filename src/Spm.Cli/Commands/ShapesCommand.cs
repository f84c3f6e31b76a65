using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Spm.Core;
using Spm.Core.IO;
using Spm.Core.Randomness;
using Spm.Shapes.World;
using Spm.Training.Evaluation;

using Spm.Cli.Rendering;

namespace Spm.Cli.Commands;

/// <summary>
/// <c>spm shapes render|judge</c>: the tiny-shapes world from the command line. <c>render</c> writes random
/// captioned pictures (a data set, and a contact sheet); <c>judge</c> reads pictures back with the evaluator.
/// </summary>
internal static class ShapesCommand
{
    public static Command Create(CliConsole console)
    {
        var cmd = new Command("shapes", "The tiny-shapes world: render captioned pictures, or judge pictures with the evaluator.");
        cmd.Subcommands.Add(CreateRender(console));
        cmd.Subcommands.Add(CreateJudge(console));
        return cmd;
    }

    private static Command CreateRender(CliConsole console)
    {
        var count = new Option<int>("--count") { Description = "How many pictures.", DefaultValueFactory = _ => 16 };
        var seed = new Option<ulong>("--seed") { Description = "Random seed (same seed, same pictures and captions).", DefaultValueFactory = _ => 0UL };
        var output = new Option<string>("--out") { Description = "Output folder (created).", Required = true };
        var size = new Option<int>("--size") { Description = "Image side in pixels.", DefaultValueFactory = _ => 64 };
        var cmd = new Command("render", "Write random pictures NNNNNN.png, captions.jsonl (file, caption, scene) and grid.png.") { count, seed, output, size };
        cmd.SetAction(parse =>
        {
            int n = parse.GetValue(count), s = parse.GetValue(size);
            if (n is < 1 or > 1_000_000) throw new SpmException($"--count must be 1..1000000, got {n}.");
            if (s is < 32 or > 1024) throw new SpmException($"--size must be 32..1024, got {s}.");
            var folder = parse.GetValue(output)!;
            var scale = s / 64f;
            var world = new ShapeWorld(ShapeWorldOptions.Default with { ImageSize = s, MinSize = 15 * scale, MaxSize = 25 * scale, Margin = 2 * scale });
            var rng = new SeededRandom(parse.GetValue(seed));
            Directory.CreateDirectory(folder);
            var lines = new StringBuilder();
            var sheet = new List<float[]?>();
            for (int i = 0; i < n; i++)
            {
                var sample = world.Sample(rng);
                var image = ShapeRasterizer.Render(sample.Scene, s);
                var file = i.ToString("D6", CultureInfo.InvariantCulture) + ".png";
                ImageGrid.SavePng(Path.Combine(folder, file), image, s, s);
                lines.Append(JsonSerializer.Serialize(new
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
                })).Append('\n');
                if (sheet.Count < 64) sheet.Add(image);
            }
            AtomicFile.WriteAllText(Path.Combine(folder, "captions.jsonl"), lines.ToString());
            int columns = Math.Min(8, sheet.Count), rows = (sheet.Count + columns - 1) / columns;
            var (grid, gh, gw) = ImageGrid.Compose(sheet, rows, columns, s, s);
            ImageGrid.SavePng(Path.Combine(folder, "grid.png"), grid, gh, gw);
            console.Out.WriteLine($"wrote {n} pictures, captions.jsonl and grid.png to {folder}");
            return 0;
        });
        return cmd;
    }

    private static Command CreateJudge(CliConsole console)
    {
        var files = new Argument<string[]>("images") { Description = "PNG files (any size from 16x16; RGB).", Arity = ArgumentArity.OneOrMore };
        var json = new Option<bool>("--json") { Description = "One JSON object per line instead of a table." };
        var cmd = new Command("judge", "Name the shape, colour, pattern and background of pictures, with confidences.") { files, json };
        cmd.SetAction(parse =>
        {
            var evaluator = new ShapeEvaluator();
            bool asJson = parse.GetValue(json);
            foreach (var path in parse.GetValue(files)!)
            {
                if (!File.Exists(path)) throw new SpmException($"'{path}': no such file.");
                float[] image;
                int h, w;
                try
                {
                    (image, h, w) = ImageGrid.LoadRgb(path);
                }
                catch (Exception e) when (e is SixLabors.ImageSharp.ImageFormatException or SixLabors.ImageSharp.UnknownImageFormatException or InvalidDataException)
                {
                    throw new SpmFormatException(path, null, "not a readable image: " + e.Message, e);
                }
                if (h < 16 || w < 16 || h > 4096 || w > 4096) throw new SpmFormatException(path, null, $"image is {w}x{h}; the evaluator needs 16..4096 pixels per side.");
                var j = evaluator.Evaluate(image, h, w);
                console.Out.WriteLine(asJson ? ToJson(path, j) : ToLine(path, j));
            }
            return 0;
        });
        return cmd;
    }

    internal static string ToLine(string path, ShapeJudgement j)
    {
        static string P(float c) => c.ToString("F2", CultureInfo.InvariantCulture);
        if (!j.FoundObject) return $"{path}: nothing found on {ShapeVocabulary.Word(j.Background.Value)} ({P(j.Background.Confidence)})";
        return $"{path}: {ShapeVocabulary.Word(j.Pattern.Value)} ({P(j.Pattern.Confidence)}) {ShapeVocabulary.Word(j.Color.Value)} ({P(j.Color.Confidence)}) "
            + $"{ShapeVocabulary.Word(j.Shape.Value)} ({P(j.Shape.Confidence)}) on {ShapeVocabulary.Word(j.Background.Value)} ({P(j.Background.Confidence)})";
    }

    internal static string ToJson(string path, ShapeJudgement j) => JsonSerializer.Serialize(new
    {
        file = path,
        found = j.FoundObject,
        shape = j.FoundObject ? ShapeVocabulary.Word(j.Shape.Value) : null,
        shapeConfidence = j.Shape.Confidence,
        color = j.FoundObject ? ShapeVocabulary.Word(j.Color.Value) : null,
        colorConfidence = j.Color.Confidence,
        pattern = j.FoundObject ? ShapeVocabulary.Word(j.Pattern.Value) : null,
        patternConfidence = j.Pattern.Confidence,
        background = ShapeVocabulary.Word(j.Background.Value),
        backgroundConfidence = j.Background.Confidence,
    });
}
