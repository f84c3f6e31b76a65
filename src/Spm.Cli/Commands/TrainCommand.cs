using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Spectre.Console;
using Spm.Core;
using Spm.Core.Atlas;
using Spm.Diffusion.Pipelines;
using Spm.Diffusion.Runtime;
using Spm.Training.Attacks;
using Spm.Training.LatentAnchoring;
using Spm.Cli.Rendering;

namespace Spm.Cli.Commands;

/// <summary>
/// <c>spm train</c>: trains a membrane for a concept with latent anchoring and writes an SPM file.
/// Options mirror <see cref="LatentAnchoringOptions"/>; <c>--config</c> reads the reference implementation's YAML.
/// </summary>
internal static class TrainCommand
{
    public static Command Create(CliConsole console)
    {
        var model = new Option<string?>("--model") { Description = CliGlobals.ModelHelp };
        var concept = new Option<string?>("--concept") { Description = "The concept to erase (c_tar)." };
        var surrogate = new Option<string>("--surrogate") { Description = "Surrogate concept (c_sur).", DefaultValueFactory = _ => "" };
        var eta = new Option<double>("--eta") { Description = "Erasing guidance eta.", DefaultValueFactory = _ => 1.0 };
        var anchorStrength = new Option<double?>("--anchor-strength") { Description = "Anchoring strength lambda (default: the model's spm_train_defaults.json, else 1000)." };
        var noAnchoring = new Option<bool>("--no-anchoring") { Description = "Erase without latent anchoring (the ablation)." };
        var anchors = new Option<int>("--anchors") { Description = "Anchors per iteration.", DefaultValueFactory = _ => 4 };
        var quirk = new Option<bool>("--reference-quirk") { Description = "Reproduce the reference code's anchor batch (half the anchors are E(\"\"))." };
        var iterations = new Option<int?>("--iterations") { Description = "Training iterations, at least 1 (default: the model's spm_train_defaults.json, else 3000); 0 with --init-spm and --robust-rounds: only the robust rounds." }.InRange(0);
        var lr = new Option<double?>("--lr") { Description = "AdamW learning rate (default: the model's spm_train_defaults.json, else 1e-4)." };
        var adamEpsilon = new Option<double>("--adam-epsilon") { Description = "AdamW epsilon (matters when gradients are tiny, as on random-weight models).", DefaultValueFactory = _ => 1e-8 };
        var warmup = new Option<int?>("--warmup") { Description = "Linear warm-up steps of the learning rate (default: the model's spm_train_defaults.json, else 500)." };
        var rank = new Option<int>("--rank") { Description = "Membrane rank.", DefaultValueFactory = _ => 1 }.InRange(1);
        var alpha = new Option<double>("--alpha") { Description = "Membrane alpha (scale = alpha/rank).", DefaultValueFactory = _ => 1.0 };
        var resolution = new Option<int?>("--resolution") { Description = "Nominal resolution in pixels, a multiple of 64 that the model takes (default: the model's image size, 512 for SD 1.x, 64 for the built-in tiny-shapes model)." }.InRange(1, Spm.Diffusion.Pipelines.ModelFolder.MaxImageSide);
        var fixedSize = new Option<bool>("--fixed-resolution") { Description = "Always train at the nominal resolution instead of drawing sizes." };
        var seed = new Option<ulong>("--seed") { Description = "Random seed.", DefaultValueFactory = _ => 0UL };
        var provider = new Option<string>("--provider") { Description = "Execution provider: cpu or cuda.", DefaultValueFactory = _ => "cpu" };
        var threads = new Option<int>("--threads") { Description = "Intra-op threads (0 = ONNX Runtime default). Results are reproducible for a fixed count." }.InRange(0);
        var checkpointEvery = new Option<int>("--checkpoint-every") { Description = "Checkpoint every N iterations (0 = never).", DefaultValueFactory = _ => 500 };
        var resume = new Option<bool>("--resume") { Description = "Continue from the checkpoint next to --out." };
        var previewEvery = new Option<int>("--preview-every") { Description = "Write a preview grid PNG (<out>.preview-NNNNNN.png: the concept and other prompts, base | with the membrane) every N iterations (0 = never)." };
        var previewPrompts = new Option<string[]>("--preview-prompt") { Description = "A preview row besides the concept (repeatable; default: a few unrelated prompts).", AllowMultipleArgumentsPerToken = false };
        var previewSteps = new Option<int>("--preview-steps") { Description = "DDIM steps of the preview images.", DefaultValueFactory = _ => 20 };
        var probe = new Option<bool>("--probe") { Description = "Also log the erasure loss on a fixed probe (same x and t for 5 fixed k) every iteration: a measurement independent of the k draw; it does not change the result." };
        var config = new Option<string?>("--config") { Description = "Prompt config in the reference YAML layout (first entry is trained)." };
        var output = new Option<string?>("--out") { Description = "SPM file to write (required unless --manifest)." };
        var manifest = new Option<string?>("--manifest") { Description = "Train the concepts of this manifest (YAML or JSON: concepts with their settings) into --out-dir, each isolated and resumable; see docs/scale-out.md." };
        var shard = new Option<string>("--shard") { Description = "With --manifest: train shard I of N (I/N, 0-based: concept i belongs to shard i mod N), or auto/N to read I from $JOB_COMPLETION_INDEX (Kubernetes) or $SLURM_ARRAY_TASK_ID (Slurm).", DefaultValueFactory = _ => "0/1" };
        var outDir = new Option<string?>("--out-dir") { Description = "With --manifest: the folder every concept's SPM file goes to (shared storage across shards)." };
        var initSpm = new Option<string?>("--init-spm") { Description = "Start from this SPM file's membranes (same layers, rank and alpha) instead of fresh ones; a bare name such as 'circle' means MODEL/spm/circle.safetensors." };
        var robustRounds = new Option<int>("--robust-rounds") { Description = "Robust mode: after training, this many rounds of a gradient attack on the membrane followed by erasing what it found (AdvUnlearn-style); 0 = off." }.InRange(0, 1000);
        var robustIterations = new Option<int>("--robust-iterations") { Description = "Robust mode: training iterations per round.", DefaultValueFactory = _ => 100 }.InRange(1);
        var robustGoals = new Option<int>("--robust-goals") { Description = "Robust mode: attack goals (seeds of the concept's prompt) per round.", DefaultValueFactory = _ => 16 }.InRange(1, 10_000);
        var robustPrompts = new Option<string[]>("--robust-prompt") { Description = "Robust mode: a prompt asking for the concept that the attack starts from (repeatable; default: the concept itself).", AllowMultipleArgumentsPerToken = false };
        var robustAttackSteps = new Option<int>("--robust-attack-steps") { Description = "Robust mode: gradient-attack steps per round.", DefaultValueFactory = _ => 30 }.InRange(1, 100_000);
        var force = new Option<bool>("--force") { Description = "Overwrite an existing output file." };
        var library = new Option<string?>("--library") { Description = "Grow this concept library (a folder with library.json): train against the combined model, its SPMs loaded frozen at their gates, with their concepts as extra anchors, so the new membrane does not undo them." };
        var anchorsFromAtlas = new Option<string?>("--anchors-from-atlas") { Description = "Family anchors: anchor the concepts nearest to --concept in this concept atlas (its own community, then the sibling communities walking up the tree) instead of the spec's random anchors." };
        var conceptFamily = new Option<string?>("--concept-family") { Description = "Erase a family: every concept under this node of the --atlas tree (the ids 'spm atlas show' prints), with one membrane; anchors from the nearest concepts outside it." };
        var atlas = new Option<string?>("--atlas") { Description = "The concept atlas --concept-family names a node of." };
        var atlasAnchors = new Option<int>("--atlas-anchors") { Description = "With an atlas: anchor at least this many concepts (whole communities are taken, nearest first); each iteration draws --anchors of them.", DefaultValueFactory = _ => 8 }.InRange(1, 100_000);
        var anchorSurrogate = new Option<bool>("--anchor-surrogate") { Description = "With an atlas: keep the surrogate's concept among the anchors (by default it is left out: anchoring it holds the very prediction the erasure moves towards)." };
        var pairs = new Option<string?>("--pairs") { Description = "Paired erasure: a text file of 'TARGET => SURROGATE' lines (the concept in context and the same prompt with the surrogate); each iteration erases one pair. The file still names --concept." };
        var graphCache = new GraphCacheOption();
        var cmd = new Command("train", "Train an SPM membrane that erases a concept (latent anchoring).")
        {
            model, concept, surrogate, eta, anchorStrength, noAnchoring, anchors, quirk, iterations, lr, adamEpsilon, warmup, rank, alpha,
            resolution, fixedSize, seed, provider, threads, checkpointEvery, resume, previewEvery, previewPrompts, previewSteps, probe, config, output, force,
            initSpm, robustRounds, robustIterations, robustGoals, robustPrompts, robustAttackSteps, library, manifest, shard, outDir, graphCache.Folder, graphCache.Off,
            anchorsFromAtlas, conceptFamily, atlas, atlasAnchors, anchorSurrogate, pairs,
        };
        // Settings a manifest carries per concept: giving them on the command line as well is a usage error.
        Option[] perConcept = [concept, surrogate, eta, anchorStrength, noAnchoring, anchors, quirk, iterations, lr, adamEpsilon, warmup, rank, alpha,
            resolution, fixedSize, seed, checkpointEvery, resume, previewEvery, previewPrompts, previewSteps, probe, config, output, initSpm,
            robustRounds, robustIterations, robustGoals, robustPrompts, robustAttackSteps, anchorsFromAtlas, conceptFamily, atlas, atlasAnchors, anchorSurrogate, pairs];
        cmd.SetAction(async (parse, ct) =>
        {
            if (parse.GetValue(manifest) is { } manifestPath)
            {
                var given = perConcept.Where(opt => parse.GetResult(opt) is { Implicit: false }).Select(opt => opt.Name).ToList();
                if (given.Count > 0)
                    throw new SpmException($"--manifest carries each concept's settings: leave out {string.Join(", ", given)} (put them in the manifest, per concept or under 'defaults').");
                var dir = parse.GetValue(outDir) ?? throw new SpmException("--manifest needs --out-dir, the folder the SPM files go to.");
                var libraryFiles = parse.GetValue(library) is { } grow ? LibraryFiles(grow) : null;
                return await TrainManifest(console, DefaultModel.Resolve(parse.GetValue(model)), manifestPath, dir, ShardSpec.Parse(parse.GetValue(shard)!),
                    new OnnxRuntimeOptions { Provider = ProviderOption.Parse(parse.GetValue(provider)), IntraOpThreads = parse.GetValue(threads), OptimizedModelCacheFolder = graphCache.Resolve(parse) },
                    libraryFiles, parse.GetValue(force), ct);
            }
            if (parse.GetResult(outDir) is { Implicit: false } || parse.GetResult(shard) is { Implicit: false })
                throw new SpmException("--out-dir and --shard go with --manifest.");
            if (parse.GetValue(output) is null) throw new SpmException("give the SPM file to write with --out (or train a manifest with --manifest and --out-dir).");
            var modelFolder = Spm.Diffusion.Pipelines.ModelFolder.Open(DefaultModel.Resolve(parse.GetValue(model)));
            InputChecks.ImageSide(modelFolder, "--resolution", parse.GetValue(resolution));
            var modelDefaults = ModelTrainingDefaults.Load(modelFolder.Root);
            if (modelDefaults is not null)
                console.Error.WriteLine($"spm train: options not given come from the model's {ModelTrainingDefaults.FileName} ({modelDefaults}).");
            var options = new LatentAnchoringOptions
            {
                Concept = parse.GetValue(concept) ?? "",
                Surrogate = parse.GetValue(surrogate) ?? "",
                Eta = parse.GetValue(eta),
                AnchorStrength = parse.GetValue(anchorStrength) ?? modelDefaults?.AnchorStrength ?? 1000.0,
                Action = parse.GetValue(noAnchoring) ? TrainingAction.Erase : TrainingAction.EraseWithAnchoring,
                AnchorCount = parse.GetValue(anchors),
                ReferenceQuirk = parse.GetValue(quirk),
                Iterations = parse.GetValue(iterations) ?? modelDefaults?.Iterations ?? 3000,
                LearningRate = parse.GetValue(lr) ?? modelDefaults?.LearningRate ?? 1e-4,
                AdamEpsilon = parse.GetValue(adamEpsilon),
                WarmupSteps = parse.GetValue(warmup) ?? modelDefaults?.WarmupSteps ?? 500,
                Rank = parse.GetValue(rank),
                Alpha = parse.GetValue(alpha),
                Resolution = parse.GetValue(resolution) ?? modelFolder.DefaultImageSize,
                DynamicResolution = !parse.GetValue(fixedSize),
                Seed = parse.GetValue(seed),
                CheckpointEvery = parse.GetValue(checkpointEvery),
                PreviewEvery = parse.GetValue(previewEvery),
                PreviewPrompts = parse.GetValue(previewPrompts) is { Length: > 0 } rows ? rows : null,
                PreviewSteps = parse.GetValue(previewSteps),
                ErasureProbe = parse.GetValue(probe),
            };
            var configPath = parse.GetValue(config);
            if (configPath is not null)
            {
                var fromFile = PromptConfig.Load(configPath, options with { Concept = options.Concept.Length > 0 ? options.Concept : "from-config" });
                options = fromFile[0];
                if (fromFile.Count > 1) console.Error.WriteLine($"spm: {configPath} has {fromFile.Count} entries; training the first ('{options.Concept}').");
            }
            options = AtlasOptions(console, options, parse.GetValue(anchorsFromAtlas), parse.GetValue(conceptFamily), parse.GetValue(atlas), parse.GetValue(atlasAnchors),
                parse.GetResult(atlasAnchors) is { Implicit: false }, parse.GetValue(anchorSurrogate));
            if (string.IsNullOrWhiteSpace(options.Concept)) throw new ArgumentException("Give the concept to erase with --concept (or --config).");
            if (parse.GetValue(pairs) is { } pairPath)
            {
                if (options.FamilyPrompts is not null) throw new ArgumentException("--pairs and --concept-family do not combine: a family erases every member towards one surrogate.");
                options = options with { Pairs = ErasurePairFile.Load(pairPath) };
                console.Error.WriteLine($"spm train: {options.Pairs.Count} erasure pairs from {pairPath}.");
            }
            int rounds = parse.GetValue(robustRounds);
            if (rounds > 0) Spm.Diffusion.Pipelines.Families.ModelFamilies.RefuseSdxl(modelFolder.Root, "spm train --robust-rounds");
            if (parse.GetValue(initSpm) is { } init)
                options = options with { InitialSpm = SpmFileArgument.Parse(init, modelFolder.Root, allowMultiplier: false).Path };
            if (parse.GetValue(library) is { } libraryDir)
            {
                var files = LibraryFiles(libraryDir);
                options = options with { LibrarySpms = files };
                console.Error.WriteLine($"spm train: growing the library {libraryDir}: {files.Count} SPMs loaded frozen at their gates, their concepts anchored.");
            }
            bool trainFirst = options.Iterations > 0;
            if (!trainFirst && (options.InitialSpm is null || rounds == 0))
                throw new ArgumentException("--iterations 0 only makes sense with --init-spm and --robust-rounds (harden an existing SPM).");
            var runtime = new OnnxRuntimeOptions
            {
                Provider = ProviderOption.Parse(parse.GetValue(provider)),
                IntraOpThreads = parse.GetValue(threads),
                OptimizedModelCacheFolder = graphCache.Resolve(parse),
            };
            var modelDir = DefaultModel.Resolve(parse.GetValue(model));
            var outPath = parse.GetValue(output)!;
            var target = new TrainingOutput(outPath, parse.GetValue(force), parse.GetValue(resume));
            if (File.Exists(outPath) && !target.Overwrite && !target.Resume)
                throw new IOException($"'{outPath}' already exists (use --force to overwrite).");

            if (rounds > 0)
                return await TrainRobust(console, modelDir, options, trainFirst, target, runtime, new RobustTrainingOptions
                {
                    Rounds = rounds,
                    IterationsPerRound = parse.GetValue(robustIterations),
                    Goals = parse.GetValue(robustGoals),
                    GoalPrompts = parse.GetValue(robustPrompts) is { Length: > 0 } gp ? gp : null,
                    Attack = new GradientAttackOptions { Steps = parse.GetValue(robustAttackSteps), Candidates = 1, BatchSize = 8 },
                }, ct);

            console.Error.WriteLine($"spm train: erasing '{options.Concept}' from {modelDir}: {options.Iterations} iterations, lr {options.LearningRate.ToString(CultureInfo.InvariantCulture)}, rank {options.Rank}, " +
                (options.Action == TrainingAction.Erase ? "no anchoring" : $"anchor strength {options.AnchorStrength.ToString(CultureInfo.InvariantCulture)}"));
            using var trainer = LatentAnchoringTrainer.Create(modelDir, options, runtime);
            if (trainer.Sessions.FallbackReason is { } why) console.Error.WriteLine($"spm: warning: {why}; running on the CPU.");
            var result = await RunWithProgress(console, trainer, target, ct);
            var t = result.Timings;
            double perIt = t.Iterations > 0 ? t.Total.TotalSeconds / t.Iterations : 0;
            console.Out.WriteLine($"wrote {result.OutputPath} ({trainer.Layers.Count} membranes, rank {options.Rank}); loss log {target.LossLog}" +
                (result.ResumedFrom > 0 ? $"; resumed from step {result.ResumedFrom}" : ""));
            if (result.History.Count > 0)
            {
                var last = result.History[^1];
                console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"final loss {last.Loss:G4} (erasure {last.ErasureLoss:G4}, anchor {last.AnchorLoss:G4}); {perIt:F3} s/it: sampling {Share(t.SamplingX, t)}, frozen {Share(t.Frozen, t)}, forward+backward {Share(t.ForwardBackward, t)}, optimizer {Share(t.Optimizer, t)}, graph build {Share(t.GraphBuild, t)}"));
                var s = LossWindowSummary.From(result.History);
                var inv = CultureInfo.InvariantCulture;
                console.Out.WriteLine(
                    string.Create(inv, $"erasure loss last-{s.Window} / first-{s.Window} average: {s.ErasureRatio:G3} ({s.FirstErasure:G3} -> {s.LastErasure:G3}); relative to the frozen model {s.FirstRelative:F3} -> {s.LastRelative:F3}") +
                    (result.Probe is null ? "" : string.Create(inv, $"; fixed probe {s.FirstProbe:G3} -> {s.LastProbe:G3} ({s.ProbeRatio:G3}), relative {s.FirstProbeRelative:F3} -> {s.LastProbeRelative:F3}")) +
                    (options.Action == TrainingAction.Erase ? "" : string.Create(inv, $"; anchoring loss below erasure loss in {s.AnchorBelowErasure}/{s.Iterations} iterations")));
            }
            return 0;
        });
        return cmd;
    }

    /// <summary>
    /// <c>--anchors-from-atlas</c> and <c>--concept-family</c>: the anchor prompts (and the family's prompts) the atlas
    /// gives, without the surrogate's concept unless <paramref name="keepSurrogate"/>; the options unchanged when neither is given.
    /// </summary>
    internal static LatentAnchoringOptions AtlasOptions(CliConsole console, LatentAnchoringOptions options, string? anchorsFrom, string? family, string? atlasPath,
        int minimum, bool minimumGiven, bool keepSurrogate = false)
    {
        if (family is null && atlasPath is not null)
            throw new SpmException("--atlas names the atlas of --concept-family; for family anchors of one concept use --anchors-from-atlas ATLAS.");
        if (family is null && anchorsFrom is null)
        {
            if (minimumGiven) throw new SpmException("--atlas-anchors goes with --anchors-from-atlas or --concept-family.");
            if (keepSurrogate) throw new SpmException("--anchor-surrogate goes with --anchors-from-atlas or --concept-family.");
            return options;
        }
        if (options.Action == TrainingAction.Erase) throw new SpmException("--no-anchoring has no anchors to draw from an atlas: leave out --anchors-from-atlas / --atlas-anchors.");
        if (family is not null)
        {
            if (atlasPath is null) throw new SpmException("--concept-family needs --atlas ATLAS.json, the atlas whose tree node it names.");
            if (anchorsFrom is not null) throw new SpmException("--concept-family takes its anchors from --atlas (the nearest concepts outside the family): leave out --anchors-from-atlas.");
            if (options.Concept.Length > 0) throw new SpmException("--concept-family erases the concepts of an atlas node: leave out --concept.");
            var atlas = ConceptAtlas.Load(atlasPath);
            int node = AtlasSelection.ParseNode(atlas, family, atlasPath);
            var members = AtlasSelection.FamilyConcepts(atlas, node);
            var anchors = AtlasSelection.FamilyAnchors(atlas, node, minimum, SurrogateConcepts(console, atlas, options.Surrogate, keepSurrogate));
            console.Error.WriteLine($"spm train: erasing the family of node {node} of {atlasPath}: {members.Count} concepts ({string.Join(", ", members)})");
            console.Error.WriteLine(anchors.Count > 0
                ? $"spm train: anchors drawn from the {anchors.Count} nearest concepts outside it: {string.Join(", ", anchors)}"
                : "spm train: the family is the whole atlas: nothing lies outside it, so the anchors are the spec's random ones.");
            return options with { Concept = members[0], FamilyPrompts = members, AnchorPrompts = anchors.Count > 0 ? anchors : null };
        }
        if (string.IsNullOrWhiteSpace(options.Concept)) throw new SpmException("--anchors-from-atlas anchors the concepts nearest to --concept: give --concept.");
        var a = ConceptAtlas.Load(anchorsFrom!);
        int index = AtlasSelection.FindConcept(a, options.Concept, anchorsFrom!);
        var pool = AtlasSelection.ConceptAnchors(a, index, minimum, SurrogateConcepts(console, a, options.Surrogate, keepSurrogate));
        if (pool.Count == 0) throw new SpmException($"the atlas '{anchorsFrom}' has no concept besides '{a.Concepts[index]}' to anchor.");
        console.Error.WriteLine($"spm train: family anchors for '{options.Concept}' (atlas concept \"{a.Concepts[index]}\") from {anchorsFrom}: {string.Join(", ", pool)}");
        return options with { AnchorPrompts = pool };
    }

    /// <summary>
    /// The atlas concepts the surrogate names (<see cref="AtlasSelection.ConceptsNamedBy"/>: "plain" names "a plain
    /// pattern"), left out of the anchors and said so; none when it is empty, names no concept, or <paramref name="keep"/>.
    /// </summary>
    private static IReadOnlyList<int> SurrogateConcepts(CliConsole console, ConceptAtlas atlas, string surrogate, bool keep)
    {
        var named = AtlasSelection.ConceptsNamedBy(atlas, surrogate);
        if (named.Count == 0) return [];
        var list = string.Join(", ", named.Select(i => $"\"{atlas.Concepts[i]}\""));
        if (keep)
        {
            console.Error.WriteLine($"spm train: the surrogate '{surrogate}' names {list}; kept among the anchors (--anchor-surrogate).");
            return [];
        }
        console.Error.WriteLine($"spm train: the surrogate '{surrogate}' names {list}; left out of the anchors (--anchor-surrogate keeps it).");
        return named;
    }

    /// <summary>Robust mode: ordinary training (unless --iterations 0), then the attack-and-erase rounds, one file at the end.</summary>
    private static async Task<int> TrainRobust(CliConsole console, string modelDir, LatentAnchoringOptions options, bool trainFirst, TrainingOutput target,
        OnnxRuntimeOptions runtime, RobustTrainingOptions robust, CancellationToken ct)
    {
        robust.Validate();
        string start = options.InitialSpm!;
        string? baseFile = null;
        try
        {
            if (trainFirst)
            {
                baseFile = target.Path + ".base.safetensors";
                console.Error.WriteLine($"spm train: robust mode, stage 1: erasing '{options.Concept}' ({options.Iterations} iterations)");
                using (var trainer = LatentAnchoringTrainer.Create(modelDir, options, runtime))
                    await RunWithProgress(console, trainer, new TrainingOutput(baseFile, Overwrite: true), ct);
                start = baseFile;
            }
            console.Error.WriteLine($"spm train: robust mode: {robust.Rounds} rounds of a gradient attack ({robust.Goals} goals, {robust.Attack.Steps} steps, {robust.Attack.Tokens} free tokens) then {robust.IterationsPerRound} erasing iterations");
            var result = await ProgressBars.RunAsync(console, "robust rounds", robust.Rounds * 2, "phase", bar => Task.Run(() =>
                RobustTraining.Harden(modelDir, start, options with { InitialSpm = null, Iterations = Math.Max(1, options.Iterations) }, robust, target.Path, target.Overwrite, runtime,
                    new ActionProgress<RobustTrainingProgress>(p => bar.Report(new ProgressUpdate((p.Round - 1) * 2 + (p.Phase == "attack" ? 0 : 1) + p.Fraction, robust.Rounds * 2, $"round {p.Round}/{p.Rounds} {p.Phase}"))),
                    ct), ct));
            console.Out.WriteLine($"wrote {result.OutputPath} (robust: {robust.Rounds} rounds, {result.AdversarialPrompts.Count} adversarial prompts; attack loss per round {string.Join(" ", result.AttackLosses.Select(l => l.ToString("G3", CultureInfo.InvariantCulture)))})");
            foreach (var p in result.AdversarialPrompts.Take(5)) console.Out.WriteLine($"  adversarial: {p}");
            return 0;
        }
        finally
        {
            if (baseFile is not null && File.Exists(baseFile)) File.Delete(baseFile);
        }
    }

    /// <summary>
    /// <c>--manifest</c>: this shard's concepts, one after the other, each with its own progress bar; a line per concept
    /// (trained, resumed, skipped, failed) and exit code 1 when any failed (the others are kept; rerun to retry).
    /// </summary>
    private static async Task<int> TrainManifest(CliConsole console, string modelDir, string manifestPath, string outDir, ShardSpec shard,
        OnnxRuntimeOptions runtime, IReadOnlyList<string>? library, bool force, CancellationToken ct)
    {
        var defaults = TrainingManifest.ModelDefaults(modelDir) with { LibrarySpms = library };
        var manifest = TrainingManifest.Load(manifestPath, defaults);
        var mine = manifest.ShardConcepts(shard);
        console.Error.WriteLine($"spm train: manifest {manifestPath}: {manifest.Concepts.Count} concepts; shard {shard} trains {mine.Count} of them " +
            $"(concept i goes to shard i mod {shard.Count}) into {outDir}" + (library is null ? "" : $", growing a library of {library.Count} SPMs"));
        if (mine.Count == 0)
        {
            console.Out.WriteLine($"shard {shard}: no concepts (the manifest has {manifest.Concepts.Count}).");
            return 0;
        }
        var results = await ProgressBars.RunAsync(console, $"concept 1/{mine.Count}", mine[0].Options.Iterations, "it", bar => Task.Run(() =>
            ManifestTrainer.Run(modelDir, manifest, new ManifestRunOptions(outDir, shard, runtime, force), new ActionProgress<ManifestProgress>(p =>
            {
                string label = $"concept {p.Number}/{p.Count} '{p.Concept.Options.Concept}'";
                if (p.Result is { } r)
                    console.Error.WriteLine($"{label}: {Describe(r)}");
                else if (p.Step is { } step)
                    bar.Report(new ProgressUpdate(step.Step, step.TotalSteps, label));
                else
                    bar.Report(new ProgressUpdate(0, p.Concept.Options.Iterations, label));
            }), ct), ct));
        foreach (var r in results) console.Out.WriteLine($"{r.State.ToString().ToLowerInvariant(),-8} {r.Concept.Options.Concept}  {r.OutputPath}" + (r.Error is null ? "" : $"  ({r.Error})"));
        int failed = results.Count(r => r.State == ManifestConceptState.Failed);
        if (failed == 0)
        {
            console.Out.WriteLine($"shard {shard}: {results.Count} concept(s) done ({results.Count(r => r.State == ManifestConceptState.Skipped)} already finished). Gather: spm library add LIB {Path.Combine(outDir, "*.safetensors")}");
            return 0;
        }
        console.Error.WriteLine($"spm train: {failed} of {results.Count} concept(s) of shard {shard} failed; the others are written. Rerun the same command to retry them (finished ones are skipped, interrupted ones resume).");
        return ExitCodes.RuntimeFailure;
    }

    private static string Describe(ManifestConceptResult r) => r.State switch
    {
        ManifestConceptState.Skipped => $"already finished ({r.OutputPath})",
        ManifestConceptState.Resumed => $"resumed from step {r.ResumedFrom}, wrote {r.OutputPath}",
        ManifestConceptState.Trained => $"wrote {r.OutputPath}",
        _ => $"FAILED: {r.Error}",
    };

    /// <summary>The library's SPM files, checked first (hashes, loading) so a broken library stops before any training.</summary>
    internal static IReadOnlyList<string> LibraryFiles(string directory)
    {
        var lib = Spm.Core.Library.SpmLibrary.Open(directory);
        if (lib.Entries.Count == 0) throw new SpmException($"the library '{lib.Directory}' is empty: there is nothing to grow from (train without --library).");
        var problems = lib.Verify();
        if (problems.Count > 0)
            throw new SpmFormatException(lib.IndexPath, problems[0].Concept, $"the library does not verify ({problems.Count} problem(s)); first: {problems[0].Message}");
        return lib.Entries.Select(lib.PathOf).ToList();
    }

    private static string Share(TimeSpan part, TrainingTimings t)
        => t.Total > TimeSpan.Zero ? (part.TotalSeconds / t.Total.TotalSeconds).ToString("P0", CultureInfo.InvariantCulture) : "-";

    private static async Task<TrainingResult> RunWithProgress(CliConsole console, LatentAnchoringTrainer trainer, TrainingOutput output, CancellationToken ct)
    {
        int total = trainer.Options.Iterations;
        if (!console.MessagesAreTerminal)
        {
            // Plain lines for logs and CI: one every ~5% of the run.
            var sw = Stopwatch.StartNew();
            int every = Math.Max(1, total / 20);
            var plain = new ActionProgress<TrainingProgress>(p =>
            {
                if (p.Step % every != 0 && p.Step != total) return;
                double rate = p.Timings.Iterations / Math.Max(1e-9, p.Timings.Total.TotalSeconds);
                var eta = TimeSpan.FromSeconds((total - p.Step) / Math.Max(1e-9, rate));
                console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"step {p.Step}/{total}{(p.Step % Math.Max(1, trainer.Options.PreviewEvery) == 0 && trainer.Options.PreviewEvery > 0 ? " [preview]" : "")} loss {p.Loss:G4} (era {p.ErasureLoss:G4} = {p.RelativeErasureLoss:F3} x frozen, anc {p.AnchorLoss:G4}{(p.Probe is null ? "" : $", probe {p.Probe.MeanRelative:F3} x frozen")}) |grad| {p.GradientNorm:G3} lr {p.LearningRate:G3} {rate:F2} it/s ETA {eta:hh\\:mm\\:ss}{(p.CheckpointSaved ? " [checkpoint]" : "")}"));
            });
            return await trainer.TrainAsync(output, plain, ct);
        }
        TrainingResult? result = null;
        await console.Messages.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
            .StartAsync(async ctx =>
            {
                var task = ctx.AddTask("training", maxValue: total);
                var progress = new ActionProgress<TrainingProgress>(p =>
                {
                    double rate = p.Timings.Iterations / Math.Max(1e-9, p.Timings.Total.TotalSeconds);
                    task.Description = string.Create(CultureInfo.InvariantCulture,
                        $"step {p.Step}/{total}{(p.Step % Math.Max(1, trainer.Options.PreviewEvery) == 0 && trainer.Options.PreviewEvery > 0 ? " [preview]" : "")} loss {p.Loss:G3} era {p.ErasureLoss:G3} anc {p.AnchorLoss:G3} lr {p.LearningRate:G2} {rate:F2} it/s");
                    task.Value = p.Step;
                });
                result = await trainer.TrainAsync(output, progress, ct);
            });
        return result!;
    }
}
