using System.Text.Json;
using System.Text.Json.Nodes;
using Spm.Core;
using Spm.Core.Gating;
using Spm.Core.IO;
using Spm.Training.Attacks;
using Spm.Training.Evaluation;

namespace Spm.Training.Gating;

/// <summary>A prompt and, for each judge, the share of its images that showed the judge's concept.</summary>
/// <param name="Prompt">The prompt text.</param>
/// <param name="Images">Images drawn for it.</param>
/// <param name="Labels">Per judge (in the order given to <see cref="GateFitting.Label"/>): the share of images that showed the concept.</param>
public sealed record LabelledPrompt(string Prompt, int Images, IReadOnlyList<float> Labels);

/// <summary>The strength <see cref="GateFitting.ChooseStrength"/> picked and the leak it measured at each candidate.</summary>
/// <param name="Strength">The chosen strength.</param>
/// <param name="BaseDrawn">Images in which the base model drew the concept (the leak's denominator).</param>
/// <param name="Leaks">(candidate strength, leak) pairs; NaN when the base drew nothing.</param>
public sealed record StrengthChoice(float Strength, int BaseDrawn, IReadOnlyList<(float Strength, double Leak)> Leaks);

/// <summary>A fitted probe and how well it does.</summary>
/// <param name="Probe">The probe (its <see cref="ConceptProbe.Fit"/> holds the figures below too).</param>
/// <param name="Train">Figures on the prompts it was fitted on.</param>
/// <param name="HeldOut">Figures on the held-out prompts (null when none were held out).</param>
public sealed record GateFitResult(ConceptProbe Probe, ProbeMetrics Train, ProbeMetrics? HeldOut);

/// <summary>
/// Fitting an SPM's learned gate (<see cref="ConceptProbe"/>) from the model's own behaviour: draw images for many
/// prompts with the base model, let a judge say which show the concept, and fit the probe on the prompts' hidden states
/// against those labels. One labelling pass can serve several concepts (one judge each).
/// </summary>
public static class GateFitting
{
    /// <summary>
    /// Draws <paramref name="seedsPerPrompt"/> base-model images (every SPM off) per prompt and labels each prompt with the
    /// share of its images each judge says shows its concept.
    /// </summary>
    public static IReadOnlyList<LabelledPrompt> Label(EvalImageGenerator generator, IReadOnlyList<string> prompts, int seedsPerPrompt, ulong seed,
        IReadOnlyList<IConceptJudge> judges, IProgress<double>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(generator);
        ArgumentNullException.ThrowIfNull(prompts);
        ArgumentNullException.ThrowIfNull(judges);
        ArgumentOutOfRangeException.ThrowIfLessThan(seedsPerPrompt, 1);
        if (judges.Count == 0) throw new ArgumentException("No judge to label the images.", nameof(judges));
        var zero = new float[generator.SpmCount];
        var requests = new List<EvalImageRequest>(prompts.Count * seedsPerPrompt);
        var rng = new Spm.Core.Randomness.SeededRandom(seed ^ 0x6A7E_F17UL);
        foreach (var p in prompts)
            for (int s = 0; s < seedsPerPrompt; s++) requests.Add(new EvalImageRequest(p, rng.NextUInt64(), zero));
        var relay = progress is null ? null : new Progress(d => progress.Report(d / requests.Count));
        var images = generator.Generate(requests, relay, cancellationToken);
        int size = generator.ImageSize;
        var result = new List<LabelledPrompt>(prompts.Count);
        for (int i = 0; i < prompts.Count; i++)
        {
            var labels = new float[judges.Count];
            for (int j = 0; j < judges.Count; j++)
            {
                int shown = 0;
                for (int s = 0; s < seedsPerPrompt; s++) if (judges[j].Shows(images[i * seedsPerPrompt + s], size, size)) shown++;
                labels[j] = shown / (float)seedsPerPrompt;
            }
            result.Add(new LabelledPrompt(prompts[i], seedsPerPrompt, labels));
        }
        return result;
    }

