using System.Diagnostics;
using System.Text.Json.Nodes;
using Spm.Core.Gating;
using Spm.Core.Library;
using Spm.Core.Randomness;
using Spm.Diffusion.Pipelines;

namespace Spm.Benchmarks;

/// <summary>Settings of <see cref="GateBenchmark.Run"/>.</summary>
/// <param name="Spms">Synthetic SPMs in the library.</param>
/// <param name="Prompts">Prompts routed per round.</param>
/// <param name="Rounds">Measured rounds (after one warm-up round); every round routes every prompt once each way, interleaved.</param>
/// <param name="LearnedFraction">The share of SPMs given a (random, linear) learned gate probe; the rest read the empty-calibrated cosine gate.</param>
/// <param name="Threshold">The routing threshold on gamma.</param>
/// <param name="TopK">At most this many SPMs routed (null: all that open).</param>
/// <param name="Seed">Seed of the synthetic concepts and probes.</param>
public sealed record GateBenchmarkOptions(int Spms = 1000, int Prompts = 16, int Rounds = 5, double LearnedFraction = 0.5,
    float Threshold = float.Epsilon, int? TopK = null, ulong Seed = 1);

/// <summary>Per-prompt routing times (medians over prompts × rounds) measured in one run.</summary>
/// <param name="Spms">SPMs in the library.</param>
/// <param name="LearnedSpms">Of those, SPMs read by their learned gate (batched probe pass).</param>
/// <param name="Samples">Timed samples per way (prompts × rounds).</param>
/// <param name="RouteMs">Batched routing, text encoder excluded (the prompt's embedding is given).</param>
/// <param name="RouteWithEncoderMs">Batched routing including the prompt's tokenizer and text-encoder pass.</param>
/// <param name="EncodeMs">The tokenizer and text-encoder pass alone.</param>
/// <param name="PerSpmLoopMs">The baseline: one <see cref="FacilitatedTransport.Read"/> per SPM, then the same selection, encoder excluded.</param>
/// <param name="MeanRouted">The mean number of SPMs routed per prompt.</param>
/// <param name="SubsetMismatches">Prompts whose routed subset (indices and multipliers) differed from the per-SPM loop's (0 expected).</param>
/// <param name="SetupSeconds">Encoding the synthetic concepts and building the batched gate.</param>
public sealed record GateBenchmarkResult(int Spms, int LearnedSpms, int Samples, double RouteMs, double RouteWithEncoderMs, double EncodeMs,
    double PerSpmLoopMs, double MeanRouted, int SubsetMismatches, double SetupSeconds)
{
    /// <summary>How many times faster the batched route is than the per-SPM loop (encoder excluded).</summary>
    public double Speedup => RouteMs > 0 ? PerSpmLoopMs / RouteMs : double.NaN;

    /// <summary>The result as the JSON object <c>spm bench gate --json</c> writes.</summary>
    public JsonObject ToJson(string model, GateBenchmarkOptions options) => new()
    {
        ["benchmark"] = "gate",
        ["model"] = model,
        ["spms"] = Spms,
        ["learned_spms"] = LearnedSpms,
        ["prompts"] = options.Prompts,
        ["rounds"] = options.Rounds,
        ["samples"] = Samples,
        ["route_ms_median"] = Math.Round(RouteMs, 4),
        ["route_ms_with_text_encoder_median"] = Math.Round(RouteWithEncoderMs, 4),
        ["encode_ms_median"] = Math.Round(EncodeMs, 4),
        ["per_spm_loop_ms_median"] = Math.Round(PerSpmLoopMs, 4),
        ["speedup_vs_per_spm_loop"] = Math.Round(Speedup, 2),
        ["mean_routed"] = Math.Round(MeanRouted, 2),
        ["subset_mismatches"] = SubsetMismatches,
        ["setup_s"] = Math.Round(SetupSeconds, 2),
    };
}

/// <summary>
/// Routing time of a concept library per prompt on a model's real text encoder: N synthetic SPMs (concept texts made
/// of a few words, embedded by the encoder; a share with random linear gate probes carrying the encoder's fingerprint),
/// routed by <see cref="LibraryGate"/> with the text encoder excluded and included, against the baseline of the
/// per-SPM loop (<see cref="FacilitatedTransport.Read"/> once per SPM, what a conditioner without batching does),
/// measured interleaved in the same run. Also checks that both ways choose the same subset.
/// </summary>
public static class GateBenchmark
{
    private static readonly string[] Words =
    [
        "red", "green", "blue", "yellow", "purple", "orange", "pink", "brown", "black", "white", "gray", "golden",
        "circle", "square", "triangle", "star", "heart", "cross", "hexagon", "diamond", "moon", "arrow", "ring", "oval",
        "striped", "dotted", "checkered", "plain", "wavy", "spotted", "outlined", "shaded", "large", "small", "tiny",
        "cat", "dog", "car", "tree", "house", "boat", "flower", "bird", "horse", "castle", "bridge", "river", "cloud",
        "painting", "photo", "sketch", "cartoon", "logo", "poster", "statue", "portrait", "landscape", "night", "snow",
    ];

    private static readonly string[] PromptTexts =
    [
        "a red circle on a white background", "a blue striped square on a black background", "a green star",
        "a yellow heart on a gray background", "a photo of a cat on a boat", "a painting of a castle at night",
        "a small dotted triangle", "a purple hexagon on an orange background", "a sketch of a horse near a river",
        "a golden ring", "a cartoon dog under a tree", "a poster of a flower", "two pink moons", "a checkered diamond",
        "a landscape with snow and clouds", "an outlined arrow on a white background",
    ];

