using System.Globalization;
using System.Numerics.Tensors;
using System.Text.Json;
using System.Text.Json.Nodes;
using Spm.Core;
using Spm.Core.Gating;
using Spm.Core.IO;
using Spm.Core.Randomness;
using Spm.Training.Attacks;
using Spm.Training.Evaluation;

namespace Spm.Training.Gating;

/// <summary>
/// A prompt whose conditioning was pushed along the concept's direction (<c>E(p) + strength · d</c>), and the share of
/// the base model's images for it that showed the concept.
/// </summary>
/// <param name="Concept">The concept whose direction was added.</param>
/// <param name="Prompt">The prompt (labelled as not showing the concept on its own).</param>
/// <param name="Strength">The multiple of the direction added.</param>
/// <param name="Images">Images drawn.</param>
/// <param name="Label">Share of them that showed the concept.</param>
public sealed record DirectionSample(string Concept, string Prompt, float Strength, int Images, float Label);

/// <summary>
/// Embedding-space augmentation of a learned gate's data. A probe fitted on prompts alone learns what words carry the
/// concept; an attacker who edits the conditioning (Ring-A-Bell: add the concept's direction to an innocent prompt) makes
/// the model draw the concept while the words say otherwise, and a probe that keys on the other words ("dotted") stays
/// shut. Here the same push is applied to prompts the model does not draw the concept for, the base model draws images
/// from the pushed conditioning, the judge labels them, and the samples join the probe's training data: the gate learns
/// to open wherever the conditioning makes the model draw the concept, whatever the words. The direction is the
/// difference of the mean conditioning of the labelled prompts drawn as the concept and of those that are not, so
/// nothing here needs to know the concept's words.
/// </summary>
public static class DirectionAugmentation
{
    /// <summary>
    /// The multiples of the direction tried on each prompt by default. The difference of means is short (a concept
    /// shares most of its conditioning with everything else): on the built-in model, striped's is a quarter of the
    /// length of the paired direction the embedding attack uses, and one multiple makes the model draw stripes for a
    /// quarter of the pushed prompts; twelve reach the attack's strongest push.
    /// </summary>
    public static IReadOnlyList<float> DefaultStrengths { get; } = [1f, 2f, 4f, 8f, 12f];

    /// <summary>
    /// The concept's direction: mean of <paramref name="encode"/>(prompt) over prompts whose label by judge
    /// <paramref name="judgeIndex"/> is at least one half, minus the mean over prompts labelled 0.
    /// </summary>
    /// <exception cref="ArgumentException">No prompt on one side.</exception>
    public static float[] Direction(IReadOnlyList<LabelledPrompt> data, int judgeIndex, Func<string, float[]> encode)
    {
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(encode);
        float[]? pos = null, neg = null;
        int np = 0, nn = 0;
        foreach (var d in data)
        {
            float label = d.Labels[judgeIndex];
            if (label >= 0.5f) Accumulate(ref pos, encode(d.Prompt), ref np);
            else if (label == 0f) Accumulate(ref neg, encode(d.Prompt), ref nn);
        }
        if (np == 0 || nn == 0)
            throw new ArgumentException($"The labelled prompts hold {np} drawn as the concept and {nn} never drawn as it: a direction needs both.", nameof(data));
        TensorPrimitives.Multiply(pos!, 1f / np, pos!);
        TensorPrimitives.Multiply(neg!, 1f / nn, neg!);
        TensorPrimitives.Subtract(pos!, neg!, pos!);
        return pos!;
    }

    private static void Accumulate(ref float[]? sum, float[] e, ref int count)
    {
        sum ??= new float[e.Length];
        if (e.Length != sum.Length) throw new ArgumentException($"Embeddings of {e.Length} and {sum.Length} values.");
        TensorPrimitives.Add(sum, e, sum);
        count++;
    }

    /// <summary>
    /// Picks <paramref name="count"/> prompts labelled 0 by judge <paramref name="judgeIndex"/> (deterministic from
    /// <paramref name="seed"/>), pushes each along <paramref name="direction"/> at every strength, draws
    /// <paramref name="imagesPerSample"/> base-model images per push (every SPM off) and labels them with
    /// <paramref name="judge"/>.
    /// </summary>
    public static IReadOnlyList<DirectionSample> Label(EvalImageGenerator generator, string concept, IReadOnlyList<LabelledPrompt> data, int judgeIndex,
        IConceptJudge judge, float[] direction, IReadOnlyList<float> strengths, int count, int imagesPerSample, ulong seed,
        IProgress<double>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(generator);
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(judge);
        ArgumentNullException.ThrowIfNull(direction);
        ArgumentNullException.ThrowIfNull(strengths);
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(imagesPerSample, 1);
        if (strengths.Count == 0 || strengths.Any(s => !(s > 0f) || !float.IsFinite(s))) throw new ArgumentException("Strengths must be positive and finite.", nameof(strengths));
        var rng = new SeededRandom(seed ^ 0xD12E_C710UL);
        var negatives = data.Where(d => d.Labels[judgeIndex] == 0f).Select(d => d.Prompt).Distinct(StringComparer.Ordinal).ToList();
        for (int i = negatives.Count - 1; i > 0; i--)
        {
            int j = rng.NextInt(0, i + 1);
            (negatives[i], negatives[j]) = (negatives[j], negatives[i]);
        }
        var chosen = negatives.Take(count).ToList();
        var zero = new float[generator.SpmCount];
        var requests = new List<EvalImageRequest>(chosen.Count * strengths.Count * imagesPerSample);
        foreach (var p in chosen)
        {
            var e = generator.Encode(p).Embedding;
            foreach (var s in strengths)
            {
                var pushed = new float[e.Length];
                TensorPrimitives.MultiplyAdd(direction, s, e, pushed);
                for (int k = 0; k < imagesPerSample; k++) requests.Add(new EvalImageRequest(p, rng.NextUInt64(), zero, pushed));
            }
        }
        var relay = progress is null ? null : new Relay(d => progress.Report(d / Math.Max(1, requests.Count)));
        var images = generator.Generate(requests, relay, cancellationToken);
        int size = generator.ImageSize, r = 0;
        var result = new List<DirectionSample>(chosen.Count * strengths.Count);
        foreach (var p in chosen)
            foreach (var s in strengths)
            {
                int shown = 0;
                for (int k = 0; k < imagesPerSample; k++, r++) if (judge.Shows(images[r], size, size)) shown++;
                result.Add(new DirectionSample(concept, p, s, imagesPerSample, shown / (float)imagesPerSample));
            }
        return result;
    }