    /// <summary>
    /// Fits the probe of judge <paramref name="judgeIndex"/>'s concept: every <paramref name="heldOutEvery"/>-th prompt is
    /// held out (0: none) and measured after the fit. <paramref name="extraTraining"/> (for example
    /// <see cref="DirectionAugmentation"/>'s pushed conditionings) joins the training samples, never the held-out ones, so
    /// the held-out figures stay comparable with a fit without it. <paramref name="midWord"/> gives each prompt's mid-word
    /// mask (<see cref="ProbeSample.MidWord"/>) for a probe that leaves those positions out.
    /// </summary>
    public static GateFitResult Fit(string concept, IReadOnlyList<LabelledPrompt> data, int judgeIndex, Func<string, float[]> encode, int width,
        float[] encoderSignature, ProbeFitOptions? options = null, int heldOutEvery = 5, IReadOnlyList<ProbeSample>? extraTraining = null,
        CancellationToken cancellationToken = default, Func<string, bool[]?>? midWord = null)
    {
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(encode);
        var train = new List<ProbeSample>();
        var held = new List<ProbeSample>();
        for (int i = 0; i < data.Count; i++)
        {
            var d = data[i];
            if (judgeIndex < 0 || judgeIndex >= d.Labels.Count) throw new ArgumentOutOfRangeException(nameof(judgeIndex));
            var sample = new ProbeSample(d.Prompt, encode(d.Prompt), d.Labels[judgeIndex], d.Images, midWord?.Invoke(d.Prompt));
            (heldOutEvery > 0 && i % heldOutEvery == heldOutEvery - 1 ? held : train).Add(sample);
        }
        if (extraTraining is not null) train.AddRange(extraTraining);
        var probe = ConceptProbeFitter.Fit(concept, train, width, options, encoderSignature, cancellationToken);
        var trainMetrics = ProbeMetrics.Measure(probe, train);
        var heldMetrics = held.Count > 0 ? ProbeMetrics.Measure(probe, held) : null;
        probe.Fit["prompts"] = data.Count;
        probe.Fit["images_per_prompt"] = data.Count > 0 ? data[0].Images : 0;
        probe.Fit["train_auc"] = Round(trainMetrics.Auc);
        if (extraTraining is { Count: > 0 }) probe.Fit["extra_training_samples"] = extraTraining.Count;
        if (heldMetrics is not null)
        {
            probe.Fit["heldout_prompts"] = heldMetrics.Count;
            probe.Fit["heldout_auc"] = Round(heldMetrics.Auc);
            probe.Fit["heldout_accuracy"] = Round(heldMetrics.Accuracy);
            probe.Fit["heldout_logloss"] = Round(heldMetrics.LogLoss);
        }
        return new GateFitResult(probe, trainMetrics, heldMetrics);
    }

    /// <summary>
    /// Measures how much of the concept the SPM at generator index <paramref name="spm"/> lets through at each candidate
    /// strength (its multiplier fixed, every other SPM off), on <paramref name="prompts"/> (prompts the model draws the concept
    /// for), and picks the smallest strength whose leak is at most <paramref name="maxLeak"/> (else the one with the least
    /// leak). Leak = among images in which the base model draws the concept, the share in which the SPM leaves it.
    /// </summary>
    public static StrengthChoice ChooseStrength(EvalImageGenerator generator, int spm, IReadOnlyList<string> prompts, IConceptJudge judge,
        IReadOnlyList<float> candidates, ulong seed, double maxLeak = 0.02, IProgress<double>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(generator);
        ArgumentNullException.ThrowIfNull(prompts);
        ArgumentNullException.ThrowIfNull(judge);
        ArgumentNullException.ThrowIfNull(candidates);
        if (spm < 0 || spm >= generator.SpmCount) throw new ArgumentOutOfRangeException(nameof(spm));
        if (candidates.Count == 0 || candidates.Any(c => !(c > 0f))) throw new ArgumentException("Candidate strengths must be positive.", nameof(candidates));
        if (prompts.Count == 0) throw new ArgumentException("No prompts to measure the strength on.", nameof(prompts));
        var rng = new Spm.Core.Randomness.SeededRandom(seed ^ 0x57E2_6700UL);
        var seeds = prompts.Select(_ => rng.NextUInt64()).ToArray();
        var requests = new List<EvalImageRequest>();
        for (int i = 0; i < prompts.Count; i++)
            foreach (var m in candidates.Prepend(0f))
            {
                var multipliers = new float[generator.SpmCount];
                multipliers[spm] = m;
                requests.Add(new EvalImageRequest(prompts[i], seeds[i], multipliers));
            }
        var relay = progress is null ? null : new Progress(d => progress.Report(d / requests.Count));
        var images = generator.Generate(requests, relay, cancellationToken);
        int size = generator.ImageSize, per = candidates.Count + 1, drawn = 0;
        var leaked = new int[candidates.Count];
        for (int i = 0; i < prompts.Count; i++)
        {
            if (!judge.Shows(images[i * per], size, size)) continue;
            drawn++;
            for (int k = 0; k < candidates.Count; k++) if (judge.Shows(images[i * per + k + 1], size, size)) leaked[k]++;
        }
        var leaks = leaked.Select(l => drawn == 0 ? double.NaN : l / (double)drawn).ToArray();
        int best = -1;
        for (int k = 0; k < candidates.Count && best < 0; k++) if (leaks[k] <= maxLeak) best = k;
        if (best < 0) best = Enumerable.Range(0, candidates.Count).OrderBy(k => double.IsNaN(leaks[k]) ? double.MaxValue : leaks[k]).ThenBy(k => candidates[k]).First();
        return new StrengthChoice(candidates[best], drawn, candidates.Zip(leaks).Select(t => (t.First, t.Second)).ToArray());
    }

