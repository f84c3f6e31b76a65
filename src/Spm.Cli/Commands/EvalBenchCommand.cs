using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Spectre.Console;
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
            var generators = sizes.Select(b => new EvalImageGenerator(pipeline, loaded, settings with { BatchSize = b })).ToArray();
            var requests = Requests(k, files.Length);
            int imageSize = generators[0].ImageSize;

            // Warm-up (session arenas, kernels), then rounds alternating between configurations.
            var baselineTimes = new List<double>();
            var batchTimes = sizes.Select(_ => new List<double>()).ToArray();
            await ProgressBars.RunAsync(console, "bench eval", (roundCount + 1) * (sizes.Length + 1), "run", bar => Task.Run(() =>
            {
                int done = 0;
                for (int round = 0; round <= roundCount; round++)
                {
                    var sw = Stopwatch.StartNew();
                    foreach (var r in round == 0 ? requests.Take(1) : requests) OneImage(pipeline, loaded, settings, imageSize, r, ct);
                    if (round > 0) baselineTimes.Add(sw.Elapsed.TotalSeconds / requests.Length);
                    bar.Report(new ProgressUpdate(++done));
                    for (int i = 0; i < sizes.Length; i++)
                    {
                        sw.Restart();
                        generators[i].Generate(round == 0 ? requests.Take(sizes[i]).ToArray() : requests, null, ct);
                        if (round > 0) batchTimes[i].Add(sw.Elapsed.TotalSeconds / requests.Length);
                        bar.Report(new ProgressUpdate(++done));
                    }
                }
                return 0;
            }, ct));

            double baseline = Median(baselineTimes);
            var perBatch = batchTimes.Select(Median).ToArray();
            int best = Array.IndexOf(perBatch, perBatch.Min());
            int projected = ProjectedImages(parse.GetValue(projectImages));
            string F(double v, string fmt) => v.ToString(fmt, CultureInfo.InvariantCulture);
            if (parse.GetValue(json))
            {
                console.Out.WriteLine(JsonSerializer.Serialize(new
                {
                    model = pipeline.Folder.Name, size = imageSize, steps = settings.Steps, guidance = settings.GuidanceScale,
                    scheduler = generators[0].SchedulerName, spms = files.Length, parallel = settings.Parallelism, threads = parse.GetValue(threads), images = k, rounds = roundCount,
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
            console.Out.WriteLine($"{pipeline.Folder.Name}, {imageSize}x{imageSize}, {generators[0].SchedulerName} {settings.Steps} steps, guidance {F(settings.GuidanceScale, "0.##")}, {files.Length} SPM(s), {k} images x {roundCount} rounds (medians), threads {parse.GetValue(threads)}, parallel {settings.Parallelism}");
            console.Out.WriteLine($"spm eval --images {parse.GetValue(projectImages)} with 3 SPMs and 3 no-anchoring SPMs = {projected} distinct images: " +
                $"~{F(projected * perBatch[best] / 60, "0.0")} min at batch {sizes[best]} (~{F(projected * baseline / 60, "0.0")} min one image per call)");
            return 0;
        });
        return cmd;
    }

    /// <summary>Eval-like requests: prompts of the tiny-shapes world, distinct seeds, multipliers cycling through base / one SPM / all SPMs / half strength.</summary>
    private static EvalImageRequest[] Requests(int count, int spms)
    {
        var prompts = EvalPromptSets.Target(EvalConcept.Of(ShapeKind.Circle), count, 12345);
        return prompts.Select((p, i) =>
        {
            var m = new float[spms];
            if (spms > 0)
                switch (i % 4)
                {
                    case 1: m[0] = 1f; break;
                    case 2: Array.Fill(m, 1f); break;
                    case 3: Array.Fill(m, 0.5f); break;
                }
            return new EvalImageRequest(p.Text, p.Seed, m);
        }).ToArray();
    }

    private static void OneImage(StableDiffusionPipeline pipeline, LoadedSpms? spms, EvalGenerationSettings s, int size, EvalImageRequest r, CancellationToken ct)
    {
        var request = new GenerationRequest
        {
            Prompt = r.Prompt,
            NegativePrompt = s.NegativePrompt,
            Steps = s.Steps,
            GuidanceScale = s.GuidanceScale,
            Scheduler = s.Scheduler,
            Seed = r.Seed,
            Width = size,
            Height = size,
            Conditioner = spms?.CreateConditioner(pipeline, r.Multipliers.Select(m => new GateSettings(FixedMultiplier: m)).ToArray()),
        };
        pipeline.GenerateAsync(request, null, ct).GetAwaiter().GetResult();
    }

    /// <summary>Distinct images of a standard evaluation with 3 SPMs and 3 no-anchoring SPMs (variant multipliers assumed distinct).</summary>
    internal static int ProjectedImages(int imagesPerSet)
    {
        var concepts = new[] { EvalConcept.Of(ShapeKind.Circle), EvalConcept.Of(ShapeColor.Red), EvalConcept.Of(FillPattern.Striped) };
        var cases = SpmErasureEvaluator.StandardCases(concepts, concepts);
        var options = new EvalOptions(imagesPerSet);
        var prompts = cases.Select(c => ErasureEvaluation.PromptsOf(new EvalCase(c.Name, c.Concepts, []), options)).ToArray();
        int distinctBase = prompts.SelectMany(p => p).Select(p => (p.Text, p.Seed)).Distinct().Count();
        return distinctBase + cases.Select((c, i) => c.Variants.Count * prompts[i].Count).Sum();
    }

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }
}
