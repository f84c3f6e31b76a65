using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Spm.Cli.Rendering;
using Spm.Core;
using Spm.Core.Gating;
using Spm.Core.IO;
using Spm.Core.SafeTensors;
using Spm.Diffusion.Membranes;
using Spm.Diffusion.Pipelines;
using Spm.Diffusion.Runtime;
using Spm.Shapes.Evaluation;
using Spm.Training.Evaluation;

namespace Spm.Cli.Commands;

/// <summary>
/// <c>spm eval [--model DIR] --spm F ... [--concepts C ...] [--no-anchoring-spm F ...] [--images N] [--seed S]</c>:
/// erasure of each SPM alone and of all together on the tiny-shapes world (detection of the concept on prompts asking
/// for it, preservation on the others, SSIM/PSNR against the base images), with the ablations "no transport" (gate
/// forced to 1) and "no anchoring" (membranes trained with <c>--no-anchoring</c>). <c>spm eval --fidelity</c> measures
/// the base model's fidelity to random captions instead.
/// </summary>
internal static class EvalCommand
{
    internal sealed class Options
    {
        public readonly Option<string?> Model = new("--model") { Description = CliGlobals.ModelHelp };
        public readonly Option<string[]> Spm = new("--spm") { Description = "SPM file(s) to evaluate (repeat, or list several after one --spm); a bare name such as 'circle' means MODEL/spm/circle.safetensors when no such file is in the current folder.", AllowMultipleArgumentsPerToken = true };
        public readonly Option<string[]> Concepts = new("--concepts") { Description = "The concept each --spm file erases, in order (then optionally each --no-anchoring-spm file's). Default: read from each file's prompts.", AllowMultipleArgumentsPerToken = true };
        public readonly Option<string[]> NoAnchoringSpm = new("--no-anchoring-spm") { Description = "SPM file(s) trained with --no-anchoring, for the \"no anchoring\" ablation rows.", AllowMultipleArgumentsPerToken = true };
        public readonly Option<bool> Fidelity = new("--fidelity") { Description = "Measure the base model's fidelity to random captions (shape/colour/pattern/background accuracy) instead." };
        public readonly Option<int?> Images = new Option<int?>("--images") { Description = "Images per prompt set, 1 to 100000 (default 100; 200 with --fidelity)." }.InRange(1, 100_000);
        public readonly Option<ulong> Seed = new("--seed") { Description = "Seed of the prompt sets and image seeds.", DefaultValueFactory = _ => 0 };
        public readonly Option<int?> Steps = new Option<int?>("--steps") { Description = "Denoising steps, 1 to 1000 (default: the model's spm_generate_defaults.json, else 20)." }.InRange(1, 1000);
        public readonly Option<double?> Guidance = new Option<double?>("--guidance", "--cfg") { Description = "Classifier-free guidance scale, 0 or more (default: the model's spm_generate_defaults.json, else 5)." }.InRange(0);
        public readonly Option<string?> Scheduler = new("--scheduler") { Description = "pndm, ddim, euler, euler-a, dpmpp-2m or lms (default: the model's)." };
        public readonly Option<int?> Size = new Option<int?>("--size") { Description = GenerateCommand.Options.SizeHelp("Image side") }.InRange(1, ModelFolder.MaxImageSide);
        public readonly Option<int> Batch = new("--batch") { Description = "Images per UNet batch (base and variants mixed).", DefaultValueFactory = _ => 8 };
        public readonly Option<string> GateCurve = new("--gate-curve") { Description = "Facilitated transport curve: square (default) or linear.", DefaultValueFactory = _ => "square" };
        public readonly Option<float> FacilitateFactor = new("--facilitate-factor") { Description = "Scales each SPM's gamma before the curve.", DefaultValueFactory = _ => 1f };
        public readonly Option<string?> Json = new("--json") { Description = "Write the report as JSON to this file." };
        public readonly Option<string?> GridDir = new("--grid-dir") { Description = "Write a comparison grid per case (base | variants) into this folder." };
        public readonly Option<int> GridPrompts = new("--grid-prompts") { Description = "Prompts of each set shown in the grids.", DefaultValueFactory = _ => 4 };
        public readonly Option<bool> Force = new("--force") { Description = "Overwrite existing output files." };
        public readonly Option<string> Provider = new("--provider") { Description = "cpu or cuda.", DefaultValueFactory = _ => "cpu" };
        public readonly Option<int> Threads = new("--threads") { Description = "Intra-op threads (0 = ONNX Runtime's choice).", DefaultValueFactory = _ => 0 };
        public readonly Option<int> Parallel = new("--parallel") { Description = "Batches generated at once (try 2 with --threads 1 on small CPUs).", DefaultValueFactory = _ => 1 };

