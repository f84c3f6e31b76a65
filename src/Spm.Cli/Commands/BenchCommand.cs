using Spm.Benchmarks;
using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Spectre.Console;
using Spm.Cli.Rendering;
using Spm.Diffusion.Pipelines;
using Spm.Diffusion.Runtime;

namespace Spm.Cli.Commands;

/// <summary>
/// <c>spm bench &lt;what&gt;</c>: benchmarks that report ratios against a baseline measured in the same run.
/// Adding a benchmark = a <c>Command</c> factory plus one line in <see cref="Benchmarks"/>.
/// </summary>
internal static class BenchCommand
{
    public static Command Create(CliConsole console)
    {
        var cmd = new Command("bench", "Benchmarks (ratios to a baseline measured in the same run).");
        foreach (var b in Benchmarks(console)) cmd.Subcommands.Add(b);
        return cmd;
    }

    private static IEnumerable<Command> Benchmarks(CliConsole console)
    {
        yield return PipelineBench(console);
        yield return TrainStepBenchCommand.Create(console);
        yield return TrainBenchCommand.Create(console);
        yield return GraphBuildBenchCommand.Create(console);
        yield return InjectionBenchCommand.Create(console);
        yield return EvalBenchCommand.Create(console);
        yield return GateBenchCommand.Create(console);
    }

