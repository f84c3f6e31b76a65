using System.CommandLine;
using System.Globalization;
using Spectre.Console;
using Spm.Core;
using Spm.Core.Library;
using Spm.Diffusion.Membranes;

using Spm.Cli.Rendering;

namespace Spm.Cli.Commands;

/// <summary>
/// <c>spm bake --model DIR|unet.onnx --spm F[:MULT] [--spm G ...] [--multiplier M ...] [--mode merge|branch] --out DIR|FILE [--force] [--allow-partial]</c>:
/// makes membranes permanent so any ONNX runtime can use the erased model.
/// </summary>
internal static class BakeCommand
{
    public static Command Create(CliConsole console)
    {
        var model = new Option<string>("--model") { Description = "Pipeline folder, UNet folder or UNet .onnx file, or ORG/NAME in the local Hugging Face cache.", Required = true };
        var spm = new Option<string[]>("--spm")
        {
            Description = $"SPM to bake, repeat for several: {SpmFileArgument.Syntax.Replace("fixes the gate", "is the strength baked in", StringComparison.Ordinal)}.",
            AllowMultipleArgumentsPerToken = false,
        };
        var library = new Option<string?>("--library") { Description = "Bake every SPM of a concept library (spm library), in index order (with or instead of --spm)." };
        var multiplier = new Option<float[]>("--multiplier") { Description = "Multiplier per SPM in --spm order, or one for all (default 1)." };
        var mode = new Option<string>("--mode") { Description = "merge: add the membranes into the weights (plain model); branch: keep constant branches.", DefaultValueFactory = _ => "merge" };
        mode.AcceptOnlyFromAmong("merge", "branch");
        var output = new Option<string>("--out") { Description = "Output folder (for a pipeline folder) or .onnx file.", Required = true };
        var force = new Option<bool>("--force") { Description = "Replace an existing output." };
        var partial = new Option<bool>("--allow-partial") { Description = "Apply the matching layers of an SPM that does not fully fit the model (with a warning)." };
        var cmd = new Command("bake", "Bake SPM membranes into a model: merged into the weights or as constant branches.")
        {
            model, spm, library, multiplier, mode, output, force, partial,
        };
        cmd.SetAction((parse, ct) =>
        {
            // A folder, a file, or ORG/NAME in the local Hugging Face cache.
            var modelPath = Spm.Diffusion.Pipelines.DefaultModel.Resolve(parse.GetValue(model)!);
            var files = SpmFileArgument.ParseAll(parse.GetValue(spm) ?? [], Directory.Exists(modelPath) ? modelPath : null).ToList();
            if (parse.GetValue(library) is { } libDir)
            {
                var lib = SpmLibrary.Open(libDir);
                if (lib.Entries.Count == 0) throw new SpmException($"Library '{lib.Directory}' is empty: nothing to bake.");
                files.AddRange(lib.Entries.Select(e => new SpmFileArgument(lib.PathOf(e), null)));
            }
            if (files.Count == 0) throw new SpmException("Give the SPMs to bake: --spm FILE (repeatable) and/or --library DIR.");
            var paths = files.Select(f => f.Path).ToList();
            var inline = files.Select(f => f.Multiplier).ToList();
            var given = parse.GetValue(multiplier) ?? [];
            if (given.Length > 0 && inline.Any(m => m is not null))
                throw new ArgumentException("Give multipliers either as FILE:MULT or with --multiplier, not both.");
            IReadOnlyList<float> multipliers = given.Length > 0 ? given : inline.Select(m => m ?? 1f).ToArray();
            var request = new BakeRequest(modelPath, paths, BakeJob.ExpandMultipliers(multipliers, paths.Count),
                parse.GetValue(mode) == "branch" ? BakeMode.Branch : BakeMode.Merge, parse.GetValue(output)!,
                parse.GetValue(force), parse.GetValue(partial));

            BakeJob.CheckOutput(request);
            BakeResult? result = null;
            // The bar goes to stderr, so stdout stays machine-readable.
            console.Messages.Progress()
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
                .Start(ctx =>
                {
                    var task = ctx.AddTask($"baking ({request.Mode.ToString().ToLowerInvariant()})", maxValue: 1);
                    var progress = new ActionProgress<(int Done, int Total)>(p => { task.MaxValue = p.Total; task.Value = p.Done; });
                    result = BakeJob.Run(request, progress, ct);
                    task.Value = task.MaxValue;
                });
            foreach (var w in result!.Warnings) console.Error.WriteLine($"spm: warning: {w}");
            console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"baked {paths.Count} SPM(s) [{string.Join(", ", paths.Select((p, i) => $"{Path.GetFileName(p)} x{request.Multipliers[i]:0.###}"))}] " +
                $"into {result.LayerCount} layers ({request.Mode.ToString().ToLowerInvariant()}) -> {result.OutPath}"));
            return Task.FromResult(0);
        });
        return cmd;
    }
}