        public readonly Option<string> GateCalibration = new("--gate-calibration") { Description = "How gamma is read: auto (default: the SPM's learned gate when its file has one for this model, else empty), learned (required), empty (the concept text's cosine above the empty prompt's), none (the spec's raw cosine and token match).", DefaultValueFactory = _ => "auto" };

        public Options()
        {
            GateCurve.AcceptOnlyFromAmong("square", "linear");
            GateCalibration.AcceptOnlyFromAmong([.. global::Spm.Core.Gating.GateCalibrations.Names]);
        }

        public IEnumerable<Option> All() =>
            [Model, Spm, Concepts, NoAnchoringSpm, Fidelity, Images, Seed, Steps, Guidance, Scheduler, Size, Batch, GateCurve, FacilitateFactor, GateCalibration, Json, GridDir, GridPrompts, Force, Provider, Threads, Parallel];
    }

    public static Command Create()
    {
        var o = new Options();
        var cmd = new Command("eval", "Measure concept erasure of SPMs on the tiny-shapes world (or the base model's fidelity with --fidelity).");
        foreach (var opt in o.All()) cmd.Options.Add(opt);
        cmd.SetAction((parse, ct) => RunAsync(parse, o, ct));
        return cmd;
    }

    /// <summary>What the command was asked to do, checked before any model is loaded.</summary>
    internal sealed record Request(
        string Model, IReadOnlyList<string> Spms, IReadOnlyList<string> NoAnchoringSpms, IReadOnlyList<string> Concepts,
        bool Fidelity, int Images, ulong Seed, EvalGenerationSettings Generation, GateSettings Transport,
        string? Json, string? GridDir, int GridPrompts, bool Force, OnnxRuntimeOptions Runtime);

