using System.Collections.Concurrent;
using Spm.Core;
using Spm.Core.Gating;
using Spm.Diffusion.Images;
using Spm.Diffusion.Membranes;
using Spm.Diffusion.Pipelines;

namespace Spm.Samples.WebDemo;

/// <summary>One loaded SPM as the page lists it.</summary>
/// <param name="Index">Position in the load order (the page's checkbox order).</param>
/// <param name="Name">Display name: the file name, or <c>folder/file</c> when two files share a name.</param>
/// <param name="Concepts">The erased concepts the gate compares prompts with.</param>
/// <param name="Rank">Membrane rank.</param>
/// <param name="Layers">How many UNet layers it covers.</param>
public sealed record SpmInfo(int Index, string Name, IReadOnlyList<string> Concepts, int Rank, int Layers);

/// <summary>One SPM's gate for a prompt.</summary>
/// <param name="Index">The SPM's index.</param>
/// <param name="Name">The SPM's display name.</param>
/// <param name="Enabled">Whether the request switched it on.</param>
/// <param name="Gamma">Facilitated transport's gamma for the prompt (max over concepts of max(clipcos, tokenuni)).</param>
/// <param name="Gate">The multiplier the gate gives (gate curve of gamma): what the SPM applies when enabled.</param>
/// <param name="Applied">The multiplier the erased image used: <paramref name="Gate"/> if enabled, else 0.</param>
public sealed record GateView(int Index, string Name, bool Enabled, float Gamma, float Gate, float Applied);

/// <summary>What the page asks to generate.</summary>
/// <param name="Prompt">The prompt.</param>
/// <param name="Enabled">One flag per loaded SPM (<see cref="DemoEngine.Spms"/> order).</param>
/// <param name="Seed">Noise seed; both images start from the same noise.</param>
/// <param name="Steps">Denoising steps.</param>
/// <param name="Size">Image side in pixels; null = the model's size.</param>
/// <param name="NegativePrompt">Negative prompt.</param>
/// <param name="Guidance">Classifier-free guidance scale.</param>
public sealed record DemoRequest(string Prompt, IReadOnlyList<bool> Enabled, ulong Seed, int Steps, int? Size = null,
    string NegativePrompt = "", double Guidance = 7.5);

/// <summary>The base and erased images of one request, as PNG files.</summary>
/// <param name="BasePng">Every SPM off (gates 0, which is bit-identical to the plain model).</param>
/// <param name="ErasedPng">The enabled SPMs gated by facilitated transport.</param>
/// <param name="Width">Image width.</param>
/// <param name="Height">Image height.</param>
/// <param name="Gates">Each SPM's gate for the prompt.</param>
/// <param name="Parameters">The erased image's parameters text (also in its PNG).</param>
/// <param name="Elapsed">Time both generations took, queueing excluded.</param>
public sealed record DemoImages(byte[] BasePng, byte[] ErasedPng, int Width, int Height, IReadOnlyList<GateView> Gates,
    string Parameters, TimeSpan Elapsed);

/// <summary>A request the demo refuses (the API answers 400 with the message).</summary>
public sealed class DemoRequestException(string message) : SpmException(message);

/// <summary>
/// The model and SPMs, loaded once and shared by every request. Requests may arrive concurrently: the pipeline's
/// sessions are thread-safe and all per-request state lives in the request; a semaphore caps how many generations run
/// at once so concurrent visitors queue instead of oversubscribing the CPU.
/// </summary>
public sealed class DemoEngine : IDisposable
{
    /// <summary>Longest prompt accepted (CLIP reads 77 tokens anyway; this only bounds the work per request).</summary>
    public const int MaxPromptLength = 2000;

    // Conditioners are cheap, but each caches its concepts' embeddings, so one per on/off combination is kept
    // (bounded: with many SPMs, rare combinations are built per request instead).
    private const int MaxCachedConditioners = 256;

    private readonly ConcurrentDictionary<string, SpmConditioner> _conditioners = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _slots;
    private readonly SpmConditioner? _allGated;