    /// <summary>Runs the benchmark with <paramref name="pipeline"/>'s tokenizer and text encoder.</summary>
    /// <param name="pipeline">A loaded pipeline (only its tokenizer and text encoder are used).</param>
    /// <param name="options">Sizes and routing settings.</param>
    /// <param name="progress">Concepts encoded so far while setting up, then the rounds done (as a count of the total <c>Spms + Rounds + 1</c>).</param>
    /// <param name="cancellationToken">Stops between encodings and rounds.</param>
    public static GateBenchmarkResult Run(StableDiffusionPipeline pipeline, GateBenchmarkOptions options, IProgress<int>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(pipeline);
        ArgumentNullException.ThrowIfNull(options);
        if (options.Spms < 1 || options.Prompts < 1 || options.Rounds < 1)
            throw new ArgumentException("The benchmark needs at least one SPM, one prompt and one round.", nameof(options));
        var tok = pipeline.Tokenizer;
        int[] specials = [tok.BosId, tok.EosId, tok.PadId];
        GateText Encode(string text)
        {
            var (ids, embedding) = pipeline.EncodePrompt(text, cancellationToken);
            return new GateText(embedding.Data, ids, specials);
        }

        var setup = Stopwatch.StartNew();
        var rng = new SeededRandom(options.Seed);
        var empty = Encode("");
        int width = empty.Embedding.Length / 77;
        var signature = ConceptProbe.EncoderSignature(empty.Embedding, width);
        var names = new string[options.Spms];
        var concepts = new IReadOnlyList<GateText>[options.Spms];
        var probes = new ConceptProbe?[options.Spms];
        var cache = new Dictionary<string, GateText>(StringComparer.Ordinal);
        for (int i = 0; i < options.Spms; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            int words = rng.NextInt(1, 4);
            var text = string.Join(' ', Enumerable.Range(0, words).Select(_ => Words[rng.NextInt(0, Words.Length)]));
            names[i] = $"spm{i}";
            if (!cache.TryGetValue(text, out var g)) cache[text] = g = Encode(text);
            concepts[i] = [g];
            if (rng.NextDouble() < options.LearnedFraction)
            {
                var w = new float[width];
                for (int k = 0; k < width; k++) w[k] = (float)(rng.NextDouble() * 2 - 1) * 0.3f;
                probes[i] = new ConceptProbe(text, w, (float)(-4 - 4 * rng.NextDouble()), 1f, signature);
            }
            if (i % 64 == 0) progress?.Report(i);
        }
        var settings = GateSettings.Default;
        var gate = new LibraryGate(names, concepts, probes, settings, empty);
        bool[] fits = probes.Select(p => p is not null && p.Fits(empty.Embedding)).ToArray();
        setup.Stop();
        progress?.Report(options.Spms);

        var prompts = Enumerable.Range(0, options.Prompts).Select(i => PromptTexts[i % PromptTexts.Length] + (i >= PromptTexts.Length ? $" {Words[i % Words.Length]}" : "")).ToArray();
        var promptTexts = prompts.Select(Encode).ToArray();
        var route = new List<double>();
        var withEncoder = new List<double>();
        var encode = new List<double>();
        var loop = new List<double>();
        long routedTotal = 0;
        int mismatches = 0;
        for (int round = 0; round <= options.Rounds; round++)
        {
            bool warm = round == 0;
            for (int p = 0; p < prompts.Length; p++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var sw = Stopwatch.StartNew();
                var routed = gate.Route(promptTexts[p], options.Threshold, options.TopK);
                double routeMs = sw.Elapsed.TotalMilliseconds;

                sw.Restart();
                var text = Encode(prompts[p]);
                double encodeMs = sw.Elapsed.TotalMilliseconds;
                gate.Route(text, options.Threshold, options.TopK);
                double withMs = sw.Elapsed.TotalMilliseconds;

                // The baseline: the gate read one SPM at a time, as SpmGateEvaluator does for a set of loaded SPMs.
                sw.Restart();
                var readings = new GateReading[names.Length];
                for (int i = 0; i < names.Length; i++)
                    readings[i] = FacilitatedTransport.Read(promptTexts[p], concepts[i], settings, empty, probes[i], fits[i], names[i]);
                var chosen = LibraryRouter.Select(readings.Select(r => r.Gamma).ToArray(), options.Threshold, options.TopK);
                double loopMs = sw.Elapsed.TotalMilliseconds;

                if (warm) continue;
                route.Add(routeMs);
                withEncoder.Add(withMs);
                encode.Add(encodeMs);
                loop.Add(loopMs);
                routedTotal += routed.Count;
                if (!routed.Select(r => r.Index).SequenceEqual(chosen) || !routed.Select(r => r.Multiplier).SequenceEqual(chosen.Select(i => readings[i].Multiplier)))
                    mismatches++;
            }
            progress?.Report(options.Spms + round + 1);
        }
        return new GateBenchmarkResult(options.Spms, gate.BatchedProbes, route.Count, Median(route), Median(withEncoder), Median(encode), Median(loop),
            (double)routedTotal / route.Count, mismatches, setup.Elapsed.TotalSeconds);
    }

    private static double Median(List<double> values)
    {
        var s = values.Order().ToArray();
        return s.Length == 0 ? double.NaN : s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2;
    }
}
