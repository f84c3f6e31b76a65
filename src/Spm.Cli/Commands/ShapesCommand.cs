using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Spm.Cli.Rendering;
using Spm.Core.IO;
using Spm.Shapes.Evaluation;
using Spm.Shapes.World;
using Spm.Training.LatentAnchoring;

namespace Spm.Cli.Commands;

/// <summary>
/// <c>spm shapes render|judge|pairs</c>: the tiny-shapes world from the command line. <c>render</c> writes random
/// captioned pictures (a data set, and a contact sheet); <c>judge</c> reads pictures back with the evaluator;
/// <c>pairs</c> writes the erasure pairs of a concept for <c>spm train --pairs</c>.
/// </summary>
internal static class ShapesCommand
{
    public static Command Create(CliConsole console)
    {
        var cmd = new Command("shapes", "The tiny-shapes world: render captioned pictures, or judge pictures with the evaluator.");
        cmd.Subcommands.Add(CreateRender(console));
        cmd.Subcommands.Add(CreateJudge(console));
        cmd.Subcommands.Add(CreatePairs(console));
        return cmd;
    }

    private static Command CreatePairs(CliConsole console)
    {
        var concept = new Option<string>("--concept") { Description = "The concept to erase (a tiny-shapes word: circle, red, striped...).", Required = true };
        var surrogate = new Option<string>("--surrogate") { Description = "Another value of the same attribute the concept is erased towards (square, blue, plain...).", Required = true };
        var output = new Option<string>("--out") { Description = "Pair file to write (TARGET => SURROGATE lines, for spm train --pairs).", Required = true };
        var force = new Option<bool>("--force") { Description = "Overwrite an existing file." };
        var cmd = new Command("pairs", "Write erasure pairs for spm train --pairs: every caption naming the concept (each combination of the other attributes, each value or left open) with the same caption naming the surrogate.") { concept, surrogate, output, force };
        cmd.SetAction((parse, ct) =>
        {
            var c = EvalConcept.Parse(parse.GetValue(concept)!);
            var s = EvalConcept.Parse(parse.GetValue(surrogate)!);
            var pairs = ShapePairs.For(c, s);
            var path = parse.GetValue(output)!;
            var text = $"# spm shapes pairs --concept {c.Name} --surrogate {s.Name}: {pairs.Count} pairs\n"
                + string.Concat(pairs.Select(p => $"{p.Target} {ErasurePairFile.Arrow} {p.Surrogate}\n"));
            AtomicFile.WriteAllText(path, text, parse.GetValue(force));
            console.Out.WriteLine($"wrote {pairs.Count} pairs to {path}");
            return Task.FromResult(0);
        });
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
