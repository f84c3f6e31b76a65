using System.Diagnostics;
using System.Runtime.InteropServices;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Spm.Core;
using Spm.Core.Randomness;
using Spm.Diffusion.Schedulers;
using Spm.Diffusion.Text;
using Spm.Shapes.Building;
using Spm.Shapes.Evaluation;
using Spm.Shapes.World;
using Spm.Training.Autodiff;
using Spm.Training.Optimizers;

namespace Spm.Shapes.Model;

/// <summary>Settings of <see cref="TinyShapesModel.TrainAsync"/>; the defaults rebuild the shipped model.</summary>
public sealed record TinyShapesTrainingOptions
{
    /// <summary>Seed of the initial weights, the data and the noise.</summary>
    public ulong Seed { get; init; }

    /// <summary>Autoencoder training steps.</summary>
    public int AutoencoderSteps { get; init; } = 450;

    /// <summary>Images per autoencoder step.</summary>
    public int AutoencoderBatch { get; init; } = 12;

    /// <summary>Peak learning rate of the autoencoder (AdamW, warm-up then cosine decay).</summary>
    public double AutoencoderLearningRate { get; init; } = 2e-3;

    /// <summary>
    /// Steps of the decoder refinement that follows the autoencoder: the encoder is frozen (so the latent space the UNet
    /// learns is fixed) and the decoder alone keeps training on its latents, at <see cref="AutoencoderBatch"/> pictures
    /// per step. The end-to-end phase settles the latent space quickly but leaves the decoder's colours off (after 450
    /// steps the evaluator reads 41 % of reconstructed colours right); refining only the decoder is cheaper than
    /// training both halves longer. 0 skips it.
    /// </summary>
    public int DecoderSteps { get; init; } = 1500;

    /// <summary>Peak learning rate of the decoder refinement.</summary>
    public double DecoderLearningRate { get; init; } = 2e-3;

    /// <summary>
    /// Standard deviation of the frozen text encoder's token embedding, for the stages that do not set their own (see
    /// <see cref="UNetStage.TextTokenStd"/>) and for the written model when no stage runs. At CLIP's own 0.02 every word's
    /// vector is far below the random biases of the layers behind it, so all captions map to nearly the same states
    /// (cosine 0.99 between "... white background" and "... black background" at the differing word) and a UNet trained
    /// on them reads backgrounds at chance; at 1 each word's own vector dominates its position. The shipped recipe
    /// learns to draw on 0.02 and then reads captions on 1 (docs/tiny-shapes.md).
    /// </summary>
    public double TextTokenStd { get; init; } = 1.0;

    /// <summary>Weight of the latent-size penalty <c>mean(z²)</c> that keeps latents bounded (no KL is used).</summary>
    public double LatentPenalty { get; init; } = 1e-4;

    /// <summary>
    /// Standard deviation of Gaussian noise added to the latent the decoder reads during autoencoder training (0: none).
    /// Without it the encoder squeezes close colours together (orange and yellow 0.12 apart in a latent of RMS 1.56,
    /// three times closer than any other pair) because nothing asks a decoded colour to survive a small latent error, which
    /// is what a diffusion model's latents carry; with it, codes that must decode differently are kept apart.
    /// </summary>
    public double AutoencoderLatentNoise { get; init; }

    /// <summary>
    /// Weight of colour (chroma) against lightness in the autoencoder's reconstruction loss (1 or 0: plain RGB MSE). The
    /// error is measured in an orthonormal opponent basis (lightness (R+G+B)/√3, red–green (R−G)/√2, yellow–blue
    /// (R+G−2B)/√6) with the two chroma axes scaled by this weight, so the encoder spends more of its latent on hue: in
    /// RGB, orange and yellow differ by 0.31 while a grey background differs from white by 0.87. The default, 3, is the
    /// shipped model's (v3): with plain RGB MSE orange and yellow lay 0.12 apart in the latent and orange was drawn yellow.
    /// </summary>
    public double AutoencoderChromaWeight { get; init; } = 3;

    /// <summary>Images encoded once for the UNet phase (each with its caption).</summary>
    public int LatentPoolSize { get; init; } = 8000;

    /// <summary>
    /// The UNet's training stages, run one after the other on the same weights. Each stage starts a fresh AdamW state
    /// and its own warm-up + cosine schedule to its learning rate, and replays the data stream from the seed — exactly
    /// what a later <c>--continue-unet</c> run does, so a model trained in several sittings is rebuilt by one run.
    /// The default is the shipped model's recipe: 2,600 steps at 2e-3 and 3,000 at 1e-3 on the text encoder with
    /// CLIP's token scale 0.02 (the first model's UNet, which learned to draw shapes), then 3,000 at 1.5e-3 and 2,000 at
    /// 1e-3 on token scale 1 (where it learns to read the captions). Empty: no UNet training (only with
    /// <see cref="ContinueUNet"/>: the model is written from the snapshots).
    /// </summary>
    public IReadOnlyList<UNetStage> UNetStages { get; init; } = [new(2600, 2e-3, 0.02), new(3000, 1e-3, 0.02), new(3000, 1.5e-3), new(2000, 1e-3)];

    /// <summary>UNet steps over all stages.</summary>
    public int UNetSteps => UNetStages.Sum(st => st.Steps);

    /// <summary>Latents per UNet step.</summary>
    public int UNetBatch { get; init; } = 24;

    /// <summary>With a <see cref="WorkFolder"/>, the UNet snapshot is also written every this many steps (0: only at the end).</summary>
    public int SnapshotEvery { get; init; } = 500;

    /// <summary>
    /// γ of Min-SNR loss weighting (Hang et al. 2023): each sample's noise-prediction error is weighted by
    /// min(SNR(t), γ) / SNR(t), which stops the nearly noise-free steps from dominating and speeds up convergence.
    /// 0 turns the weighting off.
    /// </summary>
    public double MinSnrGamma { get; init; } = 5.0;

    /// <summary>Share of UNet samples whose caption is replaced by the empty prompt (classifier-free guidance).</summary>
    public double UnconditionalProbability { get; init; } = 0.1;

    /// <summary>Warm-up steps of each phase's learning rate.</summary>
    public int WarmupSteps { get; init; } = 100;

    /// <summary>Global gradient-norm clip.</summary>
    public double MaxGradientNorm { get; init; } = 1.0;

    /// <summary>
    /// A folder for phase snapshots (<c>autoencoder.safetensors</c>, <c>unet.safetensors</c>), or null. A finished
    /// autoencoder of the same seed, steps and batch found there is reused instead of trained again; with
    /// <see cref="ContinueUNet"/> the UNet starts from the snapshot there (more steps on a model trained before).
    /// </summary>
    public string? WorkFolder { get; init; }

    /// <summary>Start the UNet from <c>WorkFolder/unet.safetensors</c> instead of from its seeded initial weights.</summary>
    public bool ContinueUNet { get; init; }

    /// <summary>
    /// Resume an interrupted build from its last resume point in <see cref="WorkFolder"/> (<c>unet-resume.safetensors</c>,
    /// written with every UNet snapshot: the UNet and text-encoder weights, the optimizer's moments, the stage and step,
    /// and the loss log). The finished autoencoder and decoder are reused as always, and the data stream is replayed to
    /// the resume step, so the result equals that of the uninterrupted build. The options must be those of the
    /// interrupted run (an <see cref="SpmException"/> otherwise); without a resume point the build starts from the top.
    /// </summary>
    public bool Resume { get; init; }

    /// <summary>
    /// After the autoencoder and decoder phases, encode and decode this many fresh pictures and judge the round trips
    /// against their scenes (<see cref="TinyShapesTrainingReport.ReconstructionFidelity"/>): what the decoder can draw at
    /// all, before any UNet time is spent (0: skip).
    /// </summary>
    public int AutoencoderCheckImages { get; init; }

    /// <summary>Stop after the autoencoder and decoder phases (and the check): snapshots only, no pipeline written.</summary>
    public bool AutoencoderOnly { get; init; }