    /// <summary>The samples as probe training data: <c>E(prompt) + strength · direction</c>, weighted by their images.</summary>
    /// <param name="samples">The labelled pushes.</param>
    /// <param name="direction">The concept's direction.</param>
    /// <param name="encode">Prompt -> E(prompt).</param>
    /// <param name="midWord">Prompt -> its mid-word mask (<see cref="ProbeSample.MidWord"/>), or null.</param>
    public static IReadOnlyList<ProbeSample> ToProbeSamples(IReadOnlyList<DirectionSample> samples, float[] direction, Func<string, float[]> encode,
        Func<string, bool[]?>? midWord = null)
    {
        ArgumentNullException.ThrowIfNull(samples);
        ArgumentNullException.ThrowIfNull(direction);
        ArgumentNullException.ThrowIfNull(encode);
        var list = new List<ProbeSample>(samples.Count);
        foreach (var s in samples)
        {
            var e = encode(s.Prompt);
            if (e.Length != direction.Length) throw new ArgumentException($"The direction has {direction.Length} values; the embedding of \"{s.Prompt}\" has {e.Length}.", nameof(direction));
            var pushed = new float[e.Length];
            TensorPrimitives.MultiplyAdd(direction, s.Strength, e, pushed);
            list.Add(new ProbeSample(string.Create(CultureInfo.InvariantCulture, $"{s.Prompt} + {s.Strength:0.##} d"), pushed, s.Label, s.Images, midWord?.Invoke(s.Prompt)));
        }
        return list;
    }

    /// <summary>
    /// Writes <paramref name="samples"/> as JSON lines (one per sample, its concept named), atomically; samples of other
    /// concepts already in the file are kept.
    /// </summary>
    public static void Save(string path, IReadOnlyList<DirectionSample> samples)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(samples);
        var concepts = samples.Select(s => s.Concept).ToHashSet(StringComparer.Ordinal);
        var kept = File.Exists(path) ? Load(path).Where(s => !concepts.Contains(s.Concept)) : [];
        var sb = new System.Text.StringBuilder();
        foreach (var s in kept.Concat(samples))
            sb.Append(new JsonObject
            {
                ["concept"] = s.Concept,
                ["prompt"] = s.Prompt,
                ["strength"] = s.Strength,
                ["images"] = s.Images,
                ["label"] = s.Label,
            }.ToJsonString()).Append('\n');
        AtomicFile.WriteAllText(path, sb.ToString(), overwrite: true);
    }

    /// <summary>Reads what <see cref="Save"/> wrote (every concept's samples).</summary>
    /// <exception cref="SpmFormatException">A line is not a direction sample.</exception>
    public static IReadOnlyList<DirectionSample> Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        var list = new List<DirectionSample>();
        int line = 0;
        foreach (var text in File.ReadLines(path))
        {
            line++;
            if (text.Length == 0) continue;
            try
            {
                var o = JsonNode.Parse(text)!.AsObject();
                var sample = new DirectionSample((string?)o["concept"] ?? throw new FormatException("no concept"), (string?)o["prompt"] ?? throw new FormatException("no prompt"),
                    (float?)o["strength"] ?? throw new FormatException("no strength"), (int?)o["images"] ?? throw new FormatException("no images"),
                    (float?)o["label"] ?? throw new FormatException("no label"));
                if (!(sample.Label >= 0f && sample.Label <= 1f) || sample.Images < 1 || !(sample.Strength > 0f) || !float.IsFinite(sample.Strength))
                    throw new FormatException("the label must lie in [0, 1], images be at least 1 and the strength positive");
                list.Add(sample);
            }
            catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException or NullReferenceException)
            {
                throw new SpmFormatException(path, $"line {line}", $"not a direction sample: {e.Message}", e);
            }
        }
        return list;
    }

    private sealed class Relay(Action<double> report) : IProgress<double>
    {
        public void Report(double value) => report(value);
    }
}
