using System.Collections.Concurrent;
using System.Numerics.Tensors;
using Microsoft.ML.OnnxRuntime;
using Spm.Core;
using Spm.Core.Gating;
using Spm.Core.Randomness;
using Spm.Core.Tensors;
using Spm.Diffusion.Images;
using Spm.Diffusion.Membranes;
using Spm.Diffusion.Pipelines;
using Spm.Diffusion.Schedulers;

namespace Spm.Training.Evaluation;

/// <summary>One image for an evaluation: a prompt, its seed, and the multiplier of every loaded SPM.</summary>
/// <param name="Prompt">The prompt text.</param>
/// <param name="Seed">The image seed (the image <c>spm generate --seed Seed</c> makes for the prompt).</param>
/// <param name="Multipliers">One multiplier per SPM of the generator (in load order), used in both guidance rows; 0 switches an SPM off. Empty without SPMs.</param>
/// <param name="Embedding">
/// The conditioning to use instead of the text encoder's for <paramref name="Prompt"/> (flattened [L, D], the encoder's
/// shape): how an embedding-space attack feeds the UNet. Null: encode the prompt.
/// </param>
public sealed record EvalImageRequest(string Prompt, ulong Seed, IReadOnlyList<float> Multipliers, float[]? Embedding = null);

/// <summary>How evaluation images are generated.</summary>
public sealed record EvalGenerationSettings
{
    /// <summary>Denoising steps.</summary>
    public int Steps { get; init; } = 20;

    /// <summary>Classifier-free guidance scale (1 or below: no unconditional row).</summary>
    public double GuidanceScale { get; init; } = 5.0;

    /// <summary>Scheduler name (pndm, ddim, euler, ...); null = the model's configured one.</summary>
    public string? Scheduler { get; init; }

    /// <summary>Side of the square images in pixels; null = the model's default size.</summary>
    public int? ImageSize { get; init; }

    /// <summary>Images denoised together per UNet call (the UNet batch is twice this with guidance).</summary>
    public int BatchSize { get; init; } = 8;

    /// <summary>
    /// Batches generated at the same time (each on its own thread; the sessions are shared). On a small CPU, 2 with one
    /// intra-op thread each can beat 1 with two threads, because small kernels parallelise poorly inside.
    /// </summary>
    public int Parallelism { get; init; } = 1;

    /// <summary>The negative prompt (the unconditional row).</summary>
    public string NegativePrompt { get; init; } = "";

    /// <summary>Throws <see cref="InvalidGenerationRequestException"/> for unusable settings.</summary>
    public void Validate()
    {
        if (Steps is < 1 or > 1000) throw new InvalidGenerationRequestException($"steps must be 1..1000, got {Steps}.");
        if (!double.IsFinite(GuidanceScale)) throw new InvalidGenerationRequestException($"guidance scale must be finite, got {GuidanceScale}.");
        if (BatchSize is < 1 or > 256) throw new InvalidGenerationRequestException($"batch size must be 1..256, got {BatchSize}.");
        if (Parallelism is < 1 or > 64) throw new InvalidGenerationRequestException($"parallelism must be 1..64, got {Parallelism}.");
        if (ImageSize is < 16 or > 4096) throw new InvalidGenerationRequestException($"image size must be 16..4096, got {ImageSize}.");
        ArgumentNullException.ThrowIfNull(NegativePrompt);
    }
}

/// <summary>
/// Generates evaluation images in batches of <em>different</em> prompts, seeds and SPM multipliers on one pipeline
/// (whose UNet carries every SPM's membranes, <see cref="LoadedSpms.UNetSource"/>): the per-row gates of the injected
/// UNet let the base model (all multipliers 0) and every erased variant share one UNet batch. Each image equals the one
/// <see cref="StableDiffusionPipeline.GenerateAsync"/> makes for the same prompt, seed, settings and multipliers (its
/// own noise from <see cref="LatentNoise"/>, its own scheduler, the same guidance and 8-bit output), so any image of an
/// evaluation can be reproduced with <c>spm generate</c>. Images are planar RGB [3, S, S] floats in [0, 1] (the 8-bit
/// values / 255). One <see cref="Generate"/> at a time per instance; batches inside it may run in parallel.
/// </summary>
public sealed class EvalImageGenerator
{
    private readonly StableDiffusionPipeline _pipeline;
    private readonly LoadedSpms? _spms;
    private readonly ISchedulerFactory _factory;
    private readonly ConcurrentDictionary<string, (int[] Ids, float[] Embedding)> _embeddings = new(StringComparer.Ordinal);
    private readonly SpmGateEvaluator _gates;
    private readonly int _latentSize;
    private readonly int _callsPerBatch;