    /// <summary>
    /// With a <see cref="BaseModel"/> that ships its encoder (<c>vae_encoder/</c>), train that encoder further for
    /// <see cref="AutoencoderSteps"/> steps against the frozen decoder (a world drawn in another style) instead of taking
    /// it as it is.
    /// </summary>
    public bool TrainBaseEncoder { get; init; }

    /// <summary>
    /// Train the text encoder together with the UNet: the two graphs are joined into one (<see cref="Spm.Diffusion.Onnx.GraphComposer"/>) so the gradient reaches every text-encoder weight except the 49,408-row token
    /// table, which stays frozen at <see cref="TextTokenStd"/> (its gradient would be a one-hot product over the whole
    /// vocabulary at every step). A frozen random encoder maps captions to fixed features the UNet has to learn to read;
    /// a trained one learns to put the words that matter where the cross-attention can find them. Its weights are
    /// snapshotted beside the UNet's (<c>text_encoder.safetensors</c>) and continued with <see cref="ContinueUNet"/>.
    /// </summary>
    public bool TrainTextEncoder { get; init; }

    /// <summary>ONNX Runtime intra-op threads (0: all cores).</summary>
    public int Threads { get; init; }

    /// <summary>
    /// Folder that keeps ONNX Runtime's optimized gradient graphs between builds (see
    /// <see cref="Spm.Diffusion.Runtime.OptimizedModelCache"/>); null (the default) neither reads nor writes one. The
    /// graphs depend on the architecture and the batch, not on the weights, so a rebuild or a resumed build with the same
    /// settings skips about half of each graph's set-up; the results are bit-identical either way.
    /// </summary>
    public string? GraphCacheFolder { get; init; }

    /// <summary>
    /// The world the pictures and captions are drawn from (default: <see cref="ShapeWorldOptions.Default"/>, the shipped
    /// models' one-word-per-value captions; model v4 uses <see cref="CaptionStyle.Varied"/>).
    /// </summary>
    public ShapeWorldOptions World { get; init; } = ShapeWorldOptions.Default;

    /// <summary>
    /// A trained tiny-shapes pipeline folder to start from (say the shipped <c>models/tiny-shapes</c>), or null for seeded
    /// initial weights. Its UNet, VAE decoder, text encoder and scaling factor are taken as they are (the UNet unless
    /// <see cref="ContinueUNet"/> finds a snapshot). Pipelines ship no VAE encoder, and the UNet phase needs one to encode its
    /// latent pool, so the autoencoder phase trains an encoder alone against the base model's frozen decoder
    /// (<see cref="AutoencoderSteps"/> steps, same loss): its latents decode to the pictures, which is what the base UNet
    /// was trained to produce. The pool's measured scale is reported (<see cref="TinyShapesTrainingReport.PoolScalingFactor"/>)
    /// but the base model's scaling factor is kept, since the UNet was trained on it.
    /// </summary>
    public string? BaseModel { get; init; }

    /// <summary>Checks the values, naming the first bad one.</summary>
    public void Validate()
    {
        if (AutoencoderCheckImages is < 0 or > 100_000) throw new SpmException($"The autoencoder check takes 0..100000 pictures, got {AutoencoderCheckImages}.");
        if (AutoencoderSteps < 1 || DecoderSteps < 0 || SnapshotEvery < 0) throw new SpmException("Step counts must be at least 1 (decoder steps and snapshot interval at least 0).");
        if (UNetStages.Any(st => st.Steps < 1 || !(st.LearningRate > 0) || double.IsInfinity(st.LearningRate)))
            throw new SpmException("Every UNet stage needs at least 1 step and a positive learning rate.");
        if (UNetStages.Any(st => st.TextTokenStd is { } std && !(std > 0 && std < 1e6)))
            throw new SpmException("A stage's text token standard deviation must be positive.");
        if (Resume && (ContinueUNet || WorkFolder is null)) throw new SpmException("Resuming a build needs its work folder (--work-dir) and does not go with --continue-unet.");
        if (UNetStages.Count == 0 && !ContinueUNet) throw new SpmException("0 UNet steps only make sense with --continue-unet (writes the model from the snapshots).");
        if (!(TextTokenStd > 0)) throw new SpmException("The text token standard deviation must be positive.");
        if (AutoencoderBatch < 2 || UNetBatch < 2) throw new SpmException("Batches must hold at least 2 samples.");
        if (LatentPoolSize < UNetBatch) throw new SpmException($"The latent pool ({LatentPoolSize}) must hold at least one batch ({UNetBatch}).");
        if (!(AutoencoderLearningRate > 0) || !(DecoderLearningRate > 0)) throw new SpmException("Learning rates must be positive.");
        if (!(AutoencoderChromaWeight >= 0 && AutoencoderChromaWeight < 1e3)) throw new SpmException("The autoencoder's chroma weight must be 0 (off) or positive.");
        if (!(AutoencoderLatentNoise >= 0 && AutoencoderLatentNoise < 1e3)) throw new SpmException("The autoencoder's latent noise must be 0 or a positive standard deviation.");
        if (!(LatentPenalty >= 0 && LatentPenalty < 1e6)) throw new SpmException("The latent penalty must be 0 or positive.");
        if (UnconditionalProbability is < 0 or > 1) throw new SpmException("The unconditional probability must lie in [0, 1].");
        ArgumentNullException.ThrowIfNull(World);
        try { World.Validate(); }
        catch (ArgumentException e) { throw new SpmException(e.Message); }
        if (World.ImageSize != TinyShapesModel.ImageSize) throw new SpmException($"The world's pictures must be {TinyShapesModel.ImageSize} px.");
        if (BaseModel is not null && !File.Exists(Path.Combine(BaseModel, "unet", "model.onnx")))
            throw new SpmException($"'{BaseModel}' is not a pipeline folder (no unet/model.onnx).");
    }
}

/// <summary>One stage of UNet training (see <see cref="TinyShapesTrainingOptions.UNetStages"/>).</summary>
/// <param name="Steps">Steps of the stage.</param>
/// <param name="LearningRate">Peak learning rate (warm-up, then cosine decay to 0 over the stage).</param>
/// <param name="TextTokenStd">Token-embedding scale of the frozen text encoder during this stage, or null for
/// <see cref="TinyShapesTrainingOptions.TextTokenStd"/>. The written model's text encoder is the last stage's.</param>
/// <param name="TrainTextEncoder">Train the text encoder (all but its token table) together with the UNet in this stage, as
/// <see cref="TinyShapesTrainingOptions.TrainTextEncoder"/> does for every stage. Later frozen stages keep the trained encoder.</param>
public sealed record UNetStage(int Steps, double LearningRate, double? TextTokenStd = null, bool TrainTextEncoder = false);

/// <summary>Progress of <see cref="TinyShapesModel.TrainAsync"/>.</summary>
/// <param name="Phase">"autoencoder", "decoder", "encode" or "unet".</param>
/// <param name="Step">Completed steps of the phase.</param>
/// <param name="Steps">Steps of the phase.</param>
/// <param name="Loss">Loss of the last step (smoothed), NaN when not applicable.</param>
/// <param name="StepsPerSecond">Recent speed.</param>
public readonly record struct TinyShapesProgress(string Phase, int Step, int Steps, double Loss, double StepsPerSecond);