    private DemoEngine(WebDemoOptions options, StableDiffusionPipeline pipeline, LoadedSpms? spms, IReadOnlyList<SpmInfo> infos)
    {
        Options = options;
        Pipeline = pipeline;
        Loaded = spms;
        Spms = infos;
        _slots = new SemaphoreSlim(options.MaxConcurrentGenerations, options.MaxConcurrentGenerations);
        _allGated = spms is null ? null : Conditioner(Enumerable.Repeat(true, infos.Count).ToArray());
    }

    /// <summary>The options the engine was loaded with.</summary>
    public WebDemoOptions Options { get; }

    /// <summary>The pipeline (its UNet carries the membrane branches when SPMs are loaded).</summary>
    public StableDiffusionPipeline Pipeline { get; }

    /// <summary>The loaded SPMs, or null when none was given.</summary>
    public LoadedSpms? Loaded { get; }

    /// <summary>The loaded SPMs as the page lists them.</summary>
    public IReadOnlyList<SpmInfo> Spms { get; }

    /// <summary>The model folder's name.</summary>
    public string ModelName => Pipeline.Folder.Name;

    /// <summary>Image side used when a request gives none.</summary>
    public int DefaultSize => Options.Size ?? Pipeline.Folder.DefaultImageSize;

    /// <summary>Guidance when a request gives none: the model's <c>spm_generate_defaults.json</c>, else SD's 7.5.</summary>
    public double DefaultGuidance => _defaultGuidance ??= ModelGenerationDefaults.Load(Options.ModelFolder)?.GuidanceScale ?? 7.5;

    private double? _defaultGuidance;

    /// <summary>Loads the model and SPMs of <paramref name="options"/> (the slow part: done once at start-up).</summary>
    /// <exception cref="SpmException">The model or an SPM file is broken or does not fit (the message names it).</exception>
    public static DemoEngine Load(WebDemoOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.MaxConcurrentGenerations < 1) throw new DemoRequestException("MaxConcurrentGenerations must be at least 1.");
        if (options.SpmFiles.Count == 0)
            return new DemoEngine(options, StableDiffusionPipeline.Load(options.ModelFolder), null, []);