    /// <summary>Creates a generator on <paramref name="pipeline"/>, which must have been loaded with <paramref name="spms"/>' UNet when SPMs are given.</summary>
    /// <exception cref="InvalidGenerationRequestException">Unusable settings (size, steps, scheduler).</exception>
    /// <exception cref="SpmMismatchException">The pipeline's UNet does not take the SPMs' inputs (or takes inputs nothing supplies).</exception>
    public EvalImageGenerator(StableDiffusionPipeline pipeline, LoadedSpms? spms, EvalGenerationSettings? settings = null)
    {
        ArgumentNullException.ThrowIfNull(pipeline);
        settings ??= new EvalGenerationSettings();
        settings.Validate();
        _pipeline = pipeline;
        _spms = spms;
        Settings = settings;
        int f = pipeline.Folder.VaeScaleFactor;
        ImageSize = settings.ImageSize ?? pipeline.Folder.DefaultImageSize;
        if (pipeline.Folder.DescribeInvalidImageSide("image size", ImageSize) is { } problem)
            throw new InvalidGenerationRequestException(problem);
        _latentSize = ImageSize / f;
        var name = settings.Scheduler ?? pipeline.DefaultSchedulerName;
        if (!SchedulerRegistry.TryGet(name, out var factory))
            throw new InvalidGenerationRequestException($"unknown scheduler '{name}' (known: {string.Join(", ", SchedulerRegistry.Names)}).");
        _factory = factory;
        SchedulerName = factory.Name;
        var probe = factory.Create(pipeline.Folder.SchedulerConfig);
        probe.SetTimesteps(settings.Steps);
        _callsPerBatch = probe.Timesteps.Count;

        var expected = spms?.Tensors.Inputs.Keys.Append(MembraneNames.Gates).ToHashSet(StringComparer.Ordinal) ?? [];
        var extra = pipeline.UNet.ExtraInputs.Select(e => e.Name).ToHashSet(StringComparer.Ordinal);
        if (!extra.SetEquals(expected))
        {
            var missing = extra.Except(expected).Concat(expected.Except(extra)).First();
            throw new SpmMismatchException(spms is null
                ? $"The UNet '{pipeline.UNet.Name}' takes extra inputs (e.g. '{missing}') but no SPMs were given: load the pipeline without membranes."
                : $"The UNet '{pipeline.UNet.Name}' was not loaded with these SPMs' membranes (input '{missing}' differs): load it with LoadedSpms.UNetSource.", missing);
        }
        var tok = pipeline.Tokenizer;
        _gates = new SpmGateEvaluator(text =>
        {
            var (ids, embedding) = Embed(text, CancellationToken.None);
            return (ids, embedding);
        }, tok);
    }

    /// <summary>The settings.</summary>
    public EvalGenerationSettings Settings { get; }

    /// <summary>Side of the square images in pixels.</summary>
    public int ImageSize { get; }

    /// <summary>The scheduler's name.</summary>
    public string SchedulerName { get; }

    /// <summary>Number of loaded SPMs (the length of every request's multipliers).</summary>
    public int SpmCount => _spms?.Layout.Sets.Count ?? 0;

    /// <summary>The loaded SPMs' sets (names and concepts), in load order; empty without SPMs.</summary>
    public IReadOnlyList<MembraneSet> Sets => _spms?.Layout.Sets ?? [];

    /// <summary>Images generated since this generator was created.</summary>
    public int ImagesGenerated { get; private set; }

    /// <summary>UNet calls per batch (steps, plus PNDM's repeated step).</summary>
    public int UNetCallsPerBatch => _callsPerBatch;

    /// <summary>The text encoder's view of a prompt: its padded token ids and flattened E(prompt) [L, D] (cached; do not modify).</summary>
    public (int[] TokenIds, float[] Embedding) Encode(string prompt, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        return Embed(prompt, cancellationToken);
    }