    internal static Request Read(ParseResult parse, Options o)
    {
        var spms = parse.GetValue(o.Spm) ?? [];
        var noAnchoring = parse.GetValue(o.NoAnchoringSpm) ?? [];
        var concepts = parse.GetValue(o.Concepts) ?? [];
        bool fidelity = parse.GetValue(o.Fidelity);
        if (fidelity && (spms.Length > 0 || noAnchoring.Length > 0))
            throw new SpmException("--fidelity measures the base model: leave out --spm and --no-anchoring-spm.");
        if (!fidelity && spms.Length == 0)
            throw new SpmException("nothing to evaluate: give --spm FILE ... (or --fidelity for the base model).");
        if (concepts.Length > 0 && concepts.Length != spms.Length && concepts.Length != spms.Length + noAnchoring.Length)
            throw new SpmException($"--concepts names {concepts.Length} concept(s) for {spms.Length} --spm file(s){(noAnchoring.Length > 0 ? $" and {noAnchoring.Length} --no-anchoring-spm file(s)" : "")}: give one per --spm file (optionally followed by one per --no-anchoring-spm file).");
        var modelFolder = DefaultModel.Resolve(parse.GetValue(o.Model));
        spms = SpmFileArgument.ParseAll(spms, modelFolder, allowMultiplier: false).Select(f => f.Path).ToArray();
        noAnchoring = SpmFileArgument.ParseAll(noAnchoring, modelFolder, "--no-anchoring-spm", allowMultiplier: false).Select(f => f.Path).ToArray();
        int images = parse.GetValue(o.Images) ?? (fidelity ? 200 : 100);
        if (images is < 1 or > 100_000) throw new SpmException($"--images must be 1..100000, got {images}.");
        int gridPrompts = parse.GetValue(o.GridPrompts);
        if (gridPrompts < 0) throw new SpmException("--grid-prompts must not be negative.");
        GateCurves.TryParse(parse.GetValue(o.GateCurve), out var curve);
        float factor = parse.GetValue(o.FacilitateFactor);
        if (!float.IsFinite(factor) || factor < 0) throw new SpmException($"--facilitate-factor must be a non-negative number, got {factor}.");
        var provider = ProviderOption.Parse(parse.GetValue(o.Provider));
        InputChecks.ImageSide(ModelFolder.Open(modelFolder), "--size", parse.GetValue(o.Size));
        var sampling = ModelGenerationDefaults.Load(modelFolder);
        if (sampling is not null && (parse.GetValue(o.Steps) is null || parse.GetValue(o.Guidance) is null))
            Console.Error.WriteLine($"spm eval: sampling options not given come from the model's {ModelGenerationDefaults.FileName} ({sampling}).");
        var generation = new EvalGenerationSettings
        {
            Steps = parse.GetValue(o.Steps) ?? sampling?.Steps ?? 20,
            GuidanceScale = parse.GetValue(o.Guidance) ?? sampling?.GuidanceScale ?? 5.0,
            Scheduler = parse.GetValue(o.Scheduler),
            ImageSize = parse.GetValue(o.Size),
            BatchSize = parse.GetValue(o.Batch),
            Parallelism = parse.GetValue(o.Parallel),
        };
        generation.Validate();
        bool force = parse.GetValue(o.Force);
        var json = parse.GetValue(o.Json);
        // Outputs are checked before any work, so a long run never ends in a refused write.
        if (json is not null && !force && File.Exists(json)) throw new IOException($"'{json}' already exists (use --force to overwrite).");
        var gridDir = parse.GetValue(o.GridDir);
        if (gridDir is not null && File.Exists(gridDir)) throw new IOException($"--grid-dir '{gridDir}' is a file.");
        return new Request(modelFolder, spms, noAnchoring, concepts, fidelity, images, parse.GetValue(o.Seed),
            generation, new GateSettings(curve, factor, Calibration: SpmGenerateOptions.ParseCalibration(parse.GetValue(o.GateCalibration))), json, gridDir, gridPrompts, force,
            new OnnxRuntimeOptions { Provider = provider, IntraOpThreads = parse.GetValue(o.Threads) });
    }

    private static async Task<int> RunAsync(ParseResult parse, Options o, CancellationToken ct)
    {
        var request = Read(parse, o);
        return request.Fidelity ? await FidelityAsync(request, ct) : await ErasureAsync(request, ct);
    }

    private static async Task<int> ErasureAsync(Request r, CancellationToken ct)
    {
        var loaded = LoadedSpms.Load(r.Model, [.. r.Spms, .. r.NoAnchoringSpms]);
        foreach (var w in loaded.Layout.Warnings) Console.Error.WriteLine($"spm: warning: {w}");
        var concepts = ResolveConcepts(r, loaded.Layout.Sets);
        var erasers = concepts.Take(r.Spms.Count).ToArray();
        var ablations = concepts.Skip(r.Spms.Count).ToArray();
        foreach (var warning in TrainingWarnings(r)) Console.Error.WriteLine($"spm: warning: {warning}");
        var cases = SpmErasureEvaluator.StandardCases(erasers, ablations);

        using var pipeline = StableDiffusionPipeline.Load(r.Model, new PipelineOptions { UNetSource = loaded.UNetSource, Runtime = r.Runtime });
        if (pipeline.ProviderFallbackReason is { } why) Console.Error.WriteLine($"spm: warning: {why}; running on the CPU.");
        var generator = new EvalImageGenerator(pipeline, loaded, r.Generation);
        var evaluator = new SpmErasureEvaluator(generator, r.Transport);
        var options = new EvalOptions(r.Images, r.Seed, generator.ImageSize, r.GridPrompts);
        Console.Error.WriteLine($"spm: {cases.Count} case(s): {string.Join("; ", cases.Select(c => $"{c.Name} [{string.Join(", ", c.Variants.Select(v => v.Name))}]"))}");

        var report = await ProgressBars.RunAsync("evaluating", 1, "image", bar =>
            Task.Run(() => evaluator.Evaluate(cases, options, Bar(bar), ct), ct));

        Console.Write(EvalReportWriter.ToTable(report));
        var cost = evaluator.LastCost!;
        Console.Error.WriteLine(FormattableString.Invariant(
            $"spm: {cost.ImagesGenerated} images generated ({cost.ImagesRequested} read) in {cost.Generation.TotalSeconds:0.0}s ({PerImage(cost):0.000}s per image, {generator.SchedulerName} {r.Generation.Steps} steps, batch {r.Generation.BatchSize}), read in {cost.Reading.TotalSeconds:0.0}s"));
        if (r.Json is not null)
        {
            var doc = JsonNode.Parse(EvalReportWriter.ToJson(report))!.AsObject();
            doc["run"] = RunInfo(r, generator, cost, loaded.Layout.Sets, concepts);
            AtomicFile.WriteAllText(r.Json, doc.ToJsonString(JsonOptions) + "\n", overwrite: r.Force);
            Console.Error.WriteLine($"spm: wrote {r.Json}");
        }
        if (r.GridDir is not null)
            foreach (var path in EvalReportWriter.WriteGrids(report, r.GridDir)) Console.Error.WriteLine($"spm: wrote {path}");
        return 0;
    }

