using System.Diagnostics;
using System.Numerics.Tensors;
using Microsoft.ML.OnnxRuntime;
using Spm.Core;
using Spm.Core.Randomness;
using Spm.Core.Tensors;
using Spm.Diffusion.Images;
using Spm.Diffusion.Pipelines.Families;
using Spm.Diffusion.Runtime;
using Spm.Diffusion.Schedulers;
using Spm.Diffusion.Text;

namespace Spm.Diffusion.Pipelines;

/// <summary>
/// Text-to-image Stable Diffusion (1.x, 2.x, XL) on ONNX Runtime, loaded once from a diffusers/optimum ONNX folder:
/// the family's prompt conditioning (<see cref="IPromptConditioning"/>: tokenizers → text encoders → per-row UNet
/// inputs) → denoising loop (classifier-free guidance in one UNet call per step on the batch
/// [uncond…, cond…]) → VAE decoder → RGB pixels. <see cref="GenerateAsync"/> is safe to call from several threads
/// at once (sessions are shared, all per-call state lives in the call), and a cancelled call leaves the pipeline usable.
/// </summary>
public sealed class StableDiffusionPipeline : IDisposable
{
    private readonly PipelineOptions _options;

    private StableDiffusionPipeline(ModelFolder folder, PipelineOptions options, ClipTokenizer tokenizer,
        TextEncoderModel textEncoder, IPromptConditioning conditioning, UNetModel unet, VaeDecoderModel vae, ExecutionProviderKind provider, string? fallback)
    {
        Folder = folder;
        _options = options;
        Tokenizer = tokenizer;
        TextEncoder = textEncoder;
        Conditioning = conditioning;
        UNet = unet;
        VaeDecoder = vae;
        Provider = provider;
        ProviderFallbackReason = fallback;
    }

    /// <summary>The model folder and its configuration.</summary>
    public ModelFolder Folder { get; }

    /// <summary>The model family (SD 1.x, 2.x or XL).</summary>
    public ModelFamily Family => Conditioning.Family;

    /// <summary>The CLIP tokenizer of the folder (SDXL: the first of two, see <see cref="Conditioning"/>).</summary>
    public ClipTokenizer Tokenizer { get; }

    /// <summary>The text encoder (SDXL: the first of two, see <see cref="Conditioning"/>).</summary>
    public TextEncoderModel TextEncoder { get; }

    /// <summary>The family's prompt conditioning: prompt → <see cref="EncodedPrompt"/> → the UNet's per-row text inputs.</summary>
    public IPromptConditioning Conditioning { get; }

    /// <summary>The UNet (the folder's, or <see cref="PipelineOptions.UNetSource"/>).</summary>
    public UNetModel UNet { get; }

    /// <summary>The VAE decoder.</summary>
    public VaeDecoderModel VaeDecoder { get; }

    /// <summary>The provider the sessions run on (CPU when CUDA was asked for but could not load).</summary>
    public ExecutionProviderKind Provider { get; }

    /// <summary>Why the requested provider is not in use, in one line; null when it is.</summary>
    public string? ProviderFallbackReason { get; }

    /// <summary>Whether the denoising loop runs through IOBinding.</summary>
    public bool UsesIoBinding => _options.UseIoBinding ?? Provider == ExecutionProviderKind.Cuda;