    /// <summary>The gates of every SPM for a conditioning given directly (an embedding-space attack's), with the token ids of <paramref name="prompt"/>.</summary>
    public IReadOnlyList<SpmGate> GatesFor(string prompt, float[] embedding, IReadOnlyList<GateSettings> settings)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(embedding);
        if (_spms is null) return [];
        var (ids, _) = Embed(prompt, CancellationToken.None);
        return _gates.Evaluate(_gates.TextOf(ids, embedding), _spms.Layout.Sets, settings);
    }

    /// <summary>The gates facilitated transport gives every SPM for <paramref name="prompt"/> under <paramref name="settings"/> (one entry per SPM).</summary>
    public IReadOnlyList<SpmGate> GatesFor(string prompt, IReadOnlyList<GateSettings> settings)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        if (_spms is null) return [];
        var (ids, embedding) = Embed(prompt, CancellationToken.None);
        return _gates.Evaluate(_gates.TextOf(ids, embedding), _spms.Layout.Sets, settings);
    }

    /// <summary>
    /// Generates the images of <paramref name="requests"/> (in order), <see cref="EvalGenerationSettings.BatchSize"/> at a
    /// time. <paramref name="progress"/> receives the number of images done, in fractions as the denoising advances.
    /// </summary>
    /// <exception cref="ArgumentException">A request's multipliers do not match the SPM count.</exception>
    /// <exception cref="OperationCanceledException">Cancelled (between or inside UNet calls).</exception>
    public IReadOnlyList<float[]> Generate(IReadOnlyList<EvalImageRequest> requests, IProgress<double>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(requests);
        foreach (var r in requests)
        {
            ArgumentNullException.ThrowIfNull(r);
            ArgumentNullException.ThrowIfNull(r.Prompt);
            if ((r.Multipliers?.Count ?? 0) != SpmCount)
                throw new ArgumentException($"The request for \"{r.Prompt}\" has {r.Multipliers?.Count ?? 0} multipliers; the generator has {SpmCount} SPMs.", nameof(requests));
        }
        var images = new float[requests.Count][];
        using var ro = new RunOptions();
        using var reg = cancellationToken.Register(static o => ((RunOptions)o!).Terminate = true, ro);
        int batches = (requests.Count + Settings.BatchSize - 1) / Settings.BatchSize;
        // Per-batch progress in images, summed: with parallel batches each advances on its own.
        var advanced = new double[batches];
        double total = 0;
        var gate = new object();
        void Run(int b)
        {
            int first = b * Settings.BatchSize, n = Math.Min(Settings.BatchSize, requests.Count - first);
            IProgress<double>? batchProgress = progress is null ? null : new Relay(d =>
            {
                lock (gate)
                {
                    total += d - advanced[b];
                    advanced[b] = d;
                    progress.Report(total);
                }
            });
            GenerateBatch(requests, first, n, ro, batchProgress, cancellationToken).CopyTo(images, first);
        }
        if (Settings.Parallelism == 1 || batches == 1)
            for (int b = 0; b < batches; b++) Run(b);
        else
        {
            try
            {
                Parallel.For(0, batches, new ParallelOptions { MaxDegreeOfParallelism = Settings.Parallelism, CancellationToken = cancellationToken }, Run);
            }
            catch (AggregateException ae)
            {
                // Callers expect the error a sequential run would give (cancellation, a mismatch), not a wrapper.
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(ae.InnerExceptions[0]).Throw();
            }
        }
        ImagesGenerated += requests.Count;
        return images;
    }

    private float[][] GenerateBatch(IReadOnlyList<EvalImageRequest> requests, int first, int n, RunOptions ro, IProgress<double>? progress, CancellationToken ct)
    {
        bool guidance = Settings.GuidanceScale > 1.0;
        int rows = guidance ? 2 * n : n;
        int c = _pipeline.UNet.InChannels, h = _latentSize, w = _latentSize, perImage = c * h * w;

        // Rows as the pipeline lays them out: [uncond × n, cond × n] with guidance, [cond × n] without.
        var uncond = guidance ? Embed(Settings.NegativePrompt, ct).Embedding : null;
        var cond = new float[n][];
        int tokens = 0;
        for (int j = 0; j < n; j++)
        {
            var e = Embed(requests[first + j].Prompt, ct);
            tokens = e.Ids.Length;
            cond[j] = requests[first + j].Embedding ?? e.Embedding;
        }
        int ld = cond[0].Length;
        if (cond.Any(e => e.Length != ld) || (uncond is not null && uncond.Length != ld))
            throw new SpmMismatchException($"The text encoder '{_pipeline.TextEncoder.Name}' returned embeddings of different sizes for the prompts of one batch.", "last_hidden_state");
        var hidden = new FloatTensor(rows, tokens, ld / tokens);
        var multipliers = new float[rows * SpmCount];
        for (int r = 0; r < rows; r++)
        {
            int j = guidance ? r % n : r;
            bool isCond = !guidance || r >= n;
            (isCond ? cond[j] : uncond!).CopyTo(hidden.Data, r * ld);
            for (int s = 0; s < SpmCount; s++) multipliers[r * SpmCount + s] = requests[first + j].Multipliers[s];
        }
        Dictionary<string, FloatTensor>? extras = null;
        if (_spms is not null)
            extras = new Dictionary<string, FloatTensor>(_spms.Tensors.Inputs, StringComparer.Ordinal) { [MembraneNames.Gates] = _spms.Tensors.Gates(multipliers) };

        var schedulers = new IScheduler[n];
        var rngs = new SeededRandom[n];
        var latents = new float[n * perImage];
        for (int j = 0; j < n; j++)
        {
            var s = _factory.Create(_pipeline.Folder.SchedulerConfig);
            s.SetTimesteps(Settings.Steps);
            schedulers[j] = s;
            var slice = latents.AsSpan(j * perImage, perImage);
            rngs[j] = LatentNoise.Fill(LatentNoise.ImageSeed(requests[first + j].Seed, 0), slice);
            TensorPrimitives.Multiply(slice, (float)s.InitNoiseSigma, slice);
        }

        int calls = schedulers[0].Timesteps.Count;
        // One runner per batch: hidden states and membranes bound once for the whole loop; the pipeline's loop.
        using (var runner = _pipeline.UNet.OpenRunner(hidden, extras, rows, h, w, _pipeline.UsesIoBinding, ro))
            DenoisingLoop.Run(runner, schedulers, latents, rngs, guidance, Settings.GuidanceScale,
                hooks: new DenoisingHooks { AfterStep = i => progress?.Report(n * (i + 1) / (double)calls) }, cancellationToken: ct);

        ct.ThrowIfCancellationRequested();
        var scaled = new FloatTensor([n, c, h, w], new float[n * perImage]);
        TensorPrimitives.Multiply(latents, (float)(1.0 / _pipeline.Folder.VaeScalingFactor), scaled.Data);
        var decoded = Cancellable(() => _pipeline.VaeDecoder.Decode(scaled, ro), ct);
        if (decoded.Shape[2] != ImageSize || decoded.Shape[3] != ImageSize)
            throw new SpmMismatchException($"The VAE decoder '{_pipeline.VaeDecoder.Name}' made {decoded.Shape[3]}x{decoded.Shape[2]} images from {w}x{h} latents; expected {ImageSize}x{ImageSize}.", "sample");
        var images = new float[n][];
        int plane = ImageSize * ImageSize;
        for (int j = 0; j < n; j++)
        {
            // Through the same 8-bit conversion as a saved PNG, so the evaluator reads exactly what spm generate writes.
            images[j] = PlanarFromRgb24(ImageConversion.ToRgb24(decoded, j));
        }
        return images;
    }

    /// <summary>Interleaved 8-bit RGB (as in a PNG or <c>GeneratedImage.Rgb</c>) to the evaluator's planar [3, H, W] floats in [0, 1].</summary>
    internal static float[] PlanarFromRgb24(ReadOnlySpan<byte> rgb)
    {
        int plane = rgb.Length / 3;
        var planar = new float[3 * plane];
        for (int p = 0; p < plane; p++)
        {
            planar[p] = rgb[3 * p] / 255f;
            planar[plane + p] = rgb[3 * p + 1] / 255f;
            planar[2 * plane + p] = rgb[3 * p + 2] / 255f;
        }
        return planar;
    }

    private (int[] Ids, float[] Embedding) Embed(string text, CancellationToken ct)
    {
        if (_embeddings.TryGetValue(text, out var cached)) return cached;
        var (ids, embedding) = _pipeline.EncodePrompt(text, ct);
        if (embedding.Shape[1] != ids.Length)
            throw new SpmMismatchException($"The text encoder '{_pipeline.TextEncoder.Name}' returned {embedding.ShapeString} for {ids.Length} tokens.", "last_hidden_state");
        return _embeddings.GetOrAdd(text, (ids, embedding.Data));
    }

    private sealed class Relay(Action<double> report) : IProgress<double>
    {
        public void Report(double value) => report(value);
    }

    // ORT reports a terminated run as a generic error: turn it into a cancellation when that is what happened.
    private static T Cancellable<T>(Func<T> run, CancellationToken ct)
    {
        try
        {
            return run();
        }
        catch (OnnxRuntimeException) when (ct.IsCancellationRequested)
        {
            throw new OperationCanceledException(ct);
        }
    }
}