/// <summary>What a training run measured.</summary>
/// <param name="AutoencoderLoss">Mean reconstruction MSE (in [-1, 1] pixel units) over the last 50 autoencoder steps (NaN when
/// none ran: loaded from a snapshot, or a base model's shipped encoder taken as it is).</param>
/// <param name="ScalingFactor">1 / standard deviation of the pooled latents, written to vae_decoder/config.json.</param>
/// <param name="UNetLoss">Mean noise-prediction MSE over the last 100 UNet steps.</param>
/// <param name="AutoencoderTime">Time of the autoencoder phase.</param>
/// <param name="EncodeTime">Time to encode the latent pool.</param>
/// <param name="UNetTime">Time of the UNet phase.</param>
/// <param name="AutoencoderLosses">Loss of every autoencoder step.</param>
/// <param name="UNetLosses">Loss of every UNet step (Min-SNR weighted).</param>
public sealed record TinyShapesTrainingReport(double AutoencoderLoss, double ScalingFactor, double UNetLoss,
    TimeSpan AutoencoderTime, TimeSpan EncodeTime, TimeSpan UNetTime, IReadOnlyList<double> AutoencoderLosses, IReadOnlyList<double> UNetLosses)
{
    /// <summary>Mean reconstruction MSE over the last 50 decoder-refinement steps (NaN when skipped or reused).</summary>
    public double DecoderLoss { get; init; } = double.NaN;

    /// <summary>Time of the decoder refinement.</summary>
    public TimeSpan DecoderTime { get; init; }

    /// <summary>Loss of every decoder-refinement step.</summary>
    public IReadOnlyList<double> DecoderLosses { get; init; } = [];

    /// <summary>1 / standard deviation of this run's latent pool (equal to <see cref="ScalingFactor"/> unless a base model's factor was kept).</summary>
    public double PoolScalingFactor { get; init; } = double.NaN;

    /// <summary>
    /// How the autoencoder's round trips of fresh pictures read against their scenes
    /// (<see cref="TinyShapesTrainingOptions.AutoencoderCheckImages"/>), or null when not checked.
    /// </summary>
    public FidelityResult? ReconstructionFidelity { get; init; }
}

/// <summary>
/// The project's built-in text-to-image model: an SD-1.x-architecture pipeline at a small size, trained from scratch on
/// the tiny-shapes world by the project's own training engine (full mode over ONNX graphs) in three phases:
/// (1) an autoencoder (SD-structured decoder, mirrored deterministic encoder) on rendered 64×64 pictures;
/// (2) a pool of pictures encoded once, whose latent standard deviation fixes the VAE scaling factor;
/// (3) the UNet, ε-prediction on SD's noise schedule, conditioned on a frozen CLIP-architecture text encoder over the
/// real CLIP vocabulary. The text encoder keeps its seeded random weights: it is a fixed random feature map of the
/// caption, which the UNet's cross-attention learns to read (freezing it also keeps its 49,408-row token table
/// out of the optimizer).
/// </summary>
public static class TinyShapesModel
{
    /// <summary>Image size in pixels.</summary>
    public const int ImageSize = 64;

    /// <summary>The model's sizes (see docs/tiny-shapes.md).</summary>
    public static PipelinePreset Preset { get; } = new(
        "tiny-shapes",
        new UNetConfig
        {
            SampleSize = 16,
            BlockOutChannels = [32, 64, 64],
            LayersPerBlock = 1,
            NormNumGroups = 8,
            CrossAttentionDim = 32,
            AttentionHeadDim = [4],
            DownBlockTypes = ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
            UpBlockTypes = ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
        },
        new ClipTextConfig { Width = 32, Layers = 2, Heads = 4, IntermediateSize = 128 },
        new VaeDecoderConfig { BlockOutChannels = [16, 32, 64], LayersPerBlock = 1, NormNumGroups = 8 });

    /// <summary>
    /// Trains the model and writes a complete pipeline folder to <paramref name="folder"/> (atomically swapped in).
    /// </summary>
    /// <param name="folder">Output pipeline folder.</param>
    /// <param name="tokenizerFolder">Folder with CLIP's vocab.json and merges.txt.</param>
    /// <param name="options">Sizes of the run.</param>
    /// <param name="overwrite">Replace an existing folder.</param>
    /// <param name="progress">Receives per-step progress.</param>
    /// <param name="cancellationToken">Stops between steps (nothing is written).</param>
    public static Task<TinyShapesTrainingReport> TrainAsync(string folder, string tokenizerFolder, TinyShapesTrainingOptions options,
        bool overwrite = false, IProgress<TinyShapesProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(folder);
        ArgumentNullException.ThrowIfNull(tokenizerFolder);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (Directory.Exists(folder) && Directory.EnumerateFileSystemEntries(folder).Any() && !overwrite)
            throw new SpmException($"'{folder}' already exists and is not empty (use --force to replace it).");
        return Task.Run(() => Train(folder, tokenizerFolder, options, overwrite, progress, cancellationToken), cancellationToken);
    }