    /// <summary>Loads the pipeline from a model folder.</summary>
    /// <exception cref="SpmFormatException">A part of the folder is missing or broken (the message names the file).</exception>
    public static StableDiffusionPipeline Load(string folder, PipelineOptions? options = null)
    {
        options ??= new PipelineOptions();
        var mf = ModelFolder.Open(folder);
        // One provider choice for all models: a CUDA failure on the first puts all of them on the CPU. The UNet opens
        // first so that a folder mixing families is named by its UNet's inputs before the encoders are checked; the
        // text encoders open through the family's conditioning (the only place that chooses it).
        var sessions = new OnnxSessionGroup(options.Runtime);
        var disposables = new List<IDisposable>();
        try
        {
            var un = sessions.OpenCreated(options.UNetSource ?? OnnxModelSource.FromFile(mf.UNetPath));
            disposables.Add(un.Session);
            var unet = new UNetModel(un, options.UNetSource?.DisplayName ?? mf.UNetPath);
            ModelFamilies.CheckUNet(mf.Family, unet.Signature, mf.PipelineClassName);
            var conditioning = PromptConditionings.Open(mf, sessions);
            disposables.Add(conditioning);
            var va = sessions.OpenCreated(OnnxModelSource.FromFile(mf.VaeDecoderPath));
            disposables.Add(va.Session);
            var vae = new VaeDecoderModel(va, mf.VaeDecoderPath);
            return new StableDiffusionPipeline(mf, options, conditioning.Tokenizers[0], conditioning.TextEncoders[0], conditioning, unet, vae,
                un.Provider, un.FallbackReason ?? sessions.FallbackReason);
        }
        catch
        {
            foreach (var d in disposables) d.Dispose();
            throw;
        }
    }

    /// <summary>The CLI name of the folder's configured scheduler (from its <c>_class_name</c>), or pndm.</summary>
    public string DefaultSchedulerName => Folder.SchedulerClassName switch
    {
        "DDIMScheduler" => "ddim",
        "EulerDiscreteScheduler" => "euler",
        "EulerAncestralDiscreteScheduler" => "euler-a",
        "DPMSolverMultistepScheduler" => "dpmpp-2m",
        "LMSDiscreteScheduler" => "lms",
        _ => "pndm",
    };

    /// <summary>
    /// Raised (on the caller's thread, before any model runs) for each prompt or negative prompt of a request, and each
    /// prompt given to <see cref="EncodePrompt"/>, that is longer than the text encoder's window: the model never sees
    /// the dropped words, so apps should tell their users.
    /// </summary>
    public event EventHandler<PromptTruncation>? PromptTruncated;

    private void ReportTruncation(string text)
    {
        if (PromptTruncated is { } handler && Tokenizer.FindTruncation(text) is { } cut) handler(this, cut);
    }

    /// <summary>Tokenizes and embeds one prompt: the padded ids and E(prompt) [1,L,D].</summary>
    public (int[] TokenIds, FloatTensor Embedding) EncodePrompt(string prompt, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        cancellationToken.ThrowIfCancellationRequested();
        var e = Encode(prompt, cancellationToken);
        return (e.TokenIds, e.HiddenStates);
    }

    /// <summary>
    /// Encodes one prompt through the family's conditioning (<see cref="Conditioning"/>): token ids, the UNet's
    /// hidden-state row [1,L,D] and, for SDXL, the pooled embedding.
    /// </summary>
    public EncodedPrompt Encode(string prompt, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        cancellationToken.ThrowIfCancellationRequested();
        ReportTruncation(prompt);
        using var ro = new RunOptions();
        using var reg = cancellationToken.Register(static o => ((RunOptions)o!).Terminate = true, ro);
        return RunCancellable(() => Conditioning.Encode(prompt, ro), cancellationToken);
    }

    /// <summary>Generates the images of <paramref name="request"/> on the calling thread (the work is CPU- or GPU-bound, not I/O).</summary>
    /// <exception cref="InvalidGenerationRequestException">The request is inconsistent (size, steps, latents shape...).</exception>
    /// <exception cref="OperationCanceledException">Cancelled; the pipeline stays usable.</exception>
    public GenerationResult Generate(GenerationRequest request, IProgress<GenerationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        var plan = GenerationPlan.Create(this, request);
        ReportTruncation(request.Prompt);
        ReportTruncation(request.NegativePrompt);
        return Generate(plan, progress, cancellationToken);
    }

    /// <summary>
    /// <see cref="Generate(GenerationRequest, IProgress{GenerationProgress}?, CancellationToken)"/> on a thread-pool thread,
    /// for callers that must not block theirs (a UI, a web request); the request is checked before it returns.
    /// </summary>
    /// <exception cref="InvalidGenerationRequestException">The request is inconsistent (size, steps, latents shape...).</exception>
    /// <exception cref="OperationCanceledException">Cancelled; the pipeline stays usable.</exception>
    public Task<GenerationResult> GenerateAsync(GenerationRequest request, IProgress<GenerationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        var plan = GenerationPlan.Create(this, request);
        ReportTruncation(request.Prompt);
        ReportTruncation(request.NegativePrompt);
        return Task.Run(() => Generate(plan, progress, cancellationToken), cancellationToken);
    }