    private static async Task<int> FidelityAsync(Request r, CancellationToken ct)
    {
        using var pipeline = StableDiffusionPipeline.Load(r.Model, new PipelineOptions { Runtime = r.Runtime });
        if (pipeline.ProviderFallbackReason is { } why) Console.Error.WriteLine($"spm: warning: {why}; running on the CPU.");
        var generator = new EvalImageGenerator(pipeline, null, r.Generation);
        var evaluator = new SpmErasureEvaluator(generator);
        var result = await ProgressBars.RunAsync("fidelity", r.Images, "image", bar =>
            Task.Run(() => evaluator.MeasureFidelity(r.Images, r.Seed, Bar(bar), ct), ct));
        Console.Write(FidelityTable(result));
        var cost = evaluator.LastCost!;
        Console.Error.WriteLine(FormattableString.Invariant(
            $"spm: {cost.ImagesGenerated} images generated in {cost.Generation.TotalSeconds:0.0}s ({PerImage(cost):0.000}s per image, {generator.SchedulerName} {r.Generation.Steps} steps, batch {r.Generation.BatchSize})"));
        if (r.Json is not null)
        {
            var doc = new JsonObject
            {
                ["fidelity"] = JsonSerializer.SerializeToNode(result, JsonOptions),
                ["run"] = RunInfo(r, generator, cost, [], []),
            };
            AtomicFile.WriteAllText(r.Json, doc.ToJsonString(JsonOptions) + "\n", overwrite: r.Force);
            Console.Error.WriteLine($"spm: wrote {r.Json}");
        }
        return 0;
    }

    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    private static double PerImage(SpmEvalCost cost) => cost.ImagesGenerated > 0 ? cost.Generation.TotalSeconds / cost.ImagesGenerated : 0;

    private static IProgress<SpmEvalProgress> Bar(IProgress<ProgressUpdate> bar)
    {
        string? last = null;
        return new ActionProgress<SpmEvalProgress>(p =>
        {
            string? label = p.Stage == last ? null : p.Stage;
            last = p.Stage;
            bar.Report(new ProgressUpdate(p.Done, p.Total, label));
        });
    }

