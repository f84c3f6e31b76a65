using System.Globalization;
using System.Text.Json.Nodes;
using Spm.Core;
using Spm.Core.Gating;
using Spm.Core.Membranes;
using Spm.Diffusion.Membranes;
using Spm.Diffusion.Pipelines;
using Spm.Diffusion.Runtime;
using Spm.Training.Autodiff;
using Spm.Training.Evaluation;
using Spm.Training.LatentAnchoring;

namespace Spm.Training.Attacks;

/// <summary>Settings of <see cref="RobustTraining"/>.</summary>
public sealed record RobustTrainingOptions
{
    /// <summary>Attack-then-erase rounds.</summary>
    public int Rounds { get; init; } = 3;

    /// <summary>Latent-anchoring iterations per round (starting from the previous round's membranes).</summary>
    public int IterationsPerRound { get; init; } = 100;

    /// <summary>Attack goals per round: the concept's prompt(s) at this many seeds.</summary>
    public int Goals { get; init; } = 16;

    /// <summary>Share of a round's iterations that erase an adversarial prompt instead of the concept's own.</summary>
    public double AdversarialShare { get; init; } = 0.5;

    /// <summary>The gradient attack run before each round; its last checkpoint per goal becomes an adversarial prompt.</summary>
    public GradientAttackOptions Attack { get; init; } = new() { Steps = 30, Candidates = 1, BatchSize = 8 };

    /// <summary>Prompts the attack starts from (each gets free tokens before it); null: the concept itself.</summary>
    public IReadOnlyList<string>? GoalPrompts { get; init; }

    /// <summary>Denoising steps of the base images the attack reconstructs.</summary>
    public int ImageSteps { get; init; } = 20;

    /// <summary>Guidance of the base images.</summary>
    public double ImageGuidance { get; init; } = 3.0;

    /// <summary>Checks the values.</summary>
    public void Validate()
    {
        if (Rounds is < 1 or > 1000) throw new ArgumentException($"--robust-rounds must be 1..1000 (got {Rounds}).");
        if (IterationsPerRound < 1) throw new ArgumentException($"--robust-iterations must be at least 1 (got {IterationsPerRound}).");
        if (Goals is < 1 or > 10_000) throw new ArgumentException($"--robust-goals must be 1..10000 (got {Goals}).");
        if (!(AdversarialShare is > 0 and <= 1)) throw new ArgumentException($"The adversarial share must be in (0, 1] (got {AdversarialShare}).");
        if (ImageSteps < 1) throw new ArgumentException($"Image steps must be at least 1 (got {ImageSteps}).");
        Attack.Validate();
    }
}

/// <summary>Where a robust run is: round, phase ("attack" or "erase") and the share of that phase done.</summary>
public sealed record RobustTrainingProgress(int Round, int Rounds, string Phase, double Fraction);

/// <summary>What a robust run did.</summary>
/// <param name="OutputPath">The SPM file written.</param>
/// <param name="AdversarialPrompts">Every adversarial prompt found, in the order found.</param>
/// <param name="AttackLosses">Per round, the attacked model's mean diffusion loss at the attack's last checkpoint.</param>
public sealed record RobustTrainingResult(string OutputPath, IReadOnlyList<string> AdversarialPrompts, IReadOnlyList<double> AttackLosses);

/// <summary>
/// Robust mode in the manner of AdvUnlearn, on the membrane only: rounds that alternate an attack and erasure. Each
/// round runs the gradient attack (<see cref="GradientAttack"/>: free tokens before the concept's prompt, optimised to
/// make the current membrane-erased model reconstruct the base model's images of the concept, the membrane at a fixed
/// multiplier of 1 so the membrane itself is attacked, not the gate), keeps what it found, and continues latent-anchoring
/// training from the current membranes with the adversarial prompts as extra erased phrasings (every found prompt so far,
/// <see cref="RobustTrainingOptions.AdversarialShare"/> of the iterations). The anchors are untouched, so what the
/// membrane keeps is held as in ordinary training. The file records the rounds in its metadata key <c>robust</c>.
/// </summary>
public static class RobustTraining
{
    /// <summary>The SPM metadata key of a robust run's record.</summary>
    public const string MetadataKey = "robust";