    private GenerationResult Generate(GenerationPlan plan, IProgress<GenerationProgress>? progress, CancellationToken ct)
    {
        var total = Stopwatch.StartNew();
        var request = plan.Request;
        var textTime = TimeSpan.Zero;
        var unetTime = TimeSpan.Zero;
        var vaeTime = TimeSpan.Zero;
        var tokTime = TimeSpan.Zero;
        var samplingTime = TimeSpan.Zero;
        var convTime = TimeSpan.Zero;
        int unetCalls = 0;
        var piece = new PieceTimer(request.MeasureCpu);
        var sw = new PieceTimer(request.MeasureCpu);
        using var ro = new RunOptions();
        using var reg = ct.Register(static o => ((RunOptions)o!).Terminate = true, ro);

        progress?.Report(new GenerationProgress(GenerationStage.Encoding, 0, plan.TotalUNetCalls, 0, request.Count));
        var cond = EncodeOnce(request.Prompt, null, ro, ct, piece, sw, ref tokTime, ref textTime);
        var uncond = plan.Guidance ? (request.NegativePrompt == request.Prompt ? cond : EncodeOnce(request.NegativePrompt, cond, ro, ct, piece, sw, ref tokTime, ref textTime)) : null;
        string? familyText = Conditioning.ParametersText(plan.Sizes);

        int c = UNet.InChannels, h = plan.LatentHeight, w = plan.LatentWidth, perImage = c * h * w;
        var allLatents = new FloatTensor(request.Count, c, h, w);
        var images = new GeneratedImage[request.Count];
        int step = 0;
        for (int first = 0; first < request.Count; first += request.BatchSize)
        {
            int n = Math.Min(request.BatchSize, request.Count - first);
            int rows = plan.Guidance ? 2 * n : n;

            // Per image: its scheduler and its generator (noise), so results don't depend on batching.
            piece.Restart();
            var schedulers = new IScheduler[n];
            var rngs = new SeededRandom[n];
            var latents = allLatents.Data.AsMemory(first * perImage, n * perImage);
            for (int j = 0; j < n; j++)
            {
                var s = plan.Factory.Create(Folder.SchedulerConfig);
                s.SetTimesteps(request.Steps);
                schedulers[j] = s;
                var slice = latents.Span.Slice(j * perImage, perImage);
                var seed = LatentNoise.ImageSeed(request.Seed, first + j);
                if (request.InitLatents is null)
                {
                    rngs[j] = LatentNoise.Fill(seed, slice);
                }
                else
                {
                    request.InitLatents.Data.AsSpan((first + j) * perImage, perImage).CopyTo(slice);
                    rngs[j] = new SeededRandom(seed);
                }
                TensorPrimitives.Multiply(slice, (float)s.InitNoiseSigma, slice);
            }

            // Text conditioning rows: [uncond × n, cond × n] with guidance, [cond × n] without.
            var rowKinds = new GuidanceRow[rows];
            var rowPrompts = new EncodedPrompt[rows];
            for (int r = 0; r < rows; r++)
            {
                bool isCond = !plan.Guidance || r >= n;
                rowKinds[r] = isCond ? GuidanceRow.Conditional : GuidanceRow.Unconditional;
                rowPrompts[r] = isCond ? cond : uncond!;
            }
            var text = Conditioning.BuildRows(rowPrompts, plan.Sizes);
            UNetConditioning? conditioning = request.Conditioner?.Prepare(
                new UNetConditioningContext(this, request, cond.HiddenStates, cond.TokenIds, rowKinds, first));
            samplingTime += piece.Elapsed;

            using (var runner = UNet.OpenRunner(text, conditioning?.Inputs, rows, h, w, UsesIoBinding, ro))
            {
                // Scheduler work counts as sampling time, the UNet call as UNet time.
                var hooks = new DenoisingHooks
                {
                    RunUNet = (r, t) =>
                    {
                        samplingTime += piece.Elapsed;
                        sw.RestartModel();
                        r.Run(t);
                        unetTime += sw.Elapsed;
                        unetCalls++;
                        piece.Restart();
                    },
                    AfterStep = _ =>
                    {
                        samplingTime += piece.Elapsed;
                        step++;
                        progress?.Report(new GenerationProgress(GenerationStage.Denoising, step, plan.TotalUNetCalls, first, request.Count));
                        piece.Restart();
                    },
                };
                piece.Restart();
                DenoisingLoop.Run(runner, schedulers, latents.Span, rngs, plan.Guidance, request.GuidanceScale, hooks: hooks, cancellationToken: ct);
            }

            string? spmText = familyText is null ? conditioning?.ParametersText
                : conditioning?.ParametersText is { } adapterText ? familyText + ", " + adapterText : familyText;
            if (request.DecodeImages)
            {
                ct.ThrowIfCancellationRequested();
                progress?.Report(new GenerationProgress(GenerationStage.Decoding, step, plan.TotalUNetCalls, first + n, request.Count));
                var scaled = new FloatTensor([n, c, h, w], new float[n * perImage]);
                TensorPrimitives.Multiply(latents.Span, (float)(1.0 / Folder.VaeScalingFactor), scaled.Span);
                sw.RestartModel();
                var decoded = RunCancellable(() => VaeDecoder.Decode(scaled, ro), ct);
                vaeTime += sw.Elapsed;
                piece.Restart();
                for (int j = 0; j < n; j++)
                {
                    int idx = first + j;
                    var seed = LatentNoise.ImageSeed(request.Seed, idx);
                    int width = decoded.Shape[3], height = decoded.Shape[2];
                    images[idx] = new GeneratedImage(idx, seed, width, height, ImageConversion.ToRgb24(decoded, j), Parameters(plan, seed, width, height, spmText));
                }
                convTime += piece.Elapsed;
            }
            else
            {
                for (int j = 0; j < n; j++)
                {
                    int idx = first + j;
                    var seed = LatentNoise.ImageSeed(request.Seed, idx);
                    images[idx] = new GeneratedImage(idx, seed, plan.Width, plan.Height, [], Parameters(plan, seed, plan.Width, plan.Height, spmText));
                }
            }
        }
        progress?.Report(new GenerationProgress(GenerationStage.Done, step, plan.TotalUNetCalls, request.Count, request.Count));
        total.Stop();
        return new GenerationResult(images, allLatents, plan.SchedulerName, new GenerationTimings(textTime, unetTime, vaeTime, total.Elapsed, unetCalls, tokTime, samplingTime, convTime));
    }