    private static JsonNode? Round(double x) => double.IsFinite(x) ? JsonValue.Create(Math.Round(x, 4)) : null;

    /// <summary>Writes labelled prompts as JSON lines (so a fit can be redone without drawing the images again), atomically.</summary>
    public static void Save(string path, IReadOnlyList<LabelledPrompt> data, IReadOnlyList<string> judgeNames, bool overwrite)
    {
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(judgeNames);
        var sb = new System.Text.StringBuilder();
        sb.Append(new JsonObject { ["judges"] = new JsonArray(judgeNames.Select(n => (JsonNode?)n).ToArray()) }.ToJsonString()).Append('\n');
        foreach (var d in data)
            sb.Append(new JsonObject
            {
                ["prompt"] = d.Prompt,
                ["images"] = d.Images,
                ["labels"] = new JsonArray(d.Labels.Select(l => (JsonNode?)JsonValue.Create(l)).ToArray()),
            }.ToJsonString()).Append('\n');
        AtomicFile.WriteAllText(path, sb.ToString(), overwrite);
    }

    /// <summary>Reads what <see cref="Save"/> wrote, keeping the labels of <paramref name="judgeNames"/> in that order.</summary>
    /// <exception cref="SpmFormatException">A line is not a labelled prompt, or the file has no labels by one of <paramref name="judgeNames"/>.</exception>
    public static IReadOnlyList<LabelledPrompt> Load(string path, IReadOnlyList<string> judgeNames)
    {
        ArgumentNullException.ThrowIfNull(path);
        var lines = File.ReadAllLines(path);
        if (lines.Length == 0) throw new SpmFormatException(path, null, "empty: expected a header line naming the judges.");
        try
        {
            var header = JsonNode.Parse(lines[0])?["judges"]?.AsArray().Select(n => (string?)n ?? "").ToArray()
                ?? throw new SpmFormatException(path, "judges", "the first line does not name the judges.");
            // The cache may hold more judges than asked for (one labelling pass serves many concepts): pick the columns by name.
            var columns = judgeNames.Select(n => Array.IndexOf(header, n)).ToArray();
            int missing = Array.IndexOf(columns, -1);
            if (missing >= 0)
                throw new SpmFormatException(path, "judges", $"has no labels by '{judgeNames[missing]}' (it holds [{string.Join(", ", header)}]): label again, or pass concepts it was labelled for.");
            var data = new List<LabelledPrompt>(lines.Length - 1);
            for (int i = 1; i < lines.Length; i++)
            {
                if (lines[i].Length == 0) continue;
                var o = JsonNode.Parse(lines[i])!.AsObject();
                var labels = o["labels"]!.AsArray().Select(n => (float)n!).ToArray();
                if (labels.Length != header.Length || labels.Any(l => !(l >= 0 && l <= 1)))
                    throw new SpmFormatException(path, $"line {i + 1}", "labels must be one share in [0, 1] per judge.");
                data.Add(new LabelledPrompt((string?)o["prompt"] ?? throw new SpmFormatException(path, $"line {i + 1}", "no prompt."), (int?)o["images"] ?? 1,
                    columns.Select(c => labels[c]).ToArray()));
            }
            return data;
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException or NullReferenceException)
        {
            throw new SpmFormatException(path, null, $"not a labelled-prompt file: {e.Message}", e);
        }
    }

    private sealed class Progress(Action<double> report) : IProgress<double>
    {
        public void Report(double value) => report(value);
    }
}