    /// <summary>Hardens <paramref name="startSpm"/> and writes <paramref name="outputPath"/>.</summary>
    /// <param name="modelFolder">The model folder.</param>
    /// <param name="startSpm">The SPM file to start from (trained with <paramref name="training"/>'s concept, rank and alpha).</param>
    /// <param name="training">The training settings of every round (concept, surrogate, anchoring, learning rate...).</param>
    /// <param name="options">Rounds, attack budget and share.</param>
    /// <param name="outputPath">The file to write.</param>
    /// <param name="overwrite">Overwrite an existing output.</param>
    /// <param name="runtime">Threads and provider.</param>
    /// <param name="progress">Round, phase and share done.</param>
    /// <param name="cancellationToken">Cancels between steps; nothing is written then.</param>
    public static RobustTrainingResult Harden(string modelFolder, string startSpm, LatentAnchoringOptions training, RobustTrainingOptions options,
        string outputPath, bool overwrite, OnnxRuntimeOptions? runtime = null, IProgress<RobustTrainingProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(modelFolder);
        ArgumentNullException.ThrowIfNull(startSpm);
        ArgumentNullException.ThrowIfNull(training);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(outputPath);
        Spm.Diffusion.Pipelines.Families.ModelFamilies.RefuseSdxl(modelFolder, "spm train --robust-rounds (RobustTraining)");
        options.Validate();
        training.Validate();
        if (!File.Exists(startSpm)) throw new SpmInputNotFoundException(startSpm, "SPM file");
        if (File.Exists(outputPath) && !overwrite) throw new IOException($"'{outputPath}' already exists (use --force to overwrite).");
        runtime ??= new OnnxRuntimeOptions();
        var start = SpmFile.Load(startSpm);

        var found = new List<string>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var losses = new List<double>();
        var roundFiles = new List<string>();
        string current = startSpm;
        var goalPrompts = options.GoalPrompts is { Count: > 0 } g ? g : [training.Concept];
        // A paired run attacks its pairs' targets (or the goal prompts, each of which must be one) and erases what it finds
        // towards the attacked pair's surrogate.
        var pairs = training.Pairs;
        int[]? goalPairs = null;
        if (pairs is { Count: > 0 })
        {
            if (options.GoalPrompts is { Count: > 0 })
                goalPairs = goalPrompts.Select(p => IndexOfTarget(pairs, p) is int i and >= 0 ? i
                    : throw new ArgumentException($"The robust goal '{p}' is not the target of any erasure pair (--pairs): a paired run attacks its pairs.")).ToArray();
            else
            {
                // Spread over the pairs: a fixed stride through the list, so every round sees other contexts.
                goalPairs = Enumerable.Range(0, pairs.Count).Select(i => (int)((i * 7919L) % pairs.Count)).Distinct().ToArray();
                goalPrompts = goalPairs.Select(i => pairs[i].Target).ToArray();
            }
        }
        var foundGoals = new List<int>();
        try
        {
            for (int round = 1; round <= options.Rounds; round++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                int r = round;
                // Attack the current membrane (multiplier fixed at 1).
                var loaded = LoadedSpms.Load(modelFolder, [current]);
                // Paired runs without goal prompts walk on through their pairs round after round.
                int offset = goalPairs is not null && options.GoalPrompts is not { Count: > 0 } ? (round - 1) * options.Goals : 0;
                AttackPlan plan;
                using (var pipeline = StableDiffusionPipeline.Load(modelFolder, new PipelineOptions { UNetSource = loaded.UNetSource, Runtime = runtime }))
                using (var attack = GradientAttack.Create(pipeline, loaded, pipeline.Folder.DefaultImageSize,
                    new GradientSessionSettings(IntraOpThreads: runtime.IntraOpThreads, Provider: pipeline.Provider)))
                {
                    var pool = GradientAttack.TokenPool(pipeline.Tokenizer, AttackPrimitives.VocabularyWords(Path.Combine(pipeline.Tokenizer.Folder, "vocab.json")), []);
                    var goals = Enumerable.Range(0, options.Goals)
                        .Select(i => (goalPrompts[(offset + i) % goalPrompts.Count], unchecked(training.Seed * 7919UL + (ulong)(round * 100_003 + i)))).ToList();
                    plan = attack.Plan(goals, pool, [new GateSettings(FixedMultiplier: 1f)],
                        new EvalGenerationSettings { Steps = options.ImageSteps, GuidanceScale = options.ImageGuidance },
                        options.Attack, unchecked(training.Seed ^ (ulong)round * 0x9E37_79B9UL),
                        progress is null ? null : new Relay(f => progress.Report(new RobustTrainingProgress(r, options.Rounds, "attack", f))), cancellationToken);
                }
                var last = plan.Targets.Select(t => t.Candidates[^1]).ToList();
                for (int i = 0; i < last.Count; i++)
                    if (seen.Add(last[i].Text))
                    {
                        found.Add(last[i].Text);
                        if (goalPairs is not null) foundGoals.Add(goalPairs[(offset + i) % goalPairs.Length]);
                    }
                losses.Add(last.Select(c => LossOf(c.Note)).Where(double.IsFinite).DefaultIfEmpty(double.NaN).Average());

                // Erase them, starting from the current membranes.
                var roundFile = $"{outputPath}.round{round}.safetensors";
                roundFiles.Add(roundFile);
                var roundOptions = training with
                {
                    InitialSpm = current,
                    AdversarialPrompts = found.ToList(),
                    AdversarialGoals = goalPairs is null ? null : foundGoals.ToList(),
                    AdversarialShare = options.AdversarialShare,
                    Iterations = options.IterationsPerRound,
                    WarmupSteps = Math.Min(training.WarmupSteps, Math.Max(1, options.IterationsPerRound / 10)),
                    Seed = unchecked(training.Seed + (ulong)round),
                    CheckpointEvery = 0,
                    PreviewEvery = 0,
                    ErasureProbe = false,
                };
                using (var trainer = LatentAnchoringTrainer.Create(modelFolder, roundOptions, runtime))
                {
                    var relay = progress is null ? null : new Relay2(p => progress.Report(new RobustTrainingProgress(r, options.Rounds, "erase", p.Step / (double)p.TotalSteps)));
                    trainer.TrainAsync(new TrainingOutput(roundFile, Overwrite: true), relay, cancellationToken).GetAwaiter().GetResult();
                }
                current = roundFile;
            }

            // The last round's membranes, with the record of the rounds and the start file's learned gate.
            var final = SpmFile.Load(current);
            var record = new JsonObject
            {
                ["method"] = "gradient-attack adversarial prompts alternating with latent-anchoring erasure (AdvUnlearn-style, membrane only)",
                ["start"] = Path.GetFileName(startSpm),
                ["rounds"] = options.Rounds,
                ["iterations_per_round"] = options.IterationsPerRound,
                ["goals"] = options.Goals,
                ["adversarial_share"] = options.AdversarialShare,
                ["attack"] = new JsonObject
                {
                    ["tokens"] = options.Attack.Tokens, ["steps"] = options.Attack.Steps, ["learning_rate"] = options.Attack.LearningRate,
                },
                ["attack_loss_per_round"] = new JsonArray(losses.Select(l => (JsonNode?)JsonValue.Create(double.IsFinite(l) ? Math.Round(l, 6) : (double?)null)).ToArray()),
                ["adversarial_prompts"] = new JsonArray(found.Select(p => (JsonNode?)JsonValue.Create(p)).ToArray()),
            };
            var extra = new Dictionary<string, string>(final.Config.Extra, StringComparer.Ordinal) { [MetadataKey] = record.ToJsonString() };
            if (start.Config.Extra.TryGetValue(ConceptProbe.MetadataKey, out var probe)) extra[ConceptProbe.MetadataKey] = probe;
            SpmFile.Save(outputPath, new SpmAdapter(final.Config with { Extra = extra }, final.Membranes, final.StorageDType), overwrite: true);
            return new RobustTrainingResult(outputPath, found, losses);
        }
        finally
        {
            foreach (var f in roundFiles)
            {
                try { if (File.Exists(f)) File.Delete(f); }
                catch (IOException) { /* a leftover round file is harmless */ }
                foreach (var side in Directory.Exists(Path.GetDirectoryName(Path.GetFullPath(f))) ? Directory.GetFiles(Path.GetDirectoryName(Path.GetFullPath(f))!, Path.GetFileName(f) + ".*") : [])
                {
                    try { File.Delete(side); }
                    catch (IOException) { }
                }
            }
        }
    }

    /// <summary>The loss a gradient-attack candidate's note records ("step 30, loss 0.0123").</summary>
    private static int IndexOfTarget(IReadOnlyList<ErasurePair> pairs, string prompt)
    {
        for (int i = 0; i < pairs.Count; i++)
            if (string.Equals(pairs[i].Target, prompt, StringComparison.Ordinal)) return i;
        return -1;
    }

    private static double LossOf(string note)
    {
        int i = note.IndexOf("loss ", StringComparison.Ordinal);
        return i >= 0 && double.TryParse(note[(i + 5)..], NumberStyles.Float, CultureInfo.InvariantCulture, out var v) ? v : double.NaN;
    }

    private sealed class Relay(Action<double> report) : IProgress<double>
    {
        public void Report(double value) => report(value);
    }

    private sealed class Relay2(Action<TrainingProgress> report) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => report(value);
    }
}