    private string Parameters(GenerationPlan plan, ulong seed, int width, int height, string? extra)
        => GenerationParameters.Format(plan.Request.Prompt, plan.Request.NegativePrompt, plan.Request.Steps,
            GenerationParameters.SamplerDisplayName(plan.SchedulerName), plan.Request.GuidanceScale, seed, width, height,
            Folder.Name, extra is null ? null : [extra]);

    private EncodedPrompt EncodeOnce(string text, EncodedPrompt? prompt, RunOptions ro, CancellationToken ct,
        PieceTimer piece, PieceTimer model, ref TimeSpan tokenizerTime, ref TimeSpan encoderTime)
    {
        // Tokenizing here is what the tokenizer time measures; the conditioning's own calls then hit the tokenizers' cache.
        piece.Restart();
        foreach (var tokenizer in Conditioning.Tokenizers) tokenizer.Encode(text);
        tokenizerTime += piece.Elapsed;
        model.RestartModel();
        var e = RunCancellable(() => prompt is null ? Conditioning.Encode(text, ro) : Conditioning.EncodeNegative(text, prompt, ro), ct);
        encoderTime += model.Elapsed;
        return e;
    }

    // ORT reports a terminated run as a generic error: turn it into a cancellation when that is what happened.
    private static T RunCancellable<T>(Func<T> run, CancellationToken ct)
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

    /// <inheritdoc />
    public void Dispose()
    {
        Conditioning.Dispose();
        UNet.Dispose();
        VaeDecoder.Dispose();
    }
}
