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
        public readonly Option<string[]> Concepts = new("--concepts") { Description = "The concept each --spm file erases, in order (then optionally each --no-anchoring-spm file's); a family membrane's concepts joined by commas (circle,square,triangle,star). Default: a family membrane's recorded family, else read from each file's prompts.", AllowMultipleArgumentsPerToken = true };
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
        public readonly Option<string?> ImagesJsonl = new("--images-jsonl") { Description = "Write every image of the erasure evaluation as one JSON line (case, variant, set, prompt, seed, what the evaluator read, SSIM against the base) to this file: where each rate's misses are." };
        public readonly Option<string> Cases = new("--cases") { Description = "Which cases run: all (default: each SPM alone, then all together), each, or together (all loaded at once, as a routed library).", DefaultValueFactory = _ => "all" };
        public readonly Option<bool> NoAblations = new("--no-ablations") { Description = "Measure only the \"erased\" variant (leave out \"no transport\" and \"no anchoring\"): about half the images." };
        public readonly Option<string?> GridDir = new("--grid-dir") { Description = "Write a comparison grid per case (base | variants) into this folder." };
        public readonly Option<int> GridPrompts = new("--grid-prompts") { Description = "Prompts of each set shown in the grids.", DefaultValueFactory = _ => 4 };
        public readonly Option<bool> Force = new("--force") { Description = "Overwrite existing output files." };
        public readonly Option<string> Provider = new("--provider") { Description = "cpu or cuda.", DefaultValueFactory = _ => "cpu" };
        public readonly Option<int> Threads = new("--threads") { Description = "Intra-op threads (0 = ONNX Runtime's choice).", DefaultValueFactory = _ => 0 };
        public readonly Option<int> Parallel = new("--parallel") { Description = "Batches generated at once (try 2 with --threads 1 on small CPUs).", DefaultValueFactory = _ => 1 };

        public readonly Option<string> GateCalibration = new("--gate-calibration") { Description = "How gamma is read: auto (default: the SPM's learned gate when its file has one for this model, else empty), learned (required), empty (the concept text's cosine above the empty prompt's), none (the spec's raw cosine and token match).", DefaultValueFactory = _ => "auto" };

        public readonly Option<string> Wording = new("--wording") { Description = "How erasure (and --fidelity) prompts are worded: canonical (default), synonyms (synonyms in training's templates) or held-out (templates and word combinations training never saw); same intents and seeds.", DefaultValueFactory = _ => "canonical" };
        public readonly Option<string?> Markdown = new("--markdown") { Description = "Write the table in UnlearnCanvas's terms (UA, IRA, CRA, SSIM, PSNR) as Markdown to this file." };

        public readonly Option<string> Style = new("--style") { Description = "The world the model draws: flat (default, the built-in model) or outlined (a derived model); sets how the evaluator reads images.", DefaultValueFactory = _ => "flat" };

        public Options()
        {
            Style.AcceptOnlyFromAmong("flat", "outlined");
            Wording.AcceptOnlyFromAmong("canonical", "synonyms", "held-out");
            Cases.AcceptOnlyFromAmong("all", "each", "together");
            GateCurve.AcceptOnlyFromAmong("square", "linear");
            GateCalibration.AcceptOnlyFromAmong([.. global::Spm.Core.Gating.GateCalibrations.Names]);
        }

        public IEnumerable<Option> All() =>
            [Model, Spm, Concepts, NoAnchoringSpm, Fidelity, Images, Seed, Steps, Guidance, Scheduler, Size, Batch, GateCurve, FacilitateFactor, GateCalibration, Json, ImagesJsonl, Cases, NoAblations, GridDir, GridPrompts, Force, Provider, Threads, Parallel, Wording, Markdown, Style];
    }

    public static Command Create(CliConsole console)
    {
        var o = new Options();
        var cmd = new Command("eval", "Measure concept erasure of SPMs on the tiny-shapes world (or the base model's fidelity with --fidelity).");
        foreach (var opt in o.All()) cmd.Options.Add(opt);
        cmd.SetAction((parse, ct) => RunAsync(console, parse, o, ct));
        return cmd;
    }

    /// <summary>What the command was asked to do, checked before any model is loaded, and where the reports go.</summary>
    internal sealed record Request(SpmEvaluationRequest Evaluation, string? Json, string? GridDir, bool Force)
    {
        /// <summary>Where the Markdown table goes, or null.</summary>
        public string? Markdown { get; init; }

        /// <summary>Where the per-image JSON lines go, or null.</summary>
        public string? ImagesJsonl { get; init; }
    }

    internal static Request Read(CliConsole console, ParseResult parse, Options o)
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
        Spm.Diffusion.Pipelines.Families.ModelFamilies.RefuseSdxl(modelFolder, "spm eval");
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
            console.Error.WriteLine($"spm eval: sampling options not given come from the model's {ModelGenerationDefaults.FileName} ({sampling}).");
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
        var evaluation = new SpmEvaluationRequest
        {
            Model = modelFolder,
            Spms = spms,
            NoAnchoringSpms = noAnchoring,
            Concepts = concepts,
            Fidelity = fidelity,
            Images = images,
            Seed = parse.GetValue(o.Seed),
            Generation = generation,
            Transport = new GateSettings(curve, factor, Calibration: SpmGenerateOptions.ParseCalibration(parse.GetValue(o.GateCalibration))),
            GridPrompts = gridPrompts,
            Wording = parse.GetValue(o.Wording) switch { "synonyms" => PromptWording.Synonyms, "held-out" => PromptWording.HeldOut, _ => PromptWording.Canonical },
            Style = parse.GetValue(o.Style) == "outlined" ? Spm.Shapes.World.ShapeStyle.Outlined : Spm.Shapes.World.ShapeStyle.Flat,
            Runtime = new OnnxRuntimeOptions { Provider = provider, IntraOpThreads = parse.GetValue(o.Threads) },
        };
        var markdown = parse.GetValue(o.Markdown);
        if (markdown is not null && !force && File.Exists(markdown)) throw new IOException($"'{markdown}' already exists (use --force to overwrite).");
        var imagesJsonl = parse.GetValue(o.ImagesJsonl);
        if (imagesJsonl is not null && fidelity) throw new SpmException("--images-jsonl lists the images of an erasure evaluation; leave it out with --fidelity.");
        if (imagesJsonl is not null && !force && File.Exists(imagesJsonl)) throw new IOException($"'{imagesJsonl}' already exists (use --force to overwrite).");
        var cases = parse.GetValue(o.Cases) switch { "each" => EvalCaseSelection.Each, "together" => EvalCaseSelection.Together, _ => EvalCaseSelection.All };
        bool ablations = !parse.GetValue(o.NoAblations);
        if (fidelity && (cases != EvalCaseSelection.All || !ablations))
            throw new SpmException("--cases and --no-ablations choose erasure cases; leave them out with --fidelity.");
        if (noAnchoring.Length > 0 && !ablations)
            throw new SpmException("--no-ablations leaves out the \"no anchoring\" rows that --no-anchoring-spm asks for; give one or the other.");
        evaluation = evaluation with { RecordImages = imagesJsonl is not null, Cases = cases, Ablations = ablations };
        return new Request(evaluation, json, gridDir, force) { Markdown = markdown, ImagesJsonl = imagesJsonl };
    }

    private static async Task<int> RunAsync(CliConsole console, ParseResult parse, Options o, CancellationToken ct)
    {
        var request = Read(console, parse, o);
        using var run = SpmEvaluationRun.Open(request.Evaluation, new ActionProgress<string>(w => console.Error.WriteLine($"spm: warning: {w}")));
        return request.Evaluation.Fidelity ? await FidelityAsync(console, request, run, ct) : await ErasureAsync(console, request, run, ct);
    }

    private static async Task<int> ErasureAsync(CliConsole console, Request r, SpmEvaluationRun run, CancellationToken ct)
    {
        var generation = r.Evaluation.Generation;
        console.Error.WriteLine($"spm: {run.Cases.Count} case(s): {string.Join("; ", run.Cases.Select(c => $"{c.Name} [{string.Join(", ", c.Variants.Select(v => v.Name))}]"))}");
        var report = await ProgressBars.RunAsync(console, "evaluating", 1, "image", bar =>
            Task.Run(() => run.Evaluate(Bar(bar), ct), ct));

        console.Out.Write(EvalReportWriter.ToTable(report));
        var cost = run.LastCost!;
        console.Error.WriteLine(FormattableString.Invariant(
            $"spm: {cost.ImagesGenerated} images generated ({cost.ImagesRequested} read) in {cost.Generation.TotalSeconds:0.0}s ({PerImage(cost):0.000}s per image, {run.Generator.SchedulerName} {generation.Steps} steps, batch {generation.BatchSize}), read in {cost.Reading.TotalSeconds:0.0}s"));
        if (r.Json is not null)
        {
            AtomicFile.WriteAllText(r.Json, run.ToJson(report) + "\n", overwrite: r.Force);
            console.Error.WriteLine($"spm: wrote {r.Json}");
        }
        if (r.Markdown is not null)
        {
            AtomicFile.WriteAllText(r.Markdown, EvalReportWriter.ToMarkdown(report), overwrite: r.Force);
            console.Error.WriteLine($"spm: wrote {r.Markdown}");
        }
        if (r.ImagesJsonl is not null)
        {
            AtomicFile.WriteAllText(r.ImagesJsonl, EvalReportWriter.ToJsonLines(report), overwrite: r.Force);
            console.Error.WriteLine($"spm: wrote {r.ImagesJsonl} ({report.Images.Count} images)");
        }
        if (r.GridDir is not null)
            foreach (var path in EvalReportWriter.WriteGrids(report, r.GridDir)) console.Error.WriteLine($"spm: wrote {path}");
        return 0;
    }

    private static async Task<int> FidelityAsync(CliConsole console, Request r, SpmEvaluationRun run, CancellationToken ct)
    {
        var generation = r.Evaluation.Generation;
        var result = await ProgressBars.RunAsync(console, "fidelity", r.Evaluation.Images, "image", bar =>
            Task.Run(() => run.MeasureFidelity(Bar(bar), ct), ct));
        console.Out.Write(EvalReportWriter.FidelityTable(result));
        var cost = run.LastCost!;
        console.Error.WriteLine(FormattableString.Invariant(
            $"spm: {cost.ImagesGenerated} images generated in {cost.Generation.TotalSeconds:0.0}s ({PerImage(cost):0.000}s per image, {run.Generator.SchedulerName} {generation.Steps} steps, batch {generation.BatchSize})"));
        if (r.Json is not null)
        {
            AtomicFile.WriteAllText(r.Json, run.ToJson(result) + "\n", overwrite: r.Force);
            console.Error.WriteLine($"spm: wrote {r.Json}");
        }
        return 0;
    }

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
}
