using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Spectre.Console;
using Spm.Benchmarks;
using Spm.Core.IO;
using Spm.Diffusion.Pipelines;

using Spm.Cli.Rendering;

namespace Spm.Cli.Commands;

/// <summary>
/// <c>spm bench gate --spms N</c>: per-prompt routing time of a synthetic N-SPM library on a model's text encoder, with
/// the encoder excluded and included, as a ratio to the per-SPM gate loop measured in the same run
/// (<see cref="GateBenchmark"/>).
/// </summary>
internal static class GateBenchCommand
{
    public static Command Create(CliConsole console)
    {
        var model = new Option<string?>("--model") { Description = CliGlobals.ModelHelp };
        var spms = new Option<int>("--spms") { Description = "Synthetic SPMs in the library.", DefaultValueFactory = _ => 1000 }.InRange(1, 1_000_000);
        var prompts = new Option<int>("--prompts") { Description = "Prompts routed per round.", DefaultValueFactory = _ => 16 }.InRange(1, 10_000);
        var rounds = new Option<int>("--rounds") { Description = "Measured rounds (after a warm-up round).", DefaultValueFactory = _ => 5 }.InRange(1, 10_000);
        var learned = new Option<double>("--learned-fraction") { Description = "Share of SPMs with a learned gate probe (0 to 1).", DefaultValueFactory = _ => 0.5 }.InRange(0.0, 1.0);
        var topK = new Option<int?>("--route-top-k") { Description = "Route at most this many SPMs per prompt." }.InRange(0, int.MaxValue);
        var json = new Option<string?>("--json") { Description = "Also write the figures as one JSON object to this file." };
        var force = new Option<bool>("--force") { Description = "Overwrite the --json file." };
        var cmd = new Command("gate", "Routing time per prompt for a synthetic N-SPM library (text encoder excluded and included) against the per-SPM gate loop.")
        {
            model, spms, prompts, rounds, learned, topK, json, force,
        };
        cmd.SetAction(async (parse, ct) =>
        {
            var folder = DefaultModel.Resolve(parse.GetValue(model));
            var jsonPath = parse.GetValue(json);
            if (jsonPath is not null && !parse.GetValue(force) && File.Exists(jsonPath))
                throw new IOException($"'{jsonPath}' already exists (use --force to overwrite).");
            var options = new GateBenchmarkOptions(parse.GetValue(spms), parse.GetValue(prompts), parse.GetValue(rounds), parse.GetValue(learned), TopK: parse.GetValue(topK));
            using var pipeline = StableDiffusionPipeline.Load(folder, new PipelineOptions());
            var r = await ProgressBars.RunAsync(console, "bench gate", options.Spms + options.Rounds + 1, "step",
                bar => Task.Run(() => GateBenchmark.Run(pipeline, options, new ActionProgress<int>(i => bar.Report(new ProgressUpdate(i))), ct), ct));
            var node = r.ToJson(pipeline.Folder.Name, options);
            if (jsonPath is not null)
            {
                AtomicFile.WriteAllText(jsonPath, node.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n", parse.GetValue(force));
                console.Error.WriteLine($"spm: bench gate: wrote {jsonPath}");
            }
            string F(double v, string fmt = "0.000") => v.ToString(fmt, CultureInfo.InvariantCulture);
            var table = new Table().AddColumn("way").AddColumn(new TableColumn("median per prompt").RightAligned()).AddColumn(new TableColumn("ratio to the per-SPM loop").RightAligned());
            table.AddRow("per-SPM gate loop (baseline, encoder excluded)", F(r.PerSpmLoopMs) + " ms", "1.000");
            table.AddRow("batched route, encoder excluded", F(r.RouteMs) + " ms", F(r.RouteMs / r.PerSpmLoopMs, "0.0000") + $" ({F(r.Speedup, "0.0")}x faster; target <= 10 ms at 1,000 SPMs)");
            table.AddRow("batched route, encoder included", F(r.RouteWithEncoderMs) + " ms", "");
            table.AddRow("text encoder alone", F(r.EncodeMs) + " ms", "");
            console.Output.Write(table);
            console.Out.WriteLine(Markup.Escape(FormattableString.Invariant(
                $"{r.Spms} SPMs ({r.LearnedSpms} learned gates batched), {options.Prompts} prompts x {options.Rounds} rounds, {r.MeanRouted:0.0} routed per prompt, subsets differing from the per-SPM loop: {r.SubsetMismatches}, setup {r.SetupSeconds:0.0} s, model {pipeline.Folder.Name}")));
            return r.SubsetMismatches == 0 ? ExitCodes.Ok : ExitCodes.RuntimeFailure;
        });
        return cmd;
    }
}
