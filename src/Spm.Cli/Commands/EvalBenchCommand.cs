using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Spectre.Console;
using Spm.Benchmarks;
using Spm.Cli.Rendering;
using Spm.Core;
using Spm.Core.Gating;
using Spm.Diffusion.Membranes;
using Spm.Diffusion.Pipelines;
using Spm.Diffusion.Runtime;
using Spm.Shapes.Evaluation;
using Spm.Shapes.World;
using Spm.Training.Evaluation;

namespace Spm.Cli.Commands;

/// <summary>
/// <c>spm bench eval</c>: evaluation image throughput of <see cref="EvalImageGenerator"/> (mixed prompts, seeds and SPM
/// multipliers per UNet batch) at several batch sizes, as ratios to the one-image-per-call pipeline (what a plain
/// <see cref="ImageSource"/> does) measured in the same run, rounds interleaved so machine load hits every
/// configuration alike; plus what a standard <c>spm eval</c> would cost at the best batch size.
/// </summary>
internal static class EvalBenchCommand
{
    public static Command Create(CliConsole console)
    {
        var model = new Option<string?>("--model") { Description = CliGlobals.ModelHelp };
        var spm = new Option<string[]>("--spm") { Description = "SPM file(s) loaded into the UNet (multipliers vary per image). Without: base model only.", AllowMultipleArgumentsPerToken = true };
        var images = new Option<int>("--images") { Description = "Images per configuration and round.", DefaultValueFactory = _ => 16 };
        var rounds = new Option<int>("--rounds") { Description = "Measured rounds (after a warm-up); the median is reported.", DefaultValueFactory = _ => 3 };
        var batches = new Option<int[]>("--batches") { Description = "Batch sizes to measure.", AllowMultipleArgumentsPerToken = true, DefaultValueFactory = _ => [1, 4, 8, 16] };
        var steps = new Option<int>("--steps") { Description = "Denoising steps.", DefaultValueFactory = _ => 20 };
        var guidance = new Option<double>("--guidance") { Description = "Guidance scale.", DefaultValueFactory = _ => 5.0 };
        var scheduler = new Option<string?>("--scheduler") { Description = "Scheduler (default: the model's)." };
        var size = new Option<int?>("--size") { Description = GenerateCommand.Options.SizeHelp("Image side") }.InRange(1, ModelFolder.MaxImageSide);
        var threads = new Option<int>("--threads") { Description = "Intra-op threads (0 = ONNX Runtime's choice).", DefaultValueFactory = _ => 0 };
        var parallel = new Option<int>("--parallel") { Description = "Batches generated at once by the eval generator (try 2 with --threads 1).", DefaultValueFactory = _ => 1 };
        var projectImages = new Option<int>("--project-images") { Description = "Images per set of the projected spm eval.", DefaultValueFactory = _ => 100 };
        var json = new Option<bool>("--json") { Description = "Print one JSON object." };
        var cmd = new Command("eval", "Evaluation image throughput: batched mixed generation vs one image per pipeline call (same run).")
        {
            model, spm, images, rounds, batches, steps, guidance, scheduler, size, threads, parallel, projectImages, json,
        };
        cmd.SetAction(async (parse, ct) =>
        {
            var folder = DefaultModel.Resolve(parse.GetValue(model));
            var files = SpmFileArgument.ParseAll(parse.GetValue(spm) ?? [], folder, allowMultiplier: false).Select(f => f.Path).ToArray();
            InputChecks.ImageSide(ModelFolder.Open(folder), "--size", parse.GetValue(size));
            int k = parse.GetValue(images), roundCount = parse.GetValue(rounds);
            var sizes = (parse.GetValue(batches) ?? []).Distinct().Order().ToArray();
            if (k < 1 || roundCount < 1 || sizes.Length == 0 || sizes.Any(b => b < 1 || b > 256))
                throw new SpmException("--images and --rounds must be positive, --batches 1..256.");
            var loaded = files.Length > 0 ? LoadedSpms.Load(folder, files) : null;
            using var pipeline = StableDiffusionPipeline.Load(folder, new PipelineOptions
            {
                UNetSource = loaded?.UNetSource,
                Runtime = new OnnxRuntimeOptions { IntraOpThreads = parse.GetValue(threads) },
            });
            var settings = new EvalGenerationSettings
            {
                Steps = parse.GetValue(steps),
                GuidanceScale = parse.GetValue(guidance),
                Scheduler = parse.GetValue(scheduler),
                ImageSize = parse.GetValue(size),
                Parallelism = parse.GetValue(parallel),
            };
            var requests = EvalWorkload.Requests(k, files.Length);
            var result = await ProgressBars.RunAsync(console, "bench eval", (roundCount + 1) * (sizes.Length + 1), "run", bar =>
                Task.Run(() => EvalImageBenchmark.Run(pipeline, loaded, settings, requests, sizes, roundCount,
                    new ActionProgress<int>(d => bar.Report(new ProgressUpdate(d))), ct), ct));

            double baseline = result.Baseline;
            var perBatch = result.PerBatch;
            int best = result.Best, imageSize = result.ImageSize;
            int projected = EvalWorkload.StandardRunImages(parse.GetValue(projectImages));
            string F(double v, string fmt) => v.ToString(fmt, CultureInfo.InvariantCulture);
            if (parse.GetValue(json))
            {
                console.Out.WriteLine(JsonSerializer.Serialize(new
                {
                    model = pipeline.Folder.Name, size = imageSize, steps = settings.Steps, guidance = settings.GuidanceScale,
                    scheduler = result.SchedulerName, spms = files.Length, parallel = settings.Parallelism, threads = parse.GetValue(threads), images = k, rounds = roundCount,
                    baseline_s_per_image = Math.Round(baseline, 5),
                    batches = sizes.Select((b, i) => new { batch = b, s_per_image = Math.Round(perBatch[i], 5), speedup = Math.Round(baseline / perBatch[i], 3) }),
                    projected_images = projected,
                    projected_minutes = Math.Round(projected * perBatch[best] / 60, 2),
                    projected_baseline_minutes = Math.Round(projected * baseline / 60, 2),
                }));
                return 0;
            }
            var table = new Table().AddColumn("configuration").AddColumn(new TableColumn("s / image").RightAligned())
                .AddColumn(new TableColumn("images / s").RightAligned()).AddColumn(new TableColumn("speed-up").RightAligned());
            table.AddRow("pipeline, 1 image per call (baseline)", F(baseline, "0.000"), F(1 / baseline, "0.00"), "1.00x");
            for (int i = 0; i < sizes.Length; i++)
                table.AddRow($"eval generator, batch {sizes[i]}{(settings.Parallelism > 1 ? $" x{settings.Parallelism} parallel" : "")}", F(perBatch[i], "0.000"), F(1 / perBatch[i], "0.00"), F(baseline / perBatch[i], "0.00") + "x");
            console.Output.Write(table);
            console.Out.WriteLine($"{pipeline.Folder.Name}, {imageSize}x{imageSize}, {result.SchedulerName} {settings.Steps} steps, guidance {F(settings.GuidanceScale, "0.##")}, {files.Length} SPM(s), {k} images x {roundCount} rounds (medians), threads {parse.GetValue(threads)}, parallel {settings.Parallelism}");
            console.Out.WriteLine($"spm eval --images {parse.GetValue(projectImages)} with 3 SPMs and 3 no-anchoring SPMs = {projected} distinct images: " +
                $"~{F(projected * perBatch[best] / 60, "0.0")} min at batch {sizes[best]} (~{F(projected * baseline / 60, "0.0")} min one image per call)");
            return 0;
        });
        return cmd;
    }
}