    private static TinyShapesTrainingReport Train(string folder, string tokenizerFolder, TinyShapesTrainingOptions o, bool overwrite,
        IProgress<TinyShapesProgress>? progress, CancellationToken ct)
    {
        var preset = Preset;
        var settings = new GradientSessionSettings(IntraOpThreads: o.Threads) { OptimizedModelCacheFolder = o.GraphCacheFolder };
        var world = new ShapeWorld(o.World);
        var baseModel = o.BaseModel is null ? null : BaseWeights.Load(o.BaseModel);

        // Phase 1: the autoencoder.
        var swAe = Stopwatch.StartNew();
        bool chroma = o.AutoencoderChromaWeight > 0 && o.AutoencoderChromaWeight != 1;
        var aeBuilder = VaeEncoderBuilder.CreateAutoencoder(preset.VaeDecoder, o.Seed, latentNoise: o.AutoencoderLatentNoise > 0, colourTransform: chroma);
        // With a base model its decoder is fixed: only the encoder half trains (to invert it).
        var frozen = baseModel is null ? new HashSet<string>() : WeightTransfer.CopyByConsumer(baseModel.Decoder, aeBuilder, partial: true);
        // A base pipeline that ships its encoder (the one its UNet was trained on) starts the encoder half from it.
        if (baseModel?.Encoder is { } shippedEncoder) WeightTransfer.CopyByConsumer(shippedEncoder, aeBuilder, partial: true);
        var aeModel = aeBuilder.Build();
        var dataRng = new SeededRandom(o.Seed ^ 0xA11CE);
        int ab = o.AutoencoderBatch, pixels = 3 * ImageSize * ImageSize, latentSize = ImageSize / 4;
        var images = new float[ab * pixels];
        var zeros = new float[ab * preset.VaeDecoder.LatentChannels * latentSize * latentSize];
        long[] imageShape = [ab, 3, ImageSize, ImageSize], latentShape = [ab, preset.VaeDecoder.LatentChannels, latentSize, latentSize];
        void RenderBatch(float[] dst, SeededRandom rng, string[]? captions)
        {
            for (int i = 0; i < dst.Length / pixels; i++)
            {
                var s = world.Sample(rng);
                var span = dst.AsSpan(i * pixels, pixels);
                ShapeRasterizer.Render(s.Scene, span, o.World);
                for (int k = 0; k < span.Length; k++) span[k] = span[k] * 2f - 1f;
                if (captions is not null) captions[i] = s.Caption;
            }
        }
        RenderBatch(images, dataRng, null);
        double aeLoss = double.NaN;
        var aeLosses = new List<double>(o.AutoencoderSteps);
        var unetLosses = new List<double>(o.UNetSteps);
        var aeTag = string.Create(System.Globalization.CultureInfo.InvariantCulture, $"seed={o.Seed};steps={o.AutoencoderSteps};batch={o.AutoencoderBatch};lr={o.AutoencoderLearningRate}")
            // The penalty joined the tag later: at its default the tag stays as before, so existing snapshots still match.
            + (o.LatentPenalty == 1e-4 ? "" : string.Create(System.Globalization.CultureInfo.InvariantCulture, $";penalty={o.LatentPenalty}"))
            + (o.AutoencoderLatentNoise == 0 ? "" : string.Create(System.Globalization.CultureInfo.InvariantCulture, $";noise={o.AutoencoderLatentNoise}"))
            + (!chroma ? "" : string.Create(System.Globalization.CultureInfo.InvariantCulture, $";chroma={o.AutoencoderChromaWeight}"))
            + (baseModel is null ? "" : ";base=" + baseModel.Fingerprint)
            + (o.TrainBaseEncoder && baseModel?.Encoder is not null ? ";train-encoder" : "")
            + WorldTag(o.World);
        string? aeSnapshot = o.WorkFolder is null ? null : Path.Combine(o.WorkFolder, "autoencoder.safetensors");
        if (aeSnapshot is not null && File.Exists(aeSnapshot) && TryLoadSnapshot(aeSnapshot, aeTag, aeBuilder))
        {
            progress?.Report(new TinyShapesProgress("autoencoder", o.AutoencoderSteps, o.AutoencoderSteps, double.NaN, 0));
        }
        else if (baseModel?.Encoder is not null && !o.TrainBaseEncoder)
        {
            // Taken as it is rather than another right-inverse of the decoder derived (a re-derived encoder's latents
            // cost the continued UNet most of its steps).
            progress?.Report(new TinyShapesProgress("encoder", o.AutoencoderSteps, o.AutoencoderSteps, double.NaN, 0));
        }
        else
        {
            using var imageValue = OrtValue.CreateTensorValueFromMemory(images, imageShape);
            using var zeroValue = OrtValue.CreateTensorValueFromMemory(zeros, latentShape);
            var latentNoise = new float[zeros.Length];
            var noiseRng = new SeededRandom(o.Seed ^ 0x1A7E_17);
            using var noiseValue = OrtValue.CreateTensorValueFromMemory(latentNoise, latentShape);
            var feeds = new Dictionary<string, OrtValue> { [VaeEncoderBuilder.ImageInput] = imageValue, ["latent_target"] = zeroValue };
            var inputs = new Dictionary<string, OrtValue> { [VaeEncoderBuilder.ImageInput] = imageValue };
            if (o.AutoencoderLatentNoise > 0) feeds[VaeEncoderBuilder.LatentNoiseInput] = inputs[VaeEncoderBuilder.LatentNoiseInput] = noiseValue;
            float[] colourMatrix = OpponentMatrix((float)o.AutoencoderChromaWeight), colourTarget = chroma ? new float[images.Length] : [];
            using var matrixValue = OrtValue.CreateTensorValueFromMemory(colourMatrix, [3, 3, 1, 1]);
            using var colourTargetValue = OrtValue.CreateTensorValueFromMemory(colourTarget, chroma ? imageShape : [0]);
            if (chroma) feeds[VaeEncoderBuilder.ColourTransformInput] = inputs[VaeEncoderBuilder.ColourTransformInput] = matrixValue;
            var trainable = FloatWeights(aeModel).Where(n => !frozen.Contains(n)).ToList();
            var reconstruction = chroma
                ? LossTerm.MeanSquaredError(VaeEncoderBuilder.ColourOutput, "colour_target")
                : LossTerm.MeanSquaredError(VaeEncoderBuilder.ReconstructionOutput, "image_target");
            using var trainer = GraphTrainer.Create(aeModel, trainable,
                [reconstruction, LossTerm.MeanSquaredError(VaeEncoderBuilder.LatentOutput, "latent_target", o.LatentPenalty)],
                inputs, new AdamW(weightDecay: 0), settings);
            if (chroma) feeds["colour_target"] = colourTargetValue;
            else feeds["image_target"] = imageValue;
            var schedule = new CosineWithHardRestartsSchedule(o.WarmupSteps, o.AutoencoderSteps, 1);
            aeLoss = RunPhase(baseModel is null ? "autoencoder" : "encoder", o.AutoencoderSteps, 50, aeLosses, step =>
            {
                RenderBatch(images, dataRng, null);
                if (chroma) ApplyColourMatrix(colourMatrix, images, colourTarget, ab, ImageSize * ImageSize);
                if (o.AutoencoderLatentNoise > 0)
                {
                    // A separate stream, so the pictures are those of a run without noise.
                    noiseRng.FillGaussian(latentNoise);
                    System.Numerics.Tensors.TensorPrimitives.Multiply(latentNoise, (float)o.AutoencoderLatentNoise, latentNoise);
                }
                return trainer.Step(feeds, schedule.At(o.AutoencoderLearningRate, step), o.MaxGradientNorm).Loss;
            }, progress, ct);
            trainer.CopyTo(aeBuilder);
            if (aeSnapshot is not null) SaveSnapshot(aeSnapshot, aeTag, aeBuilder);
        }
        swAe.Stop();

        var encoder = VaeEncoderBuilder.CreateEncoder(preset.VaeDecoder, o.Seed);
        WeightTransfer.CopyByConsumer(aeBuilder, encoder);
        using var encSession = OpenSession(encoder.Build(), "tiny-shapes VAE encoder", o.Threads);
        int latentLen = preset.VaeDecoder.LatentChannels * latentSize * latentSize;
        void Encode(ReadOnlyMemory<float> pictures, int n, Span<float> destination)
        {
            using var input = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, MemoryMarshal.AsMemory(pictures), [n, 3, ImageSize, ImageSize]);
            using var runOptions = new RunOptions();
            using var result = encSession.Run(runOptions, [VaeEncoderBuilder.ImageInput], [input], [VaeEncoderBuilder.LatentOutput]);
            result[0].GetTensorDataAsSpan<float>().CopyTo(destination);
        }

        // Phase 1b: refine the decoder alone on the frozen encoder's latents.
        var swDec = Stopwatch.StartNew();
        var decoder = VaeDecoderBuilder.Create(preset.VaeDecoder, o.Seed);
        WeightTransfer.CopyByConsumer(aeBuilder, decoder);
        var decTag = aeTag + string.Create(System.Globalization.CultureInfo.InvariantCulture, $";decoder={o.DecoderSteps};decoder-lr={o.DecoderLearningRate}");
        string? decSnapshot = o.WorkFolder is null ? null : Path.Combine(o.WorkFolder, "decoder.safetensors");
        var decLosses = new List<double>(o.DecoderSteps);
        if (o.DecoderSteps > 0 && !(decSnapshot is not null && File.Exists(decSnapshot) && TryLoadSnapshot(decSnapshot, decTag, decoder)))
        {
            var decRng = new SeededRandom(o.Seed ^ 0xDEC0DE);
            var decLatents = new float[zeros.Length];
            RenderBatch(images, decRng, null);
            Encode(images, ab, decLatents);
            using var imageValue = OrtValue.CreateTensorValueFromMemory(images, imageShape);
            using var latentValue = OrtValue.CreateTensorValueFromMemory(decLatents, latentShape);
            var decoderModel = decoder.Build();
            using var trainer = GraphTrainer.Create(decoderModel, FloatWeights(decoderModel), [LossTerm.MeanSquaredError("sample", "image_target")],
                new Dictionary<string, OrtValue> { ["latent_sample"] = latentValue }, new AdamW(weightDecay: 0), settings);
            var feeds = new Dictionary<string, OrtValue> { ["latent_sample"] = latentValue, ["image_target"] = imageValue };
            var schedule = new CosineWithHardRestartsSchedule(o.WarmupSteps, o.DecoderSteps, 1);
            RunPhase("decoder", o.DecoderSteps, 50, decLosses, step =>
            {
                RenderBatch(images, decRng, null);
                Encode(images, ab, decLatents);
                return trainer.Step(feeds, schedule.At(o.DecoderLearningRate, step), o.MaxGradientNorm).Loss;
            }, progress, ct);
            trainer.CopyTo(decoder);
            if (decSnapshot is not null) SaveSnapshot(decSnapshot, decTag, decoder);
        }
        swDec.Stop();

        FidelityResult? roundTrips = null;
        if (o.AutoencoderCheckImages > 0)
        {
            ct.ThrowIfCancellationRequested();
            roundTrips = CheckReconstruction(decoder, Encode, o, world, progress, ct);
        }
        if (o.AutoencoderOnly)
            return new TinyShapesTrainingReport(aeLoss, double.NaN, double.NaN, swAe.Elapsed, TimeSpan.Zero, TimeSpan.Zero, aeLosses, unetLosses)
            {
                DecoderLoss = decLosses.Count == 0 ? double.NaN : decLosses.TakeLast(50).Average(),
                DecoderTime = swDec.Elapsed,
                DecoderLosses = decLosses,
                ReconstructionFidelity = roundTrips,
            };