    /// <summary>The fidelity result as a small fixed-width table (percentages; "-" for attributes no caption named).</summary>
    internal static string FidelityTable(FidelityResult r)
    {
        static string Pct(double v) => double.IsNaN(v) ? "-" : (100 * v).ToString("F1", CultureInfo.InvariantCulture) + "%";
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"fidelity on {r.Images} images (attribute read as the caption names it)\n");
        foreach (var (name, value) in new[] { ("shape", r.ShapeAccuracy), ("colour", r.ColorAccuracy), ("pattern", r.PatternAccuracy), ("background", r.BackgroundAccuracy), ("object found", r.FoundObjectRate) })
            sb.Append(CultureInfo.InvariantCulture, $"  {name,-12} {Pct(value),7}\n");
        // What the misses are: every named value read right less often than always, with what it was read as most.
        var misses = new StringBuilder();
        foreach (var c in r.Confusion)
            foreach (var label in c.Labels)
            {
                int named = c.Named(label);
                if (named == 0 || c.MostCommonMisreading(label) is not { } miss) continue;
                misses.Append(CultureInfo.InvariantCulture, $"  {c.Attribute,-12} {label,-11} {Pct(c.Accuracy(label)),7} of {named,3}  (read as {miss.Label}: {miss.Count})\n");
            }
        if (misses.Length > 0) sb.Append("misread (objects found; named value, share read right, most common misreading)\n").Append(misses);
        return sb.ToString();
    }

    /// <summary>
    /// The concept of every loaded SPM (erasers, then no-anchoring ones): from --concepts where given, else the one
    /// tiny-shapes word in the file's prompts ("circle", "a red shape").
    /// </summary>
    internal static IReadOnlyList<EvalConcept> ResolveConcepts(Request r, IReadOnlyList<MembraneSet> sets)
    {
        var files = r.Spms.Concat(r.NoAnchoringSpms).ToArray();
        var concepts = new EvalConcept[files.Length];
        for (int i = 0; i < files.Length; i++)
        {
            if (i < r.Concepts.Count)
            {
                concepts[i] = EvalConcept.Parse(r.Concepts[i]);
                continue;
            }
            concepts[i] = EvalConcept.FromPrompts(sets[i].Concepts, files[i]);
        }
        return concepts;
    }

    /// <summary>Warnings for SPMs whose recorded training contradicts their role (an eraser trained without anchoring, or the reverse).</summary>
    internal static IEnumerable<string> TrainingWarnings(Request r)
    {
        foreach (var (file, ablation) in r.Spms.Select(f => (f, false)).Concat(r.NoAnchoringSpms.Select(f => (f, true))))
        {
            string? action;
            using (var st = SafeTensorsFile.Open(file)) action = Spm.Training.LatentAnchoring.TrainingRecord.ActionOf(st.Metadata);
            if (action is null) continue;
            if (ablation && action != "erase")
                yield return $"'{file}' is given as --no-anchoring-spm but was trained with action '{action}' (with latent anchoring).";
            if (!ablation && action == "erase")
                yield return $"'{file}' was trained without latent anchoring (action 'erase'); its \"erased\" rows are the ablation's.";
        }
    }

    private static JsonObject RunInfo(Request r, EvalImageGenerator generator, SpmEvalCost cost, IReadOnlyList<MembraneSet> sets, IReadOnlyList<EvalConcept> concepts)
    {
        var spms = new JsonArray();
        var files = r.Spms.Concat(r.NoAnchoringSpms).ToArray();
        for (int i = 0; i < files.Length; i++)
            spms.Add(new JsonObject
            {
                ["file"] = files[i],
                ["name"] = sets[i].Name,
                ["concept"] = concepts[i].Name,
                ["role"] = i < r.Spms.Count ? "erase" : "no-anchoring",
                ["prompts"] = new JsonArray(sets[i].Concepts.Select(c => (JsonNode?)JsonValue.Create(c)).ToArray()),
            });
        return new JsonObject
        {
            ["model"] = Path.GetFullPath(r.Model),
            ["scheduler"] = generator.SchedulerName,
            ["steps"] = r.Generation.Steps,
            ["guidance"] = r.Generation.GuidanceScale,
            ["imageSize"] = generator.ImageSize,
            ["batch"] = r.Generation.BatchSize,
            ["parallel"] = r.Generation.Parallelism,
            ["threads"] = r.Runtime.IntraOpThreads,
            ["gateCurve"] = r.Transport.Curve.ToString().ToLowerInvariant(),
            ["gateCalibration"] = Spm.Core.Gating.GateCalibrations.NameOf(r.Transport.Calibration),
            ["facilitateFactor"] = r.Transport.FacilitateFactor,
            ["spms"] = spms,
            ["imagesGenerated"] = cost.ImagesGenerated,
            ["imagesRead"] = cost.ImagesRequested,
            ["generationSeconds"] = Math.Round(cost.Generation.TotalSeconds, 3),
            ["readingSeconds"] = Math.Round(cost.Reading.TotalSeconds, 3),
        };
    }
}
