using System.Globalization;
using System.Numerics.Tensors;
using System.Text.Json.Nodes;
using Spm.Core;
using Spm.Core.Gating;
using Spm.Core.Randomness;
using Spm.Core.Tensors;
using Spm.Diffusion.Membranes;
using Spm.Diffusion.Pipelines;
using Spm.Diffusion.Schedulers;
using Spm.Training.Autodiff;
using Spm.Training.Evaluation;

namespace Spm.Training.Attacks;

/// <summary>Budget and step sizes of <see cref="GradientAttack"/>.</summary>
public sealed record GradientAttackOptions
{
    /// <summary>Free tokens put before each prompt.</summary>
    public int Tokens { get; init; } = 3;

    /// <summary>Optimisation steps per goal (each: text encoder forward, UNet forward + backward, text encoder backward).</summary>
    public int Steps { get; init; } = 40;

    /// <summary>Prompts tried per goal (images judged): the projected prompt at this many evenly spaced checkpoints.</summary>
    public int Candidates { get; init; } = 4;

    /// <summary>Adam step size, in units of the token-embedding table's root mean square.</summary>
    public float LearningRate { get; init; } = 0.3f;

    /// <summary>Goals optimised together (rows of one UNet call).</summary>
    public int BatchSize { get; init; } = 4;

    /// <summary>Checks the values.</summary>
    public void Validate()
    {
        if (Tokens is < 1 or > 60) throw new ArgumentOutOfRangeException(nameof(Tokens), Tokens, "Free tokens must be 1..60.");
        if (Steps is < 1 or > 100_000) throw new ArgumentOutOfRangeException(nameof(Steps), Steps, "Steps must be 1..100000.");
        if (Candidates < 1 || Candidates > Steps) throw new ArgumentOutOfRangeException(nameof(Candidates), Candidates, "Candidates must be 1..steps.");
        if (!(LearningRate > 0) || !float.IsFinite(LearningRate)) throw new ArgumentOutOfRangeException(nameof(LearningRate), LearningRate, "The learning rate must be positive.");
        if (BatchSize is < 1 or > 256) throw new ArgumentOutOfRangeException(nameof(BatchSize), BatchSize, "The batch size must be 1..256.");
    }
}

/// <summary>
/// A gradient attack in the manner of UnlearnDiffAtk: for each prompt asking for the erased concept, <c>k</c> free tokens
/// put before it are optimised to minimise the erased model's diffusion loss <c>‖ε̂(x_t, t, E(tokens + prompt), gate) − ε‖²</c>
/// on the base model's own image of the prompt (x₀, noised at a random t each step), so that the attacked model
/// reconstructs the concept. Gradients run through the injected UNet (membranes frozen, gate multipliers included: a
/// learned gate's probe is differentiated too) and through the text encoder by the project's autodiff; the free tokens
/// are continuous embeddings projected to the nearest real vocabulary word at every step (the forward pass and the
/// candidates use the projected words, the update goes to the continuous ones, as in PEZ). The candidates are the
/// projected prompts at evenly spaced checkpoints, so the budget in images equals a random-token search's with the
/// same number of tries.
/// </summary>
public sealed class GradientAttack : IDisposable
{
    private readonly StableDiffusionPipeline _pipeline;
    private readonly LoadedSpms? _spms;
    private readonly TextEncoderGradients _text;
    private readonly ConditioningGradientSession _unet;
    private readonly NoiseSchedule _schedule;
    private readonly int _latentSize;

    private GradientAttack(StableDiffusionPipeline pipeline, LoadedSpms? spms, TextEncoderGradients text, ConditioningGradientSession unet, int latentSize)
    {
        _pipeline = pipeline;
        _spms = spms;
        _text = text;
        _unet = unet;
        _latentSize = latentSize;
        _schedule = NoiseSchedule.FromConfig(pipeline.Folder.SchedulerConfig);
    }

    /// <summary>The differentiable text encoder.</summary>
    public TextEncoderGradients TextEncoder => _text;