        // Phase 2: encode a pool of pictures; their spread fixes the scaling factor.
        var swEnc = Stopwatch.StartNew();
        int pool = o.LatentPoolSize;
        var latents = new float[(long)pool * latentLen];
        var captions = new string[pool];
        var poolRng = new SeededRandom(o.Seed ^ 0xB0B);
        {
            const int chunk = 64;
            var buffer = new float[chunk * pixels];
            var chunkCaptions = new string[chunk];
            var sw = Stopwatch.StartNew();
            for (int start = 0; start < pool; start += chunk)
            {
                ct.ThrowIfCancellationRequested();
                int n = Math.Min(chunk, pool - start);
                RenderBatch(buffer, poolRng, chunkCaptions);
                Encode(buffer.AsMemory(0, n * pixels), n, latents.AsSpan(start * latentLen, n * latentLen));
                Array.Copy(chunkCaptions, 0, captions, start, n);
                progress?.Report(new TinyShapesProgress("encode", start + n, pool, double.NaN, (start + n) / Math.Max(1e-9, sw.Elapsed.TotalSeconds)));
            }
        }
        double mean = 0, sq = 0;
        foreach (var v in latents) { mean += v; sq += (double)v * v; }
        mean /= latents.Length;
        double std = Math.Sqrt(Math.Max(1e-12, sq / latents.Length - mean * mean));
        float poolScaling = (float)(1.0 / std);
        // A base model's UNet was trained on latents times its own factor: keep it.
        float scaling = baseModel is null ? poolScaling : (float)baseModel.ScalingFactor;
        System.Numerics.Tensors.TensorPrimitives.Multiply(latents, scaling, latents);
        swEnc.Stop();

        // Phase 3: the UNet on noised latents, conditioned on the frozen text encoder.
        var swUnet = Stopwatch.StartNew();
        var tokenizer = ClipTokenizer.Load(tokenizerFolder);
        double StdOf(UNetStage stage) => stage.TextTokenStd ?? o.TextTokenStd;
        double textStd = o.UNetStages.Count > 0 ? StdOf(o.UNetStages[0]) : o.TextTokenStd;
        var textBuilder = ConditionTextEncoder(ClipTextEncoderBuilder.Create(preset.TextEncoder, o.Seed), textStd);
        int width = preset.TextEncoder.Width, seq = ClipTokenizer.DefaultMaxLength;
        var unetBuilder = UNetBuilder.Create(preset.UNet, o.Seed);
        string? unetSnapshot = o.WorkFolder is null ? null : Path.Combine(o.WorkFolder, "unet.safetensors");
        string? textSnapshot = o.WorkFolder is null ? null : Path.Combine(o.WorkFolder, "text_encoder.safetensors");
        bool TrainsText(UNetStage stage) => o.TrainTextEncoder || stage.TrainTextEncoder;
        // textTrained: the encoder's weights are no longer the seeded ones (snapshotted and written with the model);
        // trainsText: the current stage trains it (the condition is then token ids, not cached states).
        bool textTrained = false, trainsText = false;
        if (baseModel is not null)
        {
            // The base model's text encoder as it is (its token table included: the UNet was trained on its states).
            WeightTransfer.CopyByConsumer(baseModel.TextEncoder, textBuilder, partial: false);
            textTrained = true;
            if (!o.ContinueUNet) WeightTransfer.CopyByConsumer(baseModel.UNet, unetBuilder, partial: false);
        }
        if (o.ContinueUNet)
        {
            if (unetSnapshot is null || !File.Exists(unetSnapshot) || !TryLoadSnapshot(unetSnapshot, null, unetBuilder))
                throw new SpmException($"No UNet snapshot to continue from in '{o.WorkFolder}'.");
            // A text encoder trained before continues too (the UNet was trained against it, so it is loaded whether or not
            // this run trains it further); without one (a UNet trained on the frozen encoder) it starts from its seeded weights.
            if (textSnapshot is not null && File.Exists(textSnapshot) && TryLoadSnapshot(textSnapshot, null, textBuilder)) textTrained = true;
        }

