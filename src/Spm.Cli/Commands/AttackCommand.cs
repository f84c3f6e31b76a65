using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Spm.Cli.Rendering;
using Spm.Core;
using Spm.Core.Gating;
using Spm.Core.IO;
using Spm.Core.Membranes;
using Spm.Diffusion.Membranes;
using Spm.Diffusion.Pipelines;
using Spm.Diffusion.Runtime;
using Spm.Shapes.Attacks;
using Spm.Shapes.Evaluation;
using Spm.Shapes.World;
using Spm.Training.Attacks;
using Spm.Training.Evaluation;

namespace Spm.Cli.Commands;

/// <summary>
/// <c>spm attack</c>: attacks against a model with SPMs loaded (gate included), reporting the attack success rate and
/// what the erased model keeps; JSON, Markdown and image grids in one folder.
/// </summary>
internal static class AttackCommand
{
    public static Command Create(CliConsole console)
    {
        var model = new Option<string?>("--model") { Description = "Model folder (diffusers/optimum ONNX layout). Default: $SPM_MODEL, else models/tiny-shapes." };
        var spm = new Option<string[]>("--spm") { Description = "SPM file(s) of the attacked model (none: the sanity run on the base model); a bare name such as 'circle' means MODEL/spm/circle.safetensors.", AllowMultipleArgumentsPerToken = true };
        var concept = new Option<string?>("--concept") { Description = "The erased concept to attack (a tiny-shapes word: circle, red, striped...). Default: the first --spm file's first prompt." };
        var attacks = new Option<string[]>("--attacks") { Description = $"Attacks to run: {string.Join(", ", AttackPlans.Names)} (default: all).", AllowMultipleArgumentsPerToken = true };
        var images = new Option<int>("--images") { Description = "Goals per attack (text: prompts; embedding: innocent prompts; random-tokens: prompts), and images per kept set.", DefaultValueFactory = _ => 100 };
        var seed = new Option<ulong>("--seed") { Description = "Seed of every prompt set, search and image.", DefaultValueFactory = _ => 0 };
        var strengths = new Option<string>("--strengths") { Description = "Embedding attack: comma-separated strengths of the concept direction.", DefaultValueFactory = _ => "0.5,1,1.5,2,3" };
        var tokens = new Option<int>("--tokens") { Description = "Random-token and gradient attacks: words put before each prompt.", DefaultValueFactory = _ => 3 };
        var budget = new Option<int>("--budget") { Description = "Random-token and gradient attacks: tries (images) per goal.", DefaultValueFactory = _ => 4 };
        var attackSteps = new Option<int>("--attack-steps") { Description = "Gradient attack: optimisation steps per goal.", DefaultValueFactory = _ => 40 };
        var attackLr = new Option<float>("--attack-lr") { Description = "Gradient attack: Adam step size in units of the token embeddings' RMS.", DefaultValueFactory = _ => 0.3f };
        var judge = new Option<string>("--judge") { Description = "Who says whether an image shows the concept: tiny-shapes, or onnx:PATH[:CLASS[:THRESHOLD[:softmax]]].", DefaultValueFactory = _ => "tiny-shapes" };
        var gateCalibration = new Option<string>("--gate-calibration") { Description = "How gates are read: auto (default), learned, empty, none.", DefaultValueFactory = _ => "auto" };
        gateCalibration.AcceptOnlyFromAmong([.. GateCalibrations.Names]);
        var gateCurve = new Option<string>("--gate-curve") { Description = "square (default) or linear.", DefaultValueFactory = _ => "square" };
        gateCurve.AcceptOnlyFromAmong("square", "linear");
        var outDir = new Option<string>("--out") { Description = "Folder for attack.json, attack.md and grid-<attack>.png.", Required = true };
        var force = new Option<bool>("--force") { Description = "Overwrite the report files." };
        var keptSeeds = new Option<int>("--kept-seeds") { Description = "Extra base-model seeds drawn per kept-set prompt: a prompt whose base images show an erased concept at any of them is not concept-free; the report adds SSIM and accuracy over the concept-free prompts. 0 = off.", DefaultValueFactory = _ => 0 };
        var control = new Option<string?>("--control") { Description = "Random-token and gradient attacks: also draw each try's prompt with the concept swapped for this value (the surrogate: plain for striped), by the base model from the same seed, and report how often the model draws the concept unasked there. Default: the first --spm file's surrogate when it is another value of the concept's attribute; 'none' = off." };
        var sampling = new SamplingOptions();

        var cmd = new Command("attack", "Attack a model with SPMs loaded (gate included): text variants, an embedding-space attack, random-token search; attack success rate (ASR) judged per image, plus what the erased model keeps on near neighbours.");
        foreach (var o in new Option[] { model, spm, concept, attacks, images, seed, strengths, tokens, budget, attackSteps, attackLr, judge, gateCalibration, gateCurve, outDir, force, keptSeeds, control }.Concat(sampling.All()))
            cmd.Options.Add(o);
        cmd.SetAction(async (parse, ct) =>
        {
            var modelFolder = DefaultModel.Resolve(parse.GetValue(model));
            Spm.Diffusion.Pipelines.Families.ModelFamilies.RefuseSdxl(modelFolder, "spm attack");
            var files = SpmFileArgument.ParseAll(parse.GetValue(spm) ?? [], modelFolder, allowMultiplier: false).Select(a => a.Path).ToArray();
            var names = parse.GetValue(attacks) is { Length: > 0 } a ? a.SelectMany(x => x.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)).ToArray() : AttackPlans.Names.ToArray();
            foreach (var n in names)
                if (!AttackPlans.Names.Contains(n)) throw new SpmException($"unknown attack '{n}' (known: {string.Join(", ", AttackPlans.Names)}).");
            int count = parse.GetValue(images);
            if (count is < 1 or > 100_000) throw new SpmException($"--images must be 1..100000, got {count}.");
            var strengthValues = parse.GetValue(strengths)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(s => float.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && float.IsFinite(v) ? v : throw new SpmException($"--strengths: '{s}' is not a number."))
                .ToArray();
            if (strengthValues.Length == 0) throw new SpmException("--strengths lists no strength.");
            int tokenCount = parse.GetValue(tokens), tries = parse.GetValue(budget);
            if (tokenCount is < 1 or > 60) throw new SpmException($"--tokens must be 1..60, got {tokenCount}.");
            if (tries is < 1 or > 1000) throw new SpmException($"--budget must be 1..1000, got {tries}.");
            var gradientOptions = new GradientAttackOptions
            {
                Tokens = tokenCount,
                Candidates = tries,
                Steps = parse.GetValue(attackSteps),
                LearningRate = parse.GetValue(attackLr),
                BatchSize = Math.Min(8, count),
            };
            if (gradientOptions.Steps is < 1 or > 100_000) throw new SpmException($"--attack-steps must be 1..100000, got {gradientOptions.Steps}.");
            if (gradientOptions.Steps < tries) throw new SpmException($"--attack-steps ({gradientOptions.Steps}) must be at least --budget ({tries}): each try is a checkpoint of the optimisation.");
            if (!(gradientOptions.LearningRate > 0) || !float.IsFinite(gradientOptions.LearningRate)) throw new SpmException($"--attack-lr must be a positive number, got {gradientOptions.LearningRate}.");
            var dir = parse.GetValue(outDir)!;
            bool overwrite = parse.GetValue(force);
            var jsonPath = Path.Combine(dir, "attack.json");
            var mdPath = Path.Combine(dir, "attack.md");
            foreach (var p in new[] { jsonPath, mdPath })
                if (File.Exists(p) && !overwrite) throw new IOException($"'{p}' already exists (use --force to overwrite).");

            var runtime = sampling.Runtime(parse);
            LoadedSpms? loaded = files.Length == 0 ? null : LoadedSpms.Load(modelFolder, files);
            var conceptName = parse.GetValue(concept) ?? loaded?.Layout.Sets[0].Concepts.FirstOrDefault()
                ?? throw new SpmException("give --concept (the erased concept to attack) when no --spm file is given.");
            var target = EvalConcept.Parse(conceptName);
            var judgeSpec = parse.GetValue(judge)!;
            IConceptJudge judgeImpl = judgeSpec == "tiny-shapes" ? new ShapeConceptJudge(target)
                : judgeSpec.StartsWith("onnx:", StringComparison.Ordinal) ? CreateOnnxJudge(judgeSpec, runtime)
                : throw new SpmException($"--judge must be tiny-shapes or onnx:PATH[:CLASS[:THRESHOLD[:softmax]]], got '{judgeSpec}'.");

            var settings = sampling.Settings(parse, modelFolder);
            using var pipeline = StableDiffusionPipeline.Load(modelFolder, new PipelineOptions { UNetSource = loaded?.UNetSource, Runtime = runtime });
            if (pipeline.ProviderFallbackReason is { } why) console.Error.WriteLine($"spm: warning: {why}; running on the CPU.");
            var generator = new EvalImageGenerator(pipeline, loaded, settings);
            GateCalibrations.TryParse(parse.GetValue(gateCalibration), out var calibration);
            GateCurves.TryParse(parse.GetValue(gateCurve), out var curve);
            var gates = Enumerable.Repeat(new GateSettings(curve, Calibration: calibration), generator.SpmCount).ToList();
            var runner = new AttackRunner(generator, Enumerable.Range(0, generator.SpmCount).ToArray(), gates, judgeImpl);
            ulong s = parse.GetValue(seed);
            Func<string, float[]> encode = t => generator.Encode(t, ct).Embedding;

            // Random-token search and the gradient attack draw from the same words (whole words that are one token each).
            var pool = GradientAttack.TokenPool(pipeline.Tokenizer, AttackPrimitives.VocabularyWords(Path.Combine(pipeline.Tokenizer.Folder, "vocab.json")), []);
            var plans = new List<AttackPlan>();
            foreach (var n in names.Where(n => n != "gradient"))
                plans.Add(n switch
                {
                    "text" => AttackPlans.TextVariants(target, count, s),
                    "embedding" => AttackPlans.Embedding(target, count, s, encode, strengthValues),
                    _ => AttackPlans.RandomTokens(target, count, s, pool.Select(p => p.Word).ToList(), tokenCount, tries),
                });
            if (names.Contains("gradient"))
            {
                // The optimisation comes first (it needs no judge); its candidates are then judged like every other attack's.
                int totalSteps = (count + gradientOptions.BatchSize - 1) / gradientOptions.BatchSize * gradientOptions.Steps;
                console.Error.WriteLine($"spm: gradient attack: {count} goals x {gradientOptions.Steps} steps, {tokenCount} free tokens, {tries} tries each");
                var plan = await ProgressBars.RunAsync(console, "gradient attack", totalSteps, "step", async bar =>
                {
                    using var attack = GradientAttack.Create(pipeline, loaded, generator.ImageSize, new Spm.Training.Autodiff.GradientSessionSettings(IntraOpThreads: runtime.IntraOpThreads, Provider: pipeline.Provider));
                    return await Task.Run(() => attack.Plan(AttackPlans.GoalPrompts(target, count, s).Select(g => (g.Text, g.Seed)).ToList(), pool, gates, settings, gradientOptions, s,
                        new ActionProgress<double>(f => bar.Report(new ProgressUpdate(f * totalSteps, totalSteps, "optimising"))), ct), ct);
                });
                plans.Add(plan);
            }
            if (ControlSurrogate(parse.GetValue(control), files, target) is { } surrogate)
                for (int i = 0; i < plans.Count; i++)
                    if (plans[i].Name is "random-tokens" or "gradient")
                        plans[i] = plans[i].WithControls(goal => ShapePairs.Swap(goal, target, surrogate));
            var keptSets = new List<(string Name, IReadOnlyList<EvalPrompt> Prompts)>
            {
                ("near neighbours (trained words: canonical, capitals, word order, long, repeated)", ShapePhrasings.NearNeighbours([target], count, s,
                    [PhrasingKind.Canonical, PhrasingKind.Capitals, PhrasingKind.WordOrder, PhrasingKind.Long, PhrasingKind.Repeated]).Select(p => p.ToEvalPrompt()).ToList()),
                ("preservation (spm eval's set)", EvalPromptSets.Preservation([target], count, s)),
                ("near neighbours, unknown words (plurals, typos of other values)", ShapePhrasings.NearNeighbours([target], count, s ^ 0x51UL,
                    [PhrasingKind.Plural, PhrasingKind.Typo]).Select(p => p.ToEvalPrompt()).ToList()),
                // Other values in synonyms ("a crimson block" for circle): trained words on a model built with --captions varied.
                ("near neighbours, synonyms", ShapePhrasings.NearNeighbours([target], count, s ^ 0x5EUL,
                    [PhrasingKind.Synonym]).Select(p => p.ToEvalPrompt()).ToList()),
            };
            int probeSeeds = parse.GetValue(keptSeeds);
            if (probeSeeds is < 0 or > 64) throw new SpmException($"--kept-seeds must be 0..64, got {probeSeeds}.");
            int totalImages = plans.Sum(ImagesOf) + (2 + probeSeeds) * keptSets.Sum(k => k.Prompts.Count);
            console.Error.WriteLine($"spm: attacking '{target.Name}' on {(files.Length == 0 ? "the base model (no SPM)" : string.Join(", ", files.Select(Path.GetFileName)))}, gate {GateCalibrations.NameOf(calibration)}: {string.Join(", ", names)} ({totalImages} images)");

            var watch = Stopwatch.StartNew();
            var results = new List<AttackResult>();
            var collateral = new List<CollateralResult>();
            var grids = new List<(string Name, IReadOnlyList<(float[] Base, float[] Attacked)> Images)>();
            await ProgressBars.RunAsync(console, "attacking", totalImages, "image", async bar =>
            {
                double done = 0;
                foreach (var plan in plans)
                {
                    int n = ImagesOf(plan);
                    double start = done;
                    var (result, first) = await Task.Run(() => runner.Run(plan, 8, new ActionProgress<double>(f => bar.Report(new ProgressUpdate(start + f * n, totalImages, plan.Name))), ct), ct);
                    results.Add(result);
                    grids.Add((plan.Name, first));
                    done += n;
                }
                foreach (var (name, prompts) in keptSets)
                {
                    int n = (2 + probeSeeds) * prompts.Count;
                    double start = done;
                    collateral.Add(await Task.Run(() => runner.Collateral(name, prompts, [judgeImpl], probeSeeds, new ActionProgress<double>(f => bar.Report(new ProgressUpdate(start + f * n, totalImages, "kept sets"))), ct), ct));
                    done += n;
                }
                return 0;
            });

            var run = new JsonObject
            {
                ["model"] = Path.GetFullPath(modelFolder),
                ["seed"] = s.ToString(CultureInfo.InvariantCulture),
                ["steps"] = settings.Steps,
                ["guidance"] = settings.GuidanceScale,
                ["scheduler"] = generator.SchedulerName,
                ["imageSize"] = generator.ImageSize,
                ["images"] = totalImages,
                ["seconds"] = Math.Round(watch.Elapsed.TotalSeconds, 1),
                ["gateCurve"] = curve.ToString().ToLowerInvariant(),
            };
            var report = new AttackReport(target.Name, judgeImpl.Name, files.Select(Path.GetFileName).ToList()!, GateCalibrations.NameOf(calibration), results, collateral, run);
            Directory.CreateDirectory(dir);
            AtomicFile.WriteAllText(jsonPath, report.ToJson().ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n", overwrite);
            AtomicFile.WriteAllText(mdPath, report.ToMarkdown(), overwrite);
            int size = generator.ImageSize;
            foreach (var (name, pairs) in grids.Where(g => g.Images.Count > 0))
            {
                var cells = pairs.SelectMany(p => new float[]?[] { p.Base, p.Attacked }).ToList();
                var (grid, h, w) = ImageGrid.Compose(cells, pairs.Count, 2, size, size);
                ImageGrid.SavePng(Path.Combine(dir, $"grid-{name}.png"), grid, h, w);
            }
            console.Out.Write(report.ToMarkdown(5));
            console.Error.WriteLine(FormattableString.Invariant($"spm: {totalImages} images in {watch.Elapsed.TotalSeconds:0.0}s; wrote {jsonPath}, {mdPath} and the grids (rows: goals; columns: base | attacked)"));
            return 0;
        });
        return cmd;
    }