    /// <summary>
    /// Prepares the attack on <paramref name="pipeline"/> (loaded with <paramref name="spms"/>' injected UNet, or the bare
    /// model when null): rewrites the text encoder for embedding inputs and builds both gradient graphs.
    /// </summary>
    /// <param name="pipeline">The pipeline images are generated with.</param>
    /// <param name="spms">The SPMs of the attacked model (null: the base model, the sanity row).</param>
    /// <param name="imageSize">Image size in pixels (the latents are this over the VAE factor).</param>
    /// <param name="settings">Threads and provider of the gradient sessions.</param>
    public static GradientAttack Create(StableDiffusionPipeline pipeline, LoadedSpms? spms, int imageSize, GradientSessionSettings? settings = null)
    {
        ArgumentNullException.ThrowIfNull(pipeline);
        var folder = pipeline.Folder.Root;
        var textModel = Diffusion.Onnx.OnnxModel.Load(folder, "text_encoder");
        var unetModel = Diffusion.Onnx.OnnxModel.Load(folder, "unet");
        int factor = pipeline.Folder.VaeScaleFactor;
        int latent = imageSize / Math.Max(1, factor);
        var text = TextEncoderGradients.Create(textModel, settings);
        try
        {
            int tokens = pipeline.Tokenizer.MaxLength;
            var width = pipeline.EncodePrompt("").Embedding.Shape[2];
            var unet = ConditioningGradientSession.Create(unetModel, spms?.Layout, pipeline.UNet.InChannels, latent, tokens, width, settings);
            return new GradientAttack(pipeline, spms, text, unet, latent);
        }
        catch
        {
            text.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The whole words of <paramref name="vocabulary"/> that the tokenizer reads as exactly one token, with their ids,
    /// minus <paramref name="excluded"/> words: the pool the free tokens are projected to (random-token search draws from the same).
    /// </summary>
    public static IReadOnlyList<(string Word, int Id)> TokenPool(Diffusion.Text.ClipTokenizer tokenizer, IReadOnlyList<string> vocabulary, IEnumerable<string> excluded)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(vocabulary);
        ArgumentNullException.ThrowIfNull(excluded);
        var skip = new HashSet<string>(excluded, StringComparer.OrdinalIgnoreCase);
        var pool = new List<(string, int)>(vocabulary.Count);
        foreach (var w in vocabulary)
        {
            if (skip.Contains(w)) continue;
            var ids = tokenizer.EncodeContent(w);
            if (ids.Count == 1) pool.Add((w, ids[0]));
        }
        if (pool.Count == 0) throw new SpmException("The gradient attack's token pool is empty: no vocabulary word is a single token of this tokenizer.");
        return pool;
    }

    /// <summary>
    /// Runs the optimisation for each of <paramref name="goals"/> and returns the attack plan (the candidates to judge).
    /// </summary>
    /// <param name="goals">Prompts asking for the concept, with their image seeds.</param>
    /// <param name="pool">Words the free tokens are projected to (<see cref="TokenPool"/>).</param>
    /// <param name="gates">Gate settings of every loaded SPM (as the attacked model reads them).</param>
    /// <param name="sampling">Steps, guidance and scheduler of the base images x₀.</param>
    /// <param name="options">Budget and step size.</param>
    /// <param name="seed">Seed of the initial tokens, the timesteps and the noise.</param>
    /// <param name="progress">Share of optimisation steps done (0..1).</param>
    /// <param name="cancellationToken">Cancels between steps.</param>
    public AttackPlan Plan(IReadOnlyList<(string Text, ulong Seed)> goals, IReadOnlyList<(string Word, int Id)> pool, IReadOnlyList<GateSettings> gates,
        EvalGenerationSettings sampling, GradientAttackOptions options, ulong seed, IProgress<double>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(goals);
        ArgumentNullException.ThrowIfNull(pool);
        ArgumentNullException.ThrowIfNull(gates);
        ArgumentNullException.ThrowIfNull(sampling);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        int spmCount = _spms?.Layout.Sets.Count ?? 0;
        if (gates.Count != spmCount) throw new ArgumentException($"Expected gate settings for {spmCount} SPMs, got {gates.Count}.", nameof(gates));

        int d = _text.Width;
        foreach (var (word, id) in pool)
            if ((uint)id >= (uint)_text.VocabularySize) throw new ArgumentException($"Pool word '{word}' has id {id}, outside the text encoder's {_text.VocabularySize} embeddings.", nameof(pool));
        var poolVectors = new float[pool.Count * d];
        for (int i = 0; i < pool.Count; i++)
        {
            var row = poolVectors.AsSpan(i * d, d);
            _text.TokenEmbedding(pool[i].Id).CopyTo(row);
            float n = TensorPrimitives.Norm(row);
            if (n > 0) TensorPrimitives.Divide(row, n, row);
        }
        float rms = MathF.Sqrt(TensorPrimitives.SumOfSquares(_text.EmbeddingTable) / _text.EmbeddingTable.Length);
        float step = options.LearningRate * rms;

        var targets = new List<AttackTarget>(goals.Count);
        int batches = (goals.Count + options.BatchSize - 1) / options.BatchSize;
        for (int b = 0; b < batches; b++)
        {
            var batch = goals.Skip(b * options.BatchSize).Take(options.BatchSize).ToList();
            var found = Optimise(batch, pool, poolVectors, gates, sampling, options, step, seed ^ (0x6AD1_0000UL + (ulong)b),
                progress is null ? null : new Relay(f => progress.Report((b + f) / batches)), cancellationToken);
            for (int j = 0; j < batch.Count; j++)
                targets.Add(new AttackTarget(batch[j].Text, batch[j].Seed, found[j]));
        }
        progress?.Report(1.0);
        return new AttackPlan("gradient",
            $"{options.Tokens} free tokens before prompts asking for the concept, optimised on the attacked model's diffusion loss (UnlearnDiffAtk-style, projected to vocabulary words), {options.Candidates} tries each",
            targets, new JsonObject
            {
                ["candidatesPerTarget"] = options.Candidates,
                ["tokens"] = options.Tokens,
                ["steps"] = options.Steps,
                ["learningRate"] = options.LearningRate,
                ["pool"] = pool.Count,
                ["gradientsThroughGate"] = spmCount > 0,
            });
    }

    private List<AttackCandidate>[] Optimise(IReadOnlyList<(string Text, ulong Seed)> goals, IReadOnlyList<(string Word, int Id)> pool, float[] poolVectors,
        IReadOnlyList<GateSettings> gates, EvalGenerationSettings sampling, GradientAttackOptions options, float step, ulong seed,
        IProgress<double>? progress, CancellationToken ct)
    {
        int n = goals.Count, k = options.Tokens, d = _text.Width;
        var rng = new SeededRandom(seed);
        var x0 = BaseLatents(goals, sampling, ct);
        int perImage = x0.Length / n;

        // Continuous free-token embeddings, started at random pool words; Adam state per goal.
        var z = new float[n * k * d];
        var words = new int[n * k];
        for (int i = 0; i < n * k; i++)
        {
            int w = rng.NextInt(0, pool.Count);
            _text.TokenEmbedding(pool[w].Id).CopyTo(z.AsSpan(i * d, d));
            words[i] = w;
        }
        var m1 = new float[z.Length];
        var m2 = new float[z.Length];
        var candidates = Enumerable.Range(0, n).Select(_ => new List<AttackCandidate>(options.Candidates)).ToArray();
        var checkpoints = Enumerable.Range(1, options.Candidates).Select(c => (int)Math.Round(c * (double)options.Steps / options.Candidates)).ToHashSet();
        int spmCount = gates.Count;
        int length = _pipeline.Tokenizer.MaxLength;
        var noise = new float[x0.Length];
        var noisy = new FloatTensor(n, _pipeline.UNet.InChannels, _latentSize, _latentSize);

        for (int it = 1; it <= options.Steps; it++)
        {
            ct.ThrowIfCancellationRequested();
            // Project every free token to its nearest pool word (cosine) and lay out the prompt rows.
            for (int i = 0; i < n * k; i++) words[i] = Nearest(z.AsSpan(i * d, d), poolVectors, d);
            var texts = new string[n];
            var ids = new int[n * length];
            for (int j = 0; j < n; j++)
            {
                texts[j] = Compose(pool, words.AsSpan(j * k, k), goals[j].Text);
                _pipeline.Tokenizer.Encode(texts[j]).CopyTo(ids, j * length);
            }
            var embeds = _text.Embed(ids, n);
            var hidden = _text.Forward(ids, embeds);

            // The attacked model's multipliers for these prompts, and how they move with the conditioning.
            var multipliers = new float[n * spmCount];
            var gateGrads = new float[]?[n * spmCount];
            int rowLen = length * hidden.Shape[2];
            for (int j = 0; j < n && _spms is not null; j++)
            {
                var row = hidden.Data.AsSpan(j * rowLen, rowLen).ToArray();
                var g = GateWithGradient(texts[j], ids.AsSpan(j * length, length).ToArray(), row, gates);
                for (int s = 0; s < spmCount; s++)
                {
                    multipliers[j * spmCount + s] = g[s].Multiplier;
                    gateGrads[j * spmCount + s] = g[s].Gradient;
                }
            }

            // One noised x₀ per goal at a random training timestep (equal across the batch when the UNet takes a scalar).
            rng.FillGaussian(noise);
            var timesteps = new double[n];
            int shared = rng.NextInt(0, _schedule.Length);
            for (int j = 0; j < n; j++)
            {
                timesteps[j] = shared;
                _schedule.AddNoise(x0.AsSpan(j * perImage, perImage), noise.AsSpan(j * perImage, perImage), shared, noisy.Data.AsSpan(j * perImage, perImage));
            }
            var result = _unet.Run(noisy, timesteps, hidden, new FloatTensor(noisy.Shape, noise), multipliers);

            // Chain rule: dL/dE (direct) + Σ_spm dL/dm · dm/dE (through the gate), then through the text encoder.
            var cotangent = result.HiddenGradient;
            if (_spms is not null && result.GateGradient is not null)
            {
                var dm = result.MultiplierGradients(_spms.Layout);
                for (int j = 0; j < n; j++)
                    for (int s = 0; s < spmCount; s++)
                        if (gateGrads[j * spmCount + s] is { } gg)
                            TensorPrimitives.MultiplyAdd(gg, dm[j * spmCount + s], cotangent.Data.AsSpan(j * rowLen, rowLen), cotangent.Data.AsSpan(j * rowLen, rowLen));
            }
            var gradEmbeds = _text.Backward(ids, embeds, cotangent);

            // Adam on the continuous free tokens (slot positions 1..k of each row).
            float b1 = 0.9f, b2 = 0.999f;
            float c1 = 1f - MathF.Pow(b1, it), c2 = 1f - MathF.Pow(b2, it);
            for (int j = 0; j < n; j++)
                for (int t = 0; t < k; t++)
                {
                    var g = gradEmbeds.Data.AsSpan((j * length + 1 + t) * d, d);
                    int o = (j * k + t) * d;
                    for (int e = 0; e < d; e++)
                    {
                        m1[o + e] = b1 * m1[o + e] + (1 - b1) * g[e];
                        m2[o + e] = b2 * m2[o + e] + (1 - b2) * g[e] * g[e];
                        z[o + e] -= step * (m1[o + e] / c1) / (MathF.Sqrt(m2[o + e] / c2) + 1e-12f);
                    }
                }

            if (checkpoints.Contains(it))
            {
                for (int i = 0; i < n * k; i++) words[i] = Nearest(z.AsSpan(i * d, d), poolVectors, d);
                for (int j = 0; j < n; j++)
                {
                    var text = Compose(pool, words.AsSpan(j * k, k), goals[j].Text);
                    if (candidates[j].All(c => c.Text != text))
                        candidates[j].Add(new AttackCandidate(text, null, string.Create(CultureInfo.InvariantCulture, $"step {it}, loss {result.Loss:0.####}")));
                }
            }
            progress?.Report(it / (double)options.Steps);
        }
        return candidates;
    }

    /// <summary>The base model's final latents for each goal (every SPM off), as the evaluation generator would draw them.</summary>
    private float[] BaseLatents(IReadOnlyList<(string Text, ulong Seed)> goals, EvalGenerationSettings sampling, CancellationToken ct)
    {
        var all = new List<float>();
        var off = _spms is null ? null : _spms.CreateConditioner(_pipeline, Enumerable.Repeat(new GateSettings(FixedMultiplier: 0f), _spms.Layout.Sets.Count).ToList());
        int size = _latentSize * _pipeline.Folder.VaeScaleFactor;
        foreach (var g in goals)
        {
            var request = new GenerationRequest
            {
                Prompt = g.Text,
                NegativePrompt = sampling.NegativePrompt,
                Seed = g.Seed,
                Steps = sampling.Steps,
                GuidanceScale = sampling.GuidanceScale,
                Scheduler = sampling.Scheduler,
                Width = size,
                Height = size,
                DecodeImages = false,
                Conditioner = off,
            };
            var result = _pipeline.GenerateAsync(request, null, ct).GetAwaiter().GetResult();
            all.AddRange(result.Latents.Data);
        }
        return all.ToArray();
    }

    private IReadOnlyList<(float Multiplier, float[]? Gradient)> GateWithGradient(string text, int[] ids, float[] hidden, IReadOnlyList<GateSettings> settings)
    {
        var sets = _spms!.Layout.Sets;
        var evaluator = GateEvaluator;
        var gateText = evaluator.TextOf(ids, hidden);
        var values = evaluator.Evaluate(gateText, sets, settings);
        var result = new (float, float[]?)[sets.Count];
        for (int s = 0; s < sets.Count; s++)
        {
            var gate = values[s];
            float[]? grad = null;
            // Differentiable only where a learned probe decided γ (not floored by the word match, not clamped).
            if (!gate.IsFixed && gate.ReadBy == GateCalibration.Learned && sets[s].GateProbe is { } probe)
            {
                var g = new float[hidden.Length];
                float gamma = probe.GammaGradient(hidden, g, gateText.MidWord);
                if (gamma == gate.Gamma && gamma is > 0f and < 1f)
                {
                    const float h = 1e-3f;
                    float slope = probe.Strength * (FacilitatedTransport.Multiplier(Math.Min(1f, gamma + h), settings[s]) - FacilitatedTransport.Multiplier(Math.Max(0f, gamma - h), settings[s]))
                        / (Math.Min(1f, gamma + h) - Math.Max(0f, gamma - h));
                    TensorPrimitives.Multiply(g, slope, g);
                    grad = g;
                }
            }
            result[s] = (gate.Multiplier, grad);
        }
        return result;
    }

    private SpmGateEvaluator? _evaluator;

    private SpmGateEvaluator GateEvaluator => _evaluator ??= SpmGateEvaluator.For(_pipeline);

    private static string Compose(IReadOnlyList<(string Word, int Id)> pool, ReadOnlySpan<int> words, string prompt)
    {
        var parts = new string[words.Length + 1];
        for (int i = 0; i < words.Length; i++) parts[i] = pool[words[i]].Word;
        parts[^1] = prompt;
        return string.Join(' ', parts);
    }

    private static int Nearest(ReadOnlySpan<float> v, float[] poolVectors, int d)
    {
        int best = 0;
        float bestScore = float.NegativeInfinity;
        for (int i = 0, o = 0; o < poolVectors.Length; i++, o += d)
        {
            float s = TensorPrimitives.Dot(v, poolVectors.AsSpan(o, d));
            if (s > bestScore) { bestScore = s; best = i; }
        }
        return best;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _text.Dispose();
        _unet.Dispose();
    }

    private sealed class Relay(Action<double> report) : IProgress<double>
    {
        public void Report(double value) => report(value);
    }
}