    /// <summary><c>spm bench pipeline</c>: it/s of generation and the share of time outside the three models.</summary>
    private static Command PipelineBench(CliConsole console)
    {
        var model = new Option<string?>("--model") { Description = CliGlobals.ModelHelp };
        var steps = new Option<int>("--steps") { Description = "Denoising steps per run.", DefaultValueFactory = _ => 20 }.InRange(1, 1000);
        var runs = new Option<int>("--runs") { Description = "Measured runs (after one warm-up).", DefaultValueFactory = _ => 3 }.InRange(1);
        var size = new Option<int?>("--size") { Description = GenerateCommand.Options.SizeHelp("Image width and height") }.InRange(1, ModelFolder.MaxImageSide);
        var batch = new Option<int>("--batch") { Description = "Images per run (one UNet batch), 1 to 256.", DefaultValueFactory = _ => 1 }.InRange(1, 256);
        var scheduler = new Option<string?>("--scheduler") { Description = "Scheduler (default: the model's)." };
        var threads = new Option<int>("--threads") { Description = "Intra-op threads (0 = ONNX Runtime's choice).", DefaultValueFactory = _ => 0 };
        var provider = new Option<string>("--provider") { Description = "cpu or cuda.", DefaultValueFactory = _ => "cpu" };
        var json = new Option<bool>("--json") { Description = "Print one JSON object." };
        var cmd = new Command("pipeline", "Generation speed (it/s) and the share of a run spent outside the text encoder, UNet and VAE.")
        {
            model, steps, runs, size, batch, scheduler, threads, provider, json,
        };
        cmd.SetAction(async (parse, ct) =>
        {
            var folder = DefaultModel.Resolve(parse.GetValue(model));
            InputChecks.ImageSide(ModelFolder.Open(folder), "--size", parse.GetValue(size));
            var kind = ProviderOption.Parse(parse.GetValue(provider));
            using var pipeline = StableDiffusionPipeline.Load(folder, new PipelineOptions
            {
                Runtime = new OnnxRuntimeOptions { Provider = kind, IntraOpThreads = parse.GetValue(threads) },
            });
            if (pipeline.ProviderFallbackReason is { } why) console.Error.WriteLine($"spm: warning: {why}; running on the CPU.");
            int n = parse.GetValue(batch);
            var request = new GenerationRequest
            {
                Prompt = "a photo of a cat",
                Steps = parse.GetValue(steps),
                Scheduler = parse.GetValue(scheduler),
                Seed = 1,
                Width = parse.GetValue(size),
                Height = parse.GetValue(size),
                Count = n,
                BatchSize = n,
            };
            int runCount = parse.GetValue(runs);
            var r = await ProgressBars.RunAsync(console, "bench pipeline", 2 * runCount, "run",
                bar => PipelineBenchmark.RunAsync(pipeline, request, runCount, 10, new ActionProgress<int>(i => bar.Report(new ProgressUpdate(i))), ct));
            var size2 = request.Width ?? pipeline.Folder.DefaultImageSize;
            if (parse.GetValue(json))
            {
                console.Out.WriteLine(JsonSerializer.Serialize(new
                {
                    model = pipeline.Folder.Name,
                    provider = pipeline.Provider.ToString().ToLowerInvariant(),
                    size = size2,
                    images = n,
                    steps = request.Steps,
                    unet_calls = r.UNetCallsPerRun,
                    batch_rows = r.BatchRows,
                    it_per_s = Math.Round(r.IterationsPerSecond, 3),
                    bare_unet_ms = Math.Round(r.BareUNetCall.TotalMilliseconds, 3),
                    pipeline_unet_ms = Math.Round(r.PipelineUNetCall.TotalMilliseconds, 3),
                    pipeline_step_ms = Math.Round(r.PipelineStep.TotalMilliseconds, 3),
                    step_to_bare_ratio = Math.Round(r.StepToBareRatio, 4),
                    step_overhead_share = Math.Round(r.StepOverheadShare, 5),
                    run_ms = Math.Round(r.Wall.TotalMilliseconds, 3),
                    models_ms = Math.Round(r.Models.TotalMilliseconds, 3),
                    png_cpu_ms = Math.Round(r.PngEncode.TotalMilliseconds, 3),
                    outside_models_share = Math.Round(r.OutsideModelsShare, 5),
                    outside_work_cpu_ms = Math.Round(r.OutsideWork.TotalMilliseconds, 3),
                    models_cpu_ms = Math.Round(r.ModelsCpu.TotalMilliseconds, 3),
                    measured_outside_share = Math.Round(r.MeasuredOutsideShare, 5),
                }));
                return 0;
            }
            var table = new Table().AddColumn("measure").AddColumn(new TableColumn("value").RightAligned());
            string F(double v, string fmt) => v.ToString(fmt, CultureInfo.InvariantCulture);
            table.AddRow("model / provider", Markup.Escape($"{pipeline.Folder.Name} / {pipeline.Provider.ToString().ToLowerInvariant()}"));
            table.AddRow("size, images, steps", $"{size2}x{size2}, {n}, {request.Steps} ({r.UNetCallsPerRun} UNet calls of {r.BatchRows} rows)");
            table.AddRow("it/s", F(r.IterationsPerSecond, "0.00"));
            table.AddRow("bare UNet call (baseline)", F(r.BareUNetCall.TotalMilliseconds, "0.00") + " ms");
            table.AddRow("UNet call in the pipeline", F(r.PipelineUNetCall.TotalMilliseconds, "0.00") + " ms");
            table.AddRow("pipeline step", F(r.PipelineStep.TotalMilliseconds, "0.00") + $" ms ({F(r.StepToBareRatio, "0.000")}x baseline)");
            table.AddRow("step share outside the UNet", F(100 * r.StepOverheadShare, "0.00") + " %");
            table.AddRow("whole run (incl. PNG), wall", F(r.Wall.TotalMilliseconds, "0.0") + " ms");
            table.AddRow("CPU: models / outside (PNG)", $"{F(r.ModelsCpu.TotalMilliseconds, "0.0")} ms / {F(r.OutsideWork.TotalMilliseconds, "0.0")} ms ({F(r.PngEncode.TotalMilliseconds, "0.0")} ms)");
            table.AddRow("CPU share outside the 3 models", F(100 * r.MeasuredOutsideShare, "0.00") + " % (target < 2 %)");
            table.AddRow("wall share outside the 3 models", F(100 * r.OutsideModelsShare, "0.00") + " % (includes waiting for a CPU)");
            console.Output.Write(table);
            return 0;
        });
        return cmd;
    }
}