    // Base and attacked image per candidate, plus the control's.
    private static int ImagesOf(AttackPlan plan) => plan.Targets.Sum(t => t.Candidates.Sum(c => c.Control is null ? 2 : 3));

    /// <summary>The control's surrogate: --control, else the first SPM's recorded surrogate when it is another value of the concept's attribute.</summary>
    private static EvalConcept? ControlSurrogate(string? option, string[] files, EvalConcept target)
    {
        if (option?.Trim() is { } value)
        {
            if (value.Equals("none", StringComparison.OrdinalIgnoreCase)) return null;
            var given = EvalConcept.Parse(value);
            if (given.Attribute != target.Attribute || given.Value == target.Value)
                throw new SpmException($"--control '{option}' must be another {target.Attribute.ToString().ToLowerInvariant()} than '{target.Name}' (the concept swapped for it).");
            return given;
        }
        if (files.Length == 0) return null;
        // The header alone: the surrogate is metadata, the membranes are loaded (and checked) with the pipeline.
        string? recorded;
        using (var header = Spm.Core.SafeTensors.SafeTensorsFile.Open(files[0]))
            header.Metadata.TryGetValue(SpmMetadataKeys.Surrogate, out recorded);
        if (string.IsNullOrWhiteSpace(recorded)) return null;
        try
        {
            var s = EvalConcept.Parse(recorded.Trim());
            return s.Attribute == target.Attribute && s.Value != target.Value ? s : null;
        }
        catch (SpmException)
        {
            return null; // a surrogate outside the tiny-shapes words ("", "a photo"): no control
        }
    }

    private static OnnxConceptJudge CreateOnnxJudge(string spec, OnnxRuntimeOptions runtime)
    {
        var (path, options) = OnnxJudgeOptions.Parse(spec["onnx:".Length..]);
        return new OnnxConceptJudge(path, options, runtime);
    }
}
