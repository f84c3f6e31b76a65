using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Spm.Cli.Rendering;
using Spm.Shapes.World;

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
        cmd.SetAction((parse, ct) =>
        {
            var folder = parse.GetValue(output)!;
            int n = parse.GetValue(count);
            ShapeDataSet.Write(folder, n, parse.GetValue(seed), parse.GetValue(size), ct);
            console.Out.WriteLine($"wrote {n} pictures, captions.jsonl and grid.png to {folder}");
            return Task.FromResult(0);
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
                var j = evaluator.EvaluateFile(path);
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