        // The resume point: every option that shapes the UNet phase is in its tag, so another run's point is refused.
        var resumeTag = decTag + string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $";stages={string.Join("/", o.UNetStages.Select(st => $"{st.Steps}:{st.LearningRate:R}:{st.TextTokenStd?.ToString("R") ?? "-"}:{st.TrainTextEncoder}"))};batch={o.UNetBatch};pool={o.LatentPoolSize};minsnr={o.MinSnrGamma:R};uncond={o.UnconditionalProbability:R};warmup={o.WarmupSteps};clip={o.MaxGradientNorm:R};textstd={o.TextTokenStd:R};text={o.TrainTextEncoder}");
        string? resumePath = o.WorkFolder is null ? null : Path.Combine(o.WorkFolder, ResumeFile);
        ResumePoint? resume = o.Resume && resumePath is not null && File.Exists(resumePath) ? ResumePoint.Read(resumePath, resumeTag) : null;
        if (resume is not null) unetLosses.AddRange(resume.Losses);

        var schedule3 = NoiseSchedule.FromConfig(new SchedulerConfig());
        var alphas = schedule3.AlphasCumprod;
        int b = o.UNetBatch;
        var sample = new float[b * latentLen];
        var noise = new float[b * latentLen];
        var timesteps = new float[b];
        var lossWeights = new float[b];
        // The condition: the frozen encoder's states (computed once per caption), or the token ids when the encoder trains.
        var context = new float[b * seq * width];
        var tokenIds = new int[b * seq];
        var idCache = new Dictionary<string, int[]>(StringComparer.Ordinal);
        int[] Tokens(string caption)
        {
            if (!idCache.TryGetValue(caption, out var ids)) idCache[caption] = ids = tokenizer.Encode(caption);
            return ids;
        }
        var embeddings = new Dictionary<string, float[]>(StringComparer.Ordinal);
        InferenceSession? textSession = null;
        float[] Embed(string caption)
        {
            if (embeddings.TryGetValue(caption, out var e)) return e;
            textSession ??= OpenSession(textBuilder.Build(), "tiny-shapes text encoder", o.Threads);
            var ids = Tokens(caption);
            using var idValue = OrtValue.CreateTensorValueFromMemory(ids, [1, ids.Length]);
            using var runOptions = new RunOptions();
            using var r = textSession.Run(runOptions, ["input_ids"], [idValue], ["last_hidden_state"]);
            e = r[0].GetTensorDataAsSpan<float>().ToArray();
            embeddings[caption] = e;
            return e;
        }

        SeededRandom rng = null!;
        void FillBatch()
        {
            for (int i = 0; i < b; i++)
            {
                int idx = rng.NextInt(0, pool);
                int t = rng.NextInt(0, schedule3.Length);
                timesteps[i] = t;
                var z = latents.AsSpan(idx * latentLen, latentLen);
                var eps = noise.AsSpan(i * latentLen, latentLen);
                rng.FillGaussian(eps);
                schedule3.AddNoise(z, eps, t, sample.AsSpan(i * latentLen, latentLen));
                // Min-SNR: the loss compares sqrt(w)·prediction with sqrt(w)·noise, so w multiplies the squared error.
                double snr = alphas[t] / (1.0 - alphas[t]);
                float w = o.MinSnrGamma > 0 ? (float)Math.Sqrt(Math.Min(snr, o.MinSnrGamma) / snr) : 1f;
                lossWeights[i] = w;
                System.Numerics.Tensors.TensorPrimitives.Multiply(eps, w, eps);
                var caption = rng.NextDouble() < o.UnconditionalProbability ? "" : captions[idx];
                if (trainsText) Tokens(caption).CopyTo(tokenIds.AsSpan(i * seq, seq));
                else Embed(caption).CopyTo(context.AsSpan(i * seq * width, seq * width));
            }
        }
        double unetLoss = double.NaN;
        try
        {
            for (int stage = 0; stage < o.UNetStages.Count; stage++)
            {
                var (stageSteps, stageLr) = (o.UNetStages[stage].Steps, o.UNetStages[stage].LearningRate);
                bool lastStage = stage == o.UNetStages.Count - 1;
                bool newScale = StdOf(o.UNetStages[stage]) != textStd;
                if (newScale || trainsText)
                {
                    // Another token scale, or an encoder trained by the stage before: the encoder's states change, so
                    // cached ones go (trained layers stay).
                    textStd = StdOf(o.UNetStages[stage]);
                    if (newScale) ConditionTextEncoder(textBuilder, textStd);
                    embeddings.Clear();
                    textSession?.Dispose();
                    textSession = null;
                }
                trainsText = TrainsText(o.UNetStages[stage]);
                textTrained |= trainsText;
                // Resuming: stages finished before the resume point only replay their bookkeeping above.
                int startStep = 0;
                if (resume is not null)
                {
                    if (stage == resume.Stage)
                    {
                        resume.LoadWeights(unetBuilder, "unet.");
                        if (resume.HasText) { resume.LoadWeights(textBuilder, "text."); textTrained = true; }
                        embeddings.Clear();
                        textSession?.Dispose();
                        textSession = null;
                        startStep = resume.Step;
                    }
                    if (stage < resume.Stage || startStep >= stageSteps)
                    {
                        progress?.Report(new TinyShapesProgress(o.UNetStages.Count == 1 ? "unet" : $"unet {stage + 1}/{o.UNetStages.Count}", stageSteps, stageSteps, double.NaN, 0));
                        continue;
                    }
                }
                // Each stage replays the data stream from the seed, as a separate --continue-unet run does (and a
                // resumed stage replays it to its resume step).
                rng = new SeededRandom(o.Seed ^ 0xC0FFEE);
                for (int replay = 0; replay <= startStep; replay++) FillBatch();
                var unetModel = WithLossWeight(unetBuilder.Build());
                using var sampleValue = OrtValue.CreateTensorValueFromMemory(sample, [b, preset.UNet.InChannels, latentSize, latentSize]);
                using var timestepValue = OrtValue.CreateTensorValueFromMemory(timesteps, [b]);
                using var noiseValue = OrtValue.CreateTensorValueFromMemory(noise, [b, preset.UNet.OutChannels, latentSize, latentSize]);
                using var weightValue = OrtValue.CreateTensorValueFromMemory(lossWeights, [b, 1, 1, 1]);
                using var conditionValue = trainsText
                    ? OrtValue.CreateTensorValueFromMemory(tokenIds, [b, seq])
                    : OrtValue.CreateTensorValueFromMemory(context, [b, seq, width]);
                var inputs = new Dictionary<string, OrtValue> { ["sample"] = sampleValue, ["timestep"] = timestepValue, [LossWeightInput] = weightValue };
                List<string> trained;
                if (trainsText)
                {
                    unetModel = Spm.Diffusion.Onnx.GraphComposer.Chain(textBuilder.Build(), unetModel,
                        new Dictionary<string, string> { ["last_hidden_state"] = "encoder_hidden_states" }, TextPrefix);
                    inputs["input_ids"] = conditionValue;
                    trained = FloatWeights(unetModel).Where(n => n != TextPrefix + FrozenTokenTable).ToList();
                }
                else
                {
                    inputs["encoder_hidden_states"] = conditionValue;
                    trained = FloatWeights(unetModel);
                }
                using var trainer = GraphTrainer.Create(unetModel, trained, [LossTerm.MeanSquaredError(WeightedOutput, "noise_target")], inputs, new AdamW(weightDecay: 0.01), settings);
                if (startStep > 0) resume!.LoadOptimizer(trainer.Optimizer);
                var feeds = new Dictionary<string, OrtValue>(inputs) { ["noise_target"] = noiseValue };
                var schedule = new CosineWithHardRestartsSchedule(o.WarmupSteps, stageSteps, 1);
                int stageIndex = stage;
                void Snapshot(int stepsDone)
                {
                    trainer.CopyTo(unetBuilder);
                    if (unetSnapshot is not null) SaveSnapshot(unetSnapshot, "unet", unetBuilder);
                    if (trainsText) trainer.CopyTo(textBuilder, TextPrefix);
                    if (textTrained && textSnapshot is not null) SaveSnapshot(textSnapshot, "text_encoder", textBuilder);
                    if (resumePath is not null)
                        ResumePoint.Write(resumePath, resumeTag, stageIndex, stepsDone, unetBuilder, textTrained ? textBuilder : null, trainer.Optimizer, unetLosses);
                }
                unetLoss = RunPhase(o.UNetStages.Count == 1 ? "unet" : $"unet {stage + 1}/{o.UNetStages.Count}", stageSteps, 100, unetLosses, step =>
                {
                    FillBatch();
                    double loss = trainer.Step(feeds, schedule.At(stageLr, step), o.MaxGradientNorm).Loss;
                    if (unetSnapshot is not null && o.SnapshotEvery > 0 && (step + 1) % o.SnapshotEvery == 0 && !(lastStage && step + 1 == stageSteps))
                    {
                        // The loss log of the snapshot must hold this step's loss too (RunPhase appends it after we return).
                        unetLosses.Add(loss);
                        Snapshot((int)step + 1);
                        unetLosses.RemoveAt(unetLosses.Count - 1);
                    }
                    return loss;
                }, progress, ct, startStep);
                Snapshot(stageSteps);
            }
        }
        finally
        {
            textSession?.Dispose();
        }
        swUnet.Stop();
        // Resumed after the last stage had finished: the phase's figure comes from the restored log.
        if (double.IsNaN(unetLoss) && unetLosses.Count > 0) unetLoss = unetLosses.TakeLast(100).Average();

        // Write the pipeline folder with the trained weights.
        var trainedPreset = preset with { VaeDecoder = preset.VaeDecoder with { ScalingFactor = Math.Round(scaling, 5) } };
        var shippedEncoderGraph = VaeEncoderBuilder.CreatePipelineEncoder(preset.VaeDecoder, o.Seed);
        WeightTransfer.CopyByConsumer(aeBuilder, shippedEncoderGraph);
        PipelineWriter.Write(folder, trainedPreset, o.Seed, new PipelineWriteOptions
        {
            TokenizerFolder = tokenizerFolder,
            VaeEncoder = shippedEncoderGraph,
            Overwrite = overwrite,
            // A continuation samples as its base did (the shipped model's DPM-Solver++ and guidance 3, not the preset's PNDM).
            SamplingFrom = o.BaseModel,
            Customize = (component, g) =>
            {
                if (component == "unet") WeightTransfer.CopyByConsumer(unetBuilder, g);
                else if (component == "vae_decoder") WeightTransfer.CopyByConsumer(decoder, g);
                else if (component == "text_encoder")
                {
                    ConditionTextEncoder(g, textStd);
                    if (textTrained) WeightTransfer.CopyByConsumer(textBuilder, g);
                }
            },
        }, cancellationToken: ct);
        return new TinyShapesTrainingReport(aeLoss, Math.Round(scaling, 5), unetLoss, swAe.Elapsed, swEnc.Elapsed, swUnet.Elapsed, aeLosses, unetLosses)
        {
            DecoderLoss = decLosses.Count == 0 ? double.NaN : decLosses.TakeLast(50).Average(),
            DecoderTime = swDec.Elapsed,
            DecoderLosses = decLosses,
            PoolScalingFactor = Math.Round(poolScaling, 5),
            ReconstructionFidelity = roundTrips,
        };
    }

    /// <summary>A picture batch encoder: planar pictures in [-1, 1], their count, the latents' destination.</summary>
    private delegate void PictureEncoder(ReadOnlyMemory<float> pictures, int count, Span<float> destination);

    /// <summary>
    /// Renders <see cref="TinyShapesTrainingOptions.AutoencoderCheckImages"/> pictures from a stream of their own (the
    /// training data is untouched), sends them through the encoder and the decoder, and judges each result against its
    /// scene.
    /// </summary>
    private static FidelityResult CheckReconstruction(GraphBuilder decoder, PictureEncoder encode, TinyShapesTrainingOptions o,
        ShapeWorld world, IProgress<TinyShapesProgress>? progress, CancellationToken ct)
    {
        const int chunk = 32;
        int pixels = 3 * ImageSize * ImageSize, latentLen = Preset.VaeDecoder.LatentChannels * (ImageSize / 4) * (ImageSize / 4);
        using var session = OpenSession(decoder.Build(), "tiny-shapes VAE decoder", o.Threads);
        var rng = new SeededRandom(o.Seed ^ 0xC4EC_0A7EUL);
        var buffer = new float[chunk * pixels];
        var latent = new float[chunk * latentLen];
        var judged = new List<(ShapeScene, float[])>(o.AutoencoderCheckImages);
        var scenes = new ShapeScene[chunk];
        var sw = Stopwatch.StartNew();
        for (int start = 0; start < o.AutoencoderCheckImages; start += chunk)
        {
            ct.ThrowIfCancellationRequested();
            int n = Math.Min(chunk, o.AutoencoderCheckImages - start);
            for (int i = 0; i < n; i++)
            {
                scenes[i] = world.RandomScene(rng);
                var span = buffer.AsSpan(i * pixels, pixels);
                ShapeRasterizer.Render(scenes[i], span, o.World);
                for (int k = 0; k < span.Length; k++) span[k] = span[k] * 2f - 1f;
            }
            encode(buffer.AsMemory(0, n * pixels), n, latent.AsSpan(0, n * latentLen));
            using var input = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, latent.AsMemory(0, n * latentLen),
                [n, Preset.VaeDecoder.LatentChannels, ImageSize / 4, ImageSize / 4]);
            using var runOptions = new RunOptions();
            using var result = session.Run(runOptions, ["latent_sample"], [input], ["sample"]);
            var decoded = result[0].GetTensorDataAsSpan<float>();
            for (int i = 0; i < n; i++)
            {
                var picture = new float[pixels];
                for (int k = 0; k < pixels; k++) picture[k] = Math.Clamp(decoded[i * pixels + k] * 0.5f + 0.5f, 0f, 1f);
                judged.Add((scenes[i], picture));
            }
            progress?.Report(new TinyShapesProgress("check", start + n, o.AutoencoderCheckImages, double.NaN, (start + n) / Math.Max(1e-9, sw.Elapsed.TotalSeconds)));
        }
        return FidelityEvaluation.MeasureScenes(judged, ImageSize, new ShapeEvaluator(ShapeEvaluatorOptions.For(o.World.Style)));
    }

    /// <summary>The world's settings that change the data, for snapshot tags (empty for the default world, so older snapshots match).</summary>
    private static string WorldTag(ShapeWorldOptions w)
    {
        var tag = "";
        if (w.Captions != CaptionStyle.Basic) tag += ";captions=" + w.Captions.ToString().ToLowerInvariant();
        if (w.Style != ShapeStyle.Flat) tag += ";style=" + w.Style.ToString().ToLowerInvariant();
        if (w.StripeAngle is { } angle) tag += ";stripe-angle=" + angle.ToString("R", System.Globalization.CultureInfo.InvariantCulture);
        if (w.StripePeriod != ShapeRasterizer.StripePeriod) tag += ";stripes=" + w.StripePeriod.ToString("R", System.Globalization.CultureInfo.InvariantCulture);
        if (w.DotSpacing != ShapeRasterizer.DotSpacing) tag += ";dots=" + w.DotSpacing.ToString("R", System.Globalization.CultureInfo.InvariantCulture);
        if (w.DotAngle is { } dotAngle) tag += ";dot-angle=" + dotAngle.ToString("R", System.Globalization.CultureInfo.InvariantCulture);
        if (w.PatternWeights is { } pw) tag += ";patterns=" + string.Join(",", pw.Select(x => x.ToString("R", System.Globalization.CultureInfo.InvariantCulture)));
        return tag;
    }

    /// <summary>The weights of a trained pipeline folder that <see cref="TinyShapesTrainingOptions.BaseModel"/> starts from.</summary>
    private sealed record BaseWeights(Diffusion.Onnx.Proto.ModelProto UNet, Diffusion.Onnx.Proto.ModelProto Decoder,
        Diffusion.Onnx.Proto.ModelProto TextEncoder, Diffusion.Onnx.Proto.ModelProto? Encoder, double ScalingFactor, string Fingerprint)
    {
        public static BaseWeights Load(string folder)
        {
            var f = Spm.Diffusion.Pipelines.ModelFolder.Open(folder);
            byte[] unet = File.ReadAllBytes(f.UNetPath), dec = File.ReadAllBytes(f.VaeDecoderPath), text = File.ReadAllBytes(f.TextEncoderPath);
            // Pipelines written before the encoder shipped (models v1-v3) have none: one is then trained against the decoder.
            var encoderPath = Path.Combine(folder, "vae_encoder", "model.onnx");
            byte[] enc = File.Exists(encoderPath) ? File.ReadAllBytes(encoderPath) : [];
            // Tags of the snapshots made from it: another base model must not reuse them.
            var hash = Convert.ToHexString(System.Security.Cryptography.SHA256.HashData([.. unet, .. dec, .. text, .. enc]))[..12].ToLowerInvariant();
            Diffusion.Onnx.Proto.ModelProto Parse(byte[] bytes, string path)
            {
                try { return Diffusion.Onnx.Proto.ModelProto.Parser.ParseFrom(bytes); }
                catch (InvalidProtocolBufferException e) { throw new SpmFormatException(path, null, "not a readable ONNX model: " + e.Message, e); }
            }
            return new BaseWeights(Parse(unet, f.UNetPath), Parse(dec, f.VaeDecoderPath), Parse(text, f.TextEncoderPath),
                enc.Length == 0 ? null : Parse(enc, encoderPath), f.VaeScalingFactor, hash);
        }
    }

    /// <summary>The opponent colour basis of <see cref="TinyShapesTrainingOptions.AutoencoderChromaWeight"/> as a [3, 3, 1, 1] conv kernel (row = output channel).</summary>
    internal static float[] OpponentMatrix(float chromaWeight)
    {
        float l = 1 / MathF.Sqrt(3), a = chromaWeight / MathF.Sqrt(2), b = chromaWeight / MathF.Sqrt(6);
        return [l, l, l, a, -a, 0, b, b, -2 * b];
    }

    /// <summary>destination[n, o, p] = sum_i m[o, i] * source[n, i, p] for NCHW pictures of <paramref name="pixels"/> pixels.</summary>
    internal static void ApplyColourMatrix(float[] m, ReadOnlySpan<float> source, Span<float> destination, int count, int pixels)
    {
        for (int n = 0; n < count; n++)
        {
            var src = source.Slice(n * 3 * pixels, 3 * pixels);
            var dst = destination.Slice(n * 3 * pixels, 3 * pixels);
            for (int o = 0; o < 3; o++)
            {
                var d = dst.Slice(o * pixels, pixels);
                System.Numerics.Tensors.TensorPrimitives.Multiply(src[..pixels], m[3 * o], d);
                System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(src.Slice(pixels, pixels), m[3 * o + 1], d, d);
                System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(src.Slice(2 * pixels, pixels), m[3 * o + 2], d, d);
            }
        }
    }

    /// <summary>Re-draws the frozen text encoder's token embedding at standard deviation <paramref name="std"/> (seeded, so training and the written model agree).</summary>
    private static GraphBuilder ConditionTextEncoder(GraphBuilder g, double std)
    {
        g.SetInitializer(FrozenTokenTable, TensorInit.Normal((float)std));
        return g;
    }

    /// <summary>Names of the float32 initializers of a model: the weights every phase trains and snapshots.</summary>
    private static List<string> FloatWeights(Diffusion.Onnx.Proto.ModelProto model)
        => model.Graph.Initializer.Where(i => i.DataType == (int)Diffusion.Onnx.Proto.TensorProto.Types.DataType.Float).Select(i => i.Name).ToList();

    private static void SaveSnapshot(string path, string tag, GraphBuilder g)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        var tensors = new SortedDictionary<string, Core.Tensors.FloatTensor>(StringComparer.Ordinal);
        foreach (var t in g.Build().Graph.Initializer.Where(i => i.DataType == 1))
            tensors[t.Name] = new Core.Tensors.FloatTensor(t.Dims.Select(d => (int)d).ToArray(), InitializerValues.ReadFloats(t));
        Core.SafeTensors.SafeTensorsWriter.WriteFloat(path, tensors, new Dictionary<string, string> { ["spm.snapshot"] = tag });
    }

    /// <summary>Loads a snapshot into a builder of the same network (same names); false when its tag differs.</summary>
    private static bool TryLoadSnapshot(string path, string? tag, GraphBuilder g)
    {
        using var file = Core.SafeTensors.SafeTensorsFile.Open(path);
        if (tag is not null && (!file.Metadata.TryGetValue("spm.snapshot", out var found) || found != tag)) return false;
        var floats = FloatWeights(g.Build()).ToHashSet(StringComparer.Ordinal);
        foreach (var (name, shape) in g.Initializers.ToList())
        {
            if (!floats.Contains(name)) continue;
            var t = file.ReadFloat(name);
            if (!t.Shape.Select(d => (long)d).SequenceEqual(shape)) throw new SpmFormatException(path, name, "has another shape than the model's weight.");
            g.SetInitializer(name, TensorInit.FromData(t.Data));
        }
        return true;
    }

    private const string ResumeFile = "unet-resume.safetensors";

    /// <summary>
    /// Where an interrupted UNet phase stands: weights, optimizer moments, stage and step, the loss log. Written atomically
    /// beside the snapshots, so a kill leaves the previous point or the new one, never half of either.
    /// </summary>
    private sealed class ResumePoint
    {
        private const string TagKey = "spm.resume", StageKey = "spm.resume.stage", StepKey = "spm.resume.step", LossesKey = "spm.resume.losses";
        private readonly Dictionary<string, Core.Tensors.FloatTensor> _tensors;
        private readonly string _path;

        private ResumePoint(string path, int stage, int step, double[] losses, Dictionary<string, Core.Tensors.FloatTensor> tensors)
        {
            _path = path;
            Stage = stage;
            Step = step;
            Losses = losses;
            _tensors = tensors;
        }

        public int Stage { get; }
        public int Step { get; }
        public double[] Losses { get; }
        public bool HasText => _tensors.Keys.Any(k => k.StartsWith("text.", StringComparison.Ordinal));

        public static void Write(string path, string tag, int stage, int step, GraphBuilder unet, GraphBuilder? text, Optimizer optimizer, IReadOnlyList<double> losses)
        {
            var tensors = new Dictionary<string, Core.Tensors.FloatTensor>(StringComparer.Ordinal);
            void Add(GraphBuilder g, string prefix)
            {
                foreach (var t in g.Build().Graph.Initializer.Where(i => i.DataType == 1))
                    tensors[prefix + t.Name] = new Core.Tensors.FloatTensor(t.Dims.Select(d => (int)d).ToArray(), InitializerValues.ReadFloats(t));
            }
            Add(unet, "unet.");
            if (text is not null) Add(text, "text.");
            var metadata = new Dictionary<string, string>
            {
                [TagKey] = tag,
                [StageKey] = stage.ToString(System.Globalization.CultureInfo.InvariantCulture),
                [StepKey] = step.ToString(System.Globalization.CultureInfo.InvariantCulture),
                [LossesKey] = string.Join(",", losses.Select(l => l.ToString("R", System.Globalization.CultureInfo.InvariantCulture))),
            };
            optimizer.ExportState(tensors, metadata);
            Core.SafeTensors.SafeTensorsWriter.WriteFloat(path, tensors, metadata);
        }

        public static ResumePoint Read(string path, string tag)
        {
            using var file = Core.SafeTensors.SafeTensorsFile.Open(path);
            if (!file.Metadata.TryGetValue(TagKey, out var found) || found != tag)
                throw new SpmException($"'{path}' is the resume point of a build with other options (its tag: {found ?? "(none)"}; this build's: {tag}). Resume with the interrupted run's options, or leave out --resume to start over.");
            int Int(string key) => file.Metadata.TryGetValue(key, out var v) && int.TryParse(v, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var n)
                ? n : throw new SpmFormatException(path, key, "missing or not a non-negative integer.");
            double[] losses = file.Metadata.TryGetValue(LossesKey, out var text) && text.Length > 0
                ? text.Split(',').Select(x => double.TryParse(x, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var d) ? d : throw new SpmFormatException(path, LossesKey, $"'{x}' is not a number.")).ToArray()
                : [];
            var tensors = new Dictionary<string, Core.Tensors.FloatTensor>(StringComparer.Ordinal);
            foreach (var info in file.Tensors)
                if (!info.Name.StartsWith("optim.", StringComparison.Ordinal)) tensors[info.Name] = file.ReadFloat(info.Name);
            return new ResumePoint(path, Int(StageKey), Int(StepKey), losses, tensors);
        }

        public void LoadWeights(GraphBuilder g, string prefix)
        {
            foreach (var (name, shape) in g.Initializers.ToList())
            {
                if (!_tensors.TryGetValue(prefix + name, out var t)) continue;
                if (!t.Shape.Select(d => (long)d).SequenceEqual(shape)) throw new SpmFormatException(_path, prefix + name, "has another shape than the model's weight.");
                g.SetInitializer(name, TensorInit.FromData(t.Data));
            }
        }

        public void LoadOptimizer(Optimizer optimizer)
        {
            using var file = Core.SafeTensors.SafeTensorsFile.Open(_path);
            optimizer.ImportState(file);
        }
    }

    private const string LossWeightInput = "loss_weight";
    private const string TextPrefix = "text_encoder/";
    private const string FrozenTokenTable = "tok.weight";
    private const string WeightedOutput = "weighted_out_sample";

    /// <summary>The UNet with one more input, a per-sample factor [B, 1, 1, 1], and its prediction times that factor as an extra output.</summary>
    private static Diffusion.Onnx.Proto.ModelProto WithLossWeight(Diffusion.Onnx.Proto.ModelProto unet)
    {
        var shape = new Diffusion.Onnx.Proto.TensorShapeProto();
        shape.Dim.Add(new Diffusion.Onnx.Proto.TensorShapeProto.Types.Dimension { DimParam = "batch" });
        for (int i = 0; i < 3; i++) shape.Dim.Add(new Diffusion.Onnx.Proto.TensorShapeProto.Types.Dimension { DimValue = 1 });
        unet.Graph.Input.Add(new Diffusion.Onnx.Proto.ValueInfoProto
        {
            Name = LossWeightInput,
            Type = new Diffusion.Onnx.Proto.TypeProto { TensorType = new Diffusion.Onnx.Proto.TypeProto.Types.Tensor { ElemType = 1, Shape = shape } },
        });
        var node = new Diffusion.Onnx.Proto.NodeProto { Name = "/loss_weight/Mul", OpType = "Mul" };
        node.Input.Add("out_sample");
        node.Input.Add(LossWeightInput);
        node.Output.Add(WeightedOutput);
        unet.Graph.Node.Add(node);
        unet.Graph.Output.Add(new Diffusion.Onnx.Proto.ValueInfoProto { Name = WeightedOutput });
        return unet;
    }

    private static double RunPhase(string phase, int steps, int tail, List<double> log, Func<long, double> step, IProgress<TinyShapesProgress>? progress, CancellationToken ct, int start = 0)
    {
        // Resumed: the phase's own last losses before the resume step (the log ends with them) count as they would have.
        var recent = new Queue<double>(log.Skip(log.Count - Math.Min(Math.Min(start, tail), log.Count)));
        double smoothed = double.NaN;
        var sw = Stopwatch.StartNew();
        for (int s = start; s < steps; s++)
        {
            ct.ThrowIfCancellationRequested();
            double loss = step(s);
            log.Add(loss);
            smoothed = double.IsNaN(smoothed) ? loss : 0.95 * smoothed + 0.05 * loss;
            recent.Enqueue(loss);
            if (recent.Count > tail) recent.Dequeue();
            progress?.Report(new TinyShapesProgress(phase, s + 1, steps, smoothed, (s + 1 - start) / Math.Max(1e-9, sw.Elapsed.TotalSeconds)));
        }
        return recent.Count > 0 ? recent.Average() : double.NaN;
    }

    private static InferenceSession OpenSession(Spm.Diffusion.Onnx.Proto.ModelProto model, string name, int threads)
        => Spm.Diffusion.Runtime.OnnxSessionFactory.Create(Spm.Diffusion.Runtime.OnnxModelSource.FromModel(model, null, name),
            new Spm.Diffusion.Runtime.OnnxRuntimeOptions { IntraOpThreads = Math.Max(0, threads) }).Session;
}