        var spms = LoadedSpms.Load(options.ModelFolder, options.SpmFiles);
        var pipeline = StableDiffusionPipeline.Load(options.ModelFolder, new PipelineOptions { UNetSource = spms.UNetSource });
        try
        {
            var names = DisplayNames(options.SpmFiles);
            var infos = spms.Layout.Sets.Select((s, i) => new SpmInfo(i, names[i], s.Concepts, s.Rank, s.Membranes.Count)).ToList();
            return new DemoEngine(options, pipeline, spms, infos);
        }
        catch
        {
            pipeline.Dispose();
            throw;
        }
    }

    /// <summary>Each SPM's gate for <paramref name="prompt"/>, and what it applies given <paramref name="enabled"/>.</summary>
    /// <exception cref="DemoRequestException">The prompt is too long or <paramref name="enabled"/> has the wrong length.</exception>
    public IReadOnlyList<GateView> Gates(string prompt, IReadOnlyList<bool> enabled)
    {
        Validate(prompt, enabled);
        if (_allGated is null) return [];
        var gates = _allGated.GatesFor(prompt);
        return gates.Select((g, i) => new GateView(i, Spms[i].Name, enabled[i], g.Gamma, g.Multiplier, enabled[i] ? g.Multiplier : 0f)).ToList();
    }

    /// <summary>
    /// Generates the base image (every SPM off) and the erased image (enabled SPMs gated by facilitated transport)
    /// from the same seed. Waits for a free generation slot first.
    /// </summary>
    /// <exception cref="SpmException">The request is invalid (steps, size, prompt, flags).</exception>
    /// <exception cref="OperationCanceledException">Cancelled (the client went away); the engine stays usable.</exception>
    public async Task<DemoImages> GenerateAsync(DemoRequest request, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        Validate(request.Prompt, request.Enabled);
        if (request.Steps is < 1 or > WebDemoOptions.MaxSteps)
            throw new DemoRequestException($"steps must be 1..{WebDemoOptions.MaxSteps}, got {request.Steps}.");
        int size = request.Size ?? DefaultSize;
        if (size is < 1 or > WebDemoOptions.MaxSize)
            throw new DemoRequestException($"size must be 1..{WebDemoOptions.MaxSize}, got {size}.");
        if (request.NegativePrompt is null || request.NegativePrompt.Length > MaxPromptLength)
            throw new DemoRequestException($"the negative prompt must be at most {MaxPromptLength} characters.");
        var gates = Gates(request.Prompt, request.Enabled);

        await _slots.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var started = System.Diagnostics.Stopwatch.StartNew();
            var common = new GenerationRequest
            {
                Prompt = request.Prompt, NegativePrompt = request.NegativePrompt, Steps = request.Steps, Seed = request.Seed,
                Width = size, Height = size, GuidanceScale = request.Guidance,
            };
            if (Loaded is null)
            {
                var only = (await Pipeline.GenerateAsync(common, null, cancellationToken).ConfigureAwait(false)).Images[0];
                var png = PngImage.Encode(only.Rgb, only.Width, only.Height, only.Parameters);
                return new DemoImages(png, png, only.Width, only.Height, gates, only.Parameters, started.Elapsed);
            }
            var baseImage = (await Pipeline.GenerateAsync(common with { Conditioner = Conditioner(new bool[Spms.Count]) }, null, cancellationToken)
                .ConfigureAwait(false)).Images[0];
            var erased = (await Pipeline.GenerateAsync(common with { Conditioner = Conditioner(request.Enabled) }, null, cancellationToken)
                .ConfigureAwait(false)).Images[0];
            return new DemoImages(
                PngImage.Encode(baseImage.Rgb, baseImage.Width, baseImage.Height, baseImage.Parameters),
                PngImage.Encode(erased.Rgb, erased.Width, erased.Height, erased.Parameters),
                erased.Width, erased.Height, gates, erased.Parameters, started.Elapsed);
        }
        finally
        {
            _slots.Release();
        }
    }

    /// <summary>
    /// The conditioner for one on/off combination: enabled SPMs get the default gate (square curve, factor 1), disabled
    /// ones a fixed multiplier 0, which zeroes their branches without touching the session.
    /// </summary>
    public SpmConditioner Conditioner(IReadOnlyList<bool> enabled)
    {
        if (Loaded is null) throw new DemoRequestException("no SPM is loaded.");
        if (enabled.Count != Spms.Count) throw new DemoRequestException($"expected {Spms.Count} SPM flags, got {enabled.Count}.");
        var key = string.Concat(enabled.Select(e => e ? '1' : '0'));
        if (_conditioners.TryGetValue(key, out var cached)) return cached;
        var settings = enabled.Select(e => e ? GateSettings.Default : new GateSettings(FixedMultiplier: 0f)).ToList();
        var conditioner = Loaded.CreateConditioner(Pipeline, settings);
        return _conditioners.Count < MaxCachedConditioners ? _conditioners.GetOrAdd(key, conditioner) : conditioner;
    }

    /// <summary>Releases the pipeline's sessions.</summary>
    public void Dispose()
    {
        Pipeline.Dispose();
        _slots.Dispose();
    }

    private void Validate(string? prompt, IReadOnlyList<bool>? enabled)
    {
        if (prompt is null) throw new DemoRequestException("the prompt is missing.");
        if (prompt.Length > MaxPromptLength) throw new DemoRequestException($"the prompt must be at most {MaxPromptLength} characters, got {prompt.Length}.");
        if (enabled is null || enabled.Count != Spms.Count)
            throw new DemoRequestException($"expected {Spms.Count} SPM flags, got {enabled?.Count ?? 0}.");
    }

    // File names, or parent/file where two files share a name (the reference fixtures are all called spm.safetensors).
    private static List<string> DisplayNames(IReadOnlyList<string> files)
    {
        var plain = files.Select(f => Path.GetFileName(f) ?? "").ToList();
        return plain.Select((name, i) => plain.Count(n => n == name) < 2
            ? name
            : Path.GetFileName(Path.GetDirectoryName(Path.GetFullPath(files[i])) ?? "") + "/" + name).ToList();
    }
}
