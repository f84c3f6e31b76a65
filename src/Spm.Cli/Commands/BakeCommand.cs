using System.CommandLine;
using System.Globalization;
using Spectre.Console;
using Spm.Diffusion.Membranes;

namespace Spm.Cli.Commands;

/// <summary>
/// <c>spm bake --model DIR|unet.onnx --spm F[:MULT] [--spm G ...] [--multiplier M ...] [--mode merge|branch] --out DIR|FILE [--force] [--allow-partial]</c>:
/// makes membranes permanent so any ONNX runtime can use the erased model.
/// </summary>
internal static class BakeCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Pipeline folder, UNet folder or UNet .onnx file.", Required = true };
        var spm = new Option<string[]>("--spm")
        {
            Description = "SPM file to bake; repeat for several. FILE:MULT sets its multiplier.",
            Required = true,
            AllowMultipleArgumentsPerToken = false,
        };
        var multiplier = new Option<float[]>("--multiplier") { Description = "Multiplier per SPM in --spm order, or one for all (default 1)." };
        var mode = new Option<string>("--mode") { Description = "merge: add the membranes into the weights (plain model); branch: keep constant branches.", DefaultValueFactory = _ => "merge" };
        mode.AcceptOnlyFromAmong("merge", "branch");
        var output = new Option<string>("--out") { Description = "Output folder (for a pipeline folder) or .onnx file.", Required = true };
        var force = new Option<bool>("--force") { Description = "Replace an existing output." };
        var partial = new Option<bool>("--allow-partial") { Description = "Apply the matching layers of an SPM that does not fully fit the model (with a warning)." };
        var cmd = new Command("bake", "Bake SPM membranes into a model: merged into the weights or as constant branches.")
        {
            model, spm, multiplier, mode, output, force, partial,
        };
        cmd.SetAction((parse, ct) =>
        {
            var (paths, inline) = ParseSpms(parse.GetValue(spm) ?? []);
            var given = parse.GetValue(multiplier) ?? [];
            if (given.Length > 0 && inline.Any(m => m is not null))
                throw new ArgumentException("Give multipliers either as FILE:MULT or with --multiplier, not both.");
            IReadOnlyList<float> multipliers = given.Length > 0 ? given : inline.Select(m => m ?? 1f).ToArray();
            var request = new BakeRequest(parse.GetValue(model)!, paths, BakeJob.ExpandMultipliers(multipliers, paths.Count),
                parse.GetValue(mode) == "branch" ? BakeMode.Branch : BakeMode.Merge, parse.GetValue(output)!,
                parse.GetValue(force), parse.GetValue(partial));

            BakeJob.CheckOutput(request);
            BakeResult? result = null;
            // A console per run on stderr: stdout stays machine-readable, and redirected writers are picked up.
            var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
            console.Progress()
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
                .Start(ctx =>
                {
                    var task = ctx.AddTask($"baking ({request.Mode.ToString().ToLowerInvariant()})", maxValue: 1);
                    var progress = new Progress<(int Done, int Total)>(p => { task.MaxValue = p.Total; task.Value = p.Done; });
                    result = BakeJob.Run(request, progress, ct);
                    task.Value = task.MaxValue;
                });
            foreach (var w in result!.Warnings) Console.Error.WriteLine($"spm: warning: {w}");
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"baked {paths.Count} SPM(s) [{string.Join(", ", paths.Select((p, i) => $"{Path.GetFileName(p)} x{request.Multipliers[i]:0.###}"))}] " +
                $"into {result.LayerCount} layers ({request.Mode.ToString().ToLowerInvariant()}) -> {result.OutPath}"));
            return Task.FromResult(0);
        });
        return cmd;
    }

    /// <summary>Splits <c>FILE[:MULT]</c> values; a suffix counts as a multiplier only when it parses as a number.</summary>
    internal static (List<string> Paths, List<float?> Multipliers) ParseSpms(IEnumerable<string> values)
    {
        var paths = new List<string>();
        var mults = new List<float?>();
        foreach (var v in values)
        {
            int colon = v.LastIndexOf(':');
            if (colon > 0 && float.TryParse(v.AsSpan(colon + 1), NumberStyles.Float, CultureInfo.InvariantCulture, out var m) && !File.Exists(v))
            {
                paths.Add(v[..colon]);
                mults.Add(m);
            }
            else
            {
                paths.Add(v);
                mults.Add(null);
            }
        }
        return (paths, mults);
    }
}
