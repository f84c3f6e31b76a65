using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.ML.OnnxRuntime;
using Spm.Core;
using Spm.Core.Gating;
using Spm.Core.Membranes;
using Spm.Core.Randomness;
using Spm.Core.Tensors;
using Spm.Diffusion.Membranes;
using Spm.Diffusion.Onnx;
using Spm.Diffusion.Onnx.Proto;
using Spm.Diffusion.Pipelines;
using Spm.Diffusion.Pipelines.Families;
using Spm.Diffusion.Runtime;
using Spm.Diffusion.Schedulers;
using Spm.Diffusion.Text;
using Spm.Training.Autodiff;
using Spm.Training.Optimizers;

namespace Spm.Training.LatentAnchoring;

/// <summary>Where a training run writes.</summary>
/// <param name="Path">The SPM file to write at the end.</param>
/// <param name="Overwrite">Replace an existing output file.</param>
/// <param name="Resume">Continue from the checkpoint if one exists.</param>
/// <param name="CheckpointPath">Checkpoint file; default <c>&lt;output&gt;.checkpoint.safetensors</c>.</param>
/// <param name="LossLogPath">CSV loss log; default <c>&lt;output&gt;.loss.csv</c>.</param>
public sealed record TrainingOutput(string Path, bool Overwrite = false, bool Resume = false, string? CheckpointPath = null, string? LossLogPath = null)
{
    /// <summary>The checkpoint file in use.</summary>
    public string Checkpoint => CheckpointPath ?? Path + ".checkpoint.safetensors";

    /// <summary>The loss log in use.</summary>
    public string LossLog => LossLogPath ?? Path + ".loss.csv";

    /// <summary>The preview grid written after <paramref name="step"/> iterations: <c>&lt;output&gt;.preview-NNNNNN.png</c>.</summary>
    public string Preview(int step) => $"{Path}.preview-{step:D6}.png";
}

/// <summary>
/// Trains one SPM membrane for a concept with latent anchoring (spec section 2) on ONNX Runtime: the UNet runs
/// with injected membrane branches for sampling and frozen predictions, and a gradient graph built by
/// <see cref="GradientGraphBuilder"/> gives <c>d(L_era + lambda L_anc)/d membranes</c>. Every random choice comes from
/// one <see cref="SeededRandom"/>, saved in checkpoints, so runs are reproducible and resumable bit for bit
/// (same thread count).
/// </summary>
public sealed class LatentAnchoringTrainer : IDisposable
{
    private const string SetName = "trainee";

    private readonly LatentAnchoringOptions _options;
    private readonly ModelFolder _folder;
    private readonly OnnxModel _unet;
    private readonly MembraneLayout _layout;
    private readonly InjectedUnet _injected;
    private readonly ModelProto _trainingModel;
    private readonly List<TrainableTensor> _parameters;
    private readonly Dictionary<string, float[]> _gradients;
    private readonly float[] _scales;
    private readonly TensorSpec _timestep;
    private readonly string _sampleInput, _hiddenInput, _outputName;
    private readonly Dictionary<(int Rows, int H, int W), MembraneTrainingGraph> _graphs = [];
    private readonly GradientSessionSettings _gradientSettings;
    private readonly float[] _eTarget, _ePositive, _eSurrogate, _eUncond;
    // How a conditioning row (one float[] per prompt or anchor) feeds the UNet: the family's row layout.
    private readonly IUNetRowLayout _rowLayout;
    private readonly SchedulerConfig _ddimConfig;
    private readonly string _baseModelId;
    private readonly bool _positiveIsTarget;
    private readonly float[][] _previewEmbeddings, _adversarialEmbeddings, _libraryAnchors, _familyEmbeddings, _anchorPromptEmbeddings;
    private readonly float[][] _pairTargets, _pairSurrogates;
    // Growing a library: the frozen library SPMs' gates for each fixed conditioning row (by reference; rows not listed,
    // the random anchors, get the library's gates at 0) and the stacked entries the optimizer must leave alone.
    private readonly Dictionary<float[], float[]> _libraryGates = new(ReferenceEqualityComparer.Instance);
    private readonly List<FrozenSegment> _frozen = [];
    private readonly OnnxSessionGroup _sessions;
    // The injected session seen as a UNet for the denoising loops (the session belongs to _injected).
    private readonly UNetModel _unetModel;
    private VaeDecoderModel? _vae;
    private TrainingGraphCache? _graphCache;

    private LatentAnchoringTrainer(LatentAnchoringOptions options, ModelFolder folder, OnnxModel unet, MembraneLayout layout,
        InjectedUnet injected, ModelProto trainingModel, GradientSessionSettings gradientSettings,
        float[][] embeddings, IUNetRowLayout rowLayout, string baseModelId, OnnxSessionGroup sessions, int libraryAnchors = 0,
        IReadOnlyList<float[]>? libraryGates = null)
    {
        _options = options;
        _folder = folder;
        _unet = unet;
        _layout = layout;
        _injected = injected;
        _trainingModel = trainingModel;
        _gradientSettings = gradientSettings;
        (_eTarget, _ePositive, _eSurrogate, _eUncond) = (embeddings[0], embeddings[1], embeddings[2], embeddings[3]);
        int previews = options.PreviewEvery > 0 ? options.PreviewRows.Count : 0;
        _previewEmbeddings = embeddings[4..(4 + previews)];
        // Row order of the encoded prompts (Create): 4 fixed, previews, adversarial, family, pair targets, pair surrogates,
        // anchor prompts, library.
        int adversarial = options.AdversarialPrompts?.Count ?? 0, family = options.FamilyPrompts?.Count ?? 0, anchorPrompts = options.AnchorPrompts?.Count ?? 0;
        int pairs = options.Pairs?.Count ?? 0;
        int at = 4 + previews;
        _adversarialEmbeddings = embeddings[at..(at += adversarial)];
        _familyEmbeddings = embeddings[at..(at += family)];
        _pairTargets = embeddings[at..(at += pairs)];
        _pairSurrogates = embeddings[at..(at += pairs)];
        _anchorPromptEmbeddings = embeddings[at..(at += anchorPrompts)];
        _libraryAnchors = embeddings[at..];
        if (_libraryAnchors.Length != libraryAnchors) throw new InvalidOperationException($"{embeddings.Length} encoded prompts do not match the options' rows.");
        if (libraryGates is not null)
            for (int i = 0; i < embeddings.Length; i++) _libraryGates.TryAdd(embeddings[i], libraryGates[i]);
        _sessions = sessions;
        _unetModel = new UNetModel(new CreatedSession(injected.Session, sessions.Provider, sessions.FallbackReason), unet.FilePath);
        // A folder that mixes families (an SDXL index over an SD 1.x UNet...) is named here, not by a failed UNet call.
        ModelFamilies.CheckUNet(folder.Family, _unetModel.Signature, folder.PipelineClassName);
        _rowLayout = rowLayout;
        _baseModelId = baseModelId;
        _positiveIsTarget = _ePositive.AsSpan().SequenceEqual(_eTarget);
        _ddimConfig = folder.SchedulerConfig with { Eta = 0 };

        // The injected session reads membrane tensors from these arrays (pinned, not copied), so updating the
        // parameters in place updates the sampling session too.
        var inputs = injected.Membranes.Inputs;
        _parameters = [];
        _gradients = new(StringComparer.Ordinal);
        foreach (var layer in layout.Layers)
        {
            foreach (var name in new[] { MembraneNames.Down(layer.ModulePath), MembraneNames.Up(layer.ModulePath) })
            {
                var t = inputs[name];
                var p = new TrainableTensor(name, t.Shape, t.Data);
                _parameters.Add(p);
                _gradients[name] = p.Grad;
            }
        }
        _scales = inputs[MembraneNames.Scales].Data;
        if (layout.Sets.Count > 1) FreezeLibraryColumns();
        var graphInputs = unet.Graph.Input.Where(i => !MembraneNames.IsMembraneInput(i.Name)).ToList();
        _sampleInput = FindInput(graphInputs, "sample", 0, unet.FilePath);
        _hiddenInput = FindInput(graphInputs, "encoder_hidden_states", 2, unet.FilePath);
        _timestep = TensorSpec.FromValueInfo(graphInputs.FirstOrDefault(i => i.Name == "timestep") ?? graphInputs[1], unet.FilePath);
        _outputName = unet.Graph.Output[0].Name;
    }

    /// <summary>Build the gradient graph once and run it at every latent size (true), or once per size (tests compare both).</summary>
    internal bool ReuseGradientGraphAcrossSizes { get; set; } = true;

    /// <summary>
    /// The run's sessions (text encoder, injected UNet, gradient graphs, preview VAE): one provider choice for all,
    /// made by the first; <see cref="OnnxSessionGroup.FallbackReason"/> says why CUDA was not used when it was asked for.
    /// </summary>
    public OnnxSessionGroup Sessions => _sessions;

    /// <summary>The options of this run.</summary>
    public LatentAnchoringOptions Options => _options;

    /// <summary>The layers that carry a membrane (module paths).</summary>
    public IReadOnlyList<AdaptableLayer> Layers => _layout.Layers;

    /// <summary>Trainable parameters (membrane down/up tensors, named as the injected graph's inputs).</summary>
    public IReadOnlyList<TrainableTensor> Parameters => _parameters;

    /// <summary>
    /// Loads the model folder, encodes the fixed prompts once, creates fresh membranes (down uniform in
    /// ±1/sqrt(fan_in), up zero: an exact no-op) and the injected UNet session.
    /// </summary>
    /// <param name="modelFolder">The pipeline folder.</param>
    /// <param name="options">The training options.</param>
    /// <param name="runtime">ONNX Runtime settings (threads, provider); null = the defaults.</param>
    /// <param name="graphCache">
    /// Gradient graphs shared with other trainers of the same model (see <see cref="TrainingGraphCache"/>); null = this
    /// trainer builds and owns its own.
    /// </param>
    public static LatentAnchoringTrainer Create(string modelFolder, LatentAnchoringOptions options, OnnxRuntimeOptions? runtime = null,
        TrainingGraphCache? graphCache = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        // Every session of the run opens through this group, so a CUDA request gives one device for all of them.
        var sessions = new OnnxSessionGroup(runtime);
        var folder = ModelFolder.Open(modelFolder);

        var unet = OnnxModel.Load(folder.UNetPath);
        Spm.Diffusion.Onnx.Fused.FusedGraphs.EnsureTrainable(unet);
        // An fp16 UNet trains in fp32 (gradients of rank-1 deltas vanish in fp16); the SPM file does not depend on it.
        if (Spm.Diffusion.Onnx.Fp16.Fp16Converter.IsHalf(unet)) unet = Spm.Diffusion.Onnx.Fp16.Fp16Converter.ToFp32Model(unet);
        var layers = AdaptableLayerFinder.FindTransformerLayers(unet);
        if (layers.Count == 0) throw new SpmMismatchException($"'{folder.UNetPath}' has no adaptable layers inside transformer containers.");
        // Growing: the library's SPMs, frozen, after the trained set on the rank axis (the trained set keeps columns 0..r).
        var library = (options.LibrarySpms ?? []).Select(p => MembraneSetLoader.Load(p, layers)).ToList();
        var libraryPrompts = library.SelectMany(l => l.Concepts).Select(c => c.Trim()).Where(c => c.Length > 0)
            .Distinct(StringComparer.Ordinal).ToArray();
        // Anchoring a concept while erasing it would pull the membrane both ways: retraining a library's concept is a
        // replacement (train without --library, then spm library add --replace), not growth.
        foreach (var erased in options.FamilyPrompts ?? [options.Concept])
            if (library.FirstOrDefault(l => l.Concepts.Any(c => string.Equals(c.Trim(), erased.Trim(), StringComparison.OrdinalIgnoreCase))) is { } same)
                throw new SpmException($"'{erased}' is already erased by the library's {same.Name}: growing adds new concepts; to retrain it, train without the library and replace it (spm library add --replace).");
        if (options.Action != TrainingAction.EraseWithAnchoring) libraryPrompts = [];

        float[][] embeddings;
        float[][]? libraryGates = null;
        IUNetRowLayout rowLayout;
        // The family's conditioning (SD 1.x/2.x: one encoder; SDXL: both, pooled embeddings, time ids): every fixed
        // prompt becomes one flat row in the family's layout, encoded in one batch.
        using (var conditioning = PromptConditionings.Open(folder, sessions))
        {
            string[] prompts = [options.Concept, options.Positive ?? options.Concept, options.Surrogate, options.Unconditional,
                .. options.PreviewEvery > 0 ? options.PreviewRows : [], .. options.AdversarialPrompts ?? [], .. options.FamilyPrompts ?? [],
                .. (options.Pairs ?? []).Select(p => p.Target), .. (options.Pairs ?? []).Select(p => p.Surrogate),
                .. options.AnchorPrompts ?? [], .. libraryPrompts];
            var encoded = conditioning.EncodeBatch(prompts);
            rowLayout = conditioning.RowLayout(encoded[0]);
            embeddings = encoded.Select(rowLayout.ToRow).ToArray();
            if (library.Count > 0)
            {
                // Each library SPM at the gate spm generate would give it for the row's prompt (default gate settings);
                // the gate reads the prompt's encoder_hidden_states row, as in generation.
                var tokenizer = conditioning.Tokenizers[0];
                var gate = new SpmGateEvaluator(t => { var p = conditioning.Encode(t); return (p.TokenIds, p.HiddenStates.Data); }, tokenizer);
                var settings = Enumerable.Repeat(GateSettings.Default, library.Count).ToList();
                libraryGates = encoded.Select(p =>
                    gate.Evaluate(gate.TextOf(p.TokenIds, p.HiddenStates.Data), library, settings).Select(g => g.Multiplier).ToArray()).ToArray();
            }
        }

        var rng = new SeededRandom(options.Seed ^ 0x5350_4D49_4E49_5400UL); // initialisation stream, independent of the run's stream
        var membranes = options.InitialSpm is { } init
            ? MembranesFrom(init, layers, options)
            : layers.Select(l => InitialMembrane(l, options, rng)).ToList();
        var set = new MembraneSet(SetName, options.FamilyPrompts ?? [options.Concept], membranes);
        var layout = MembraneLayout.Create(layers, [set, .. library]);

        var injected = InjectedUnet.Create(unet.Proto, unet.BaseDirectory, layout, sessions);
        var trainingModel = MembraneTrainingGraph.AddRowLoss(MembraneInjector.Inject(unet.Proto, layout));
        var graphSettings = GradientSessionSettings.For(sessions, unet.BaseDirectory);
        return new LatentAnchoringTrainer(options, folder, unet, layout, injected, trainingModel, graphSettings, embeddings, rowLayout, BaseModelId(folder), sessions,
            libraryPrompts.Length, libraryGates)
        {
            _graphCache = graphCache,
        };
    }

    /// <summary>Membranes of an existing SPM file as the starting point (robust rounds continue from the last round's file).</summary>
    private static List<LayerMembrane> MembranesFrom(string path, IReadOnlyList<AdaptableLayer> layers, LatentAnchoringOptions options)
    {
        var set = MembraneSetLoader.Load(path, layers);
        if (set.Rank != options.Rank)
            throw new SpmMismatchException($"'{path}' has rank {set.Rank}; this run trains rank {options.Rank} (--rank).", SpmConfig.RankKey);
        var byPath = set.Membranes.ToDictionary(m => m.ModulePath, StringComparer.Ordinal);
        var list = new List<LayerMembrane>(layers.Count);
        foreach (var layer in layers)
        {
            if (!byPath.TryGetValue(layer.ModulePath, out var m))
                throw new SpmMismatchException($"'{path}' has no membrane for layer '{layer.ModulePath}', which this run trains.", layer.ModulePath);
            if (Math.Abs(m.Scale - options.Alpha / options.Rank) > 1e-6 * Math.Max(1, Math.Abs(m.Scale)))
                throw new SpmMismatchException($"'{path}': layer '{layer.ModulePath}' has scale {m.Scale}; this run uses alpha/rank = {options.Alpha / options.Rank} (--alpha).", layer.ModulePath);
            list.Add(m);
        }
        if (byPath.Count != layers.Count)
            throw new SpmMismatchException($"'{path}' has membranes on {byPath.Count} layers; this run trains {layers.Count}.", path);
        return list;
    }

    private static LayerMembrane InitialMembrane(AdaptableLayer layer, LatentAnchoringOptions options, SeededRandom rng)
    {
        int r = options.Rank;
        int fanIn = MembraneShapes.FanIn(layer);
        var down = new FloatTensor(MembraneShapes.Down(layer, r));
        float bound = 1f / MathF.Sqrt(fanIn);
        rng.FillUniform(down.Data, -bound, bound);
        var up = new FloatTensor(layer.OutFeatures, r);
        return new LayerMembrane(layer.ModulePath, down, up, (float)(options.Alpha / r));
    }

    /// <summary>
    /// Runs the training loop, checkpointing every <see cref="LatentAnchoringOptions.CheckpointEvery"/> steps,
    /// and writes the SPM file. Cancelling stops after the current iteration, without writing the output (the
    /// last checkpoint stays for <c>--resume</c>).
    /// </summary>
    public Task<TrainingResult> TrainAsync(TrainingOutput output, IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default)
        => Task.Run(() => Train(output, progress, cancellationToken), cancellationToken);

    /// <summary>
    /// As <see cref="TrainAsync"/>, on the calling thread: training is CPU- or GPU-bound work, so callers that can block
    /// (a command line, a worker) call this; <see cref="TrainAsync"/> only moves it to the thread pool.
    /// </summary>
    /// <param name="output">Where the run writes.</param>
    /// <param name="progress">Receives a report after every iteration.</param>
    /// <param name="ct">Stops after the current iteration, without writing the output.</param>
    /// <exception cref="IOException">The output exists and neither overwriting nor resuming was asked for.</exception>
    public TrainingResult Train(TrainingOutput output, IProgress<TrainingProgress>? progress = null, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(output);
        if (!output.Overwrite && File.Exists(output.Path) && !output.Resume)
            throw new IOException($"'{output.Path}' already exists (use --force to overwrite).");
        var o = _options;
        var optimizer = new AdamW(epsilon: o.AdamEpsilon, weightDecay: o.WeightDecay);
        var schedule = new CosineWithHardRestartsSchedule(o.WarmupSteps, o.Iterations, o.CosineCycles);
        string fingerprint = Fingerprint();
        var rng = new SeededRandom(o.Seed);
        int start = 0;
        if (output.Resume && File.Exists(output.Checkpoint))
            (start, rng) = TrainingCheckpoint.Load(output.Checkpoint, _parameters, optimizer, fingerprint);
        var timings = new TrainingTimings();
        var probeClock = Stopwatch.StartNew();
        var probe = o.ErasureProbe ? PrepareProbe(ct) : null;
        timings = timings with { Probe = probeClock.Elapsed };
        var log = new LossLog(output.LossLog, start, probe?.Info.Steps);

        var ddim = SchedulerRegistry.Create("ddim", _ddimConfig);
        ddim.SetTimesteps(o.SamplingSteps);
        var ddimTimesteps = ddim.Timesteps.ToArray();

        var history = new List<TrainingProgress>();
        var total = Stopwatch.StartNew();
        for (int step = start; step < o.Iterations; step++)
        {
            ct.ThrowIfCancellationRequested();
            var iterationStart = total.Elapsed;
            // A family: this iteration's member (drawn only in family runs, so single-concept runs keep their stream).
            var eTarget = _familyEmbeddings.Length > 0 ? _familyEmbeddings[rng.NextInt(0, _familyEmbeddings.Length)] : _eTarget;
            var ePositive = _familyEmbeddings.Length > 0 ? eTarget : _ePositive;
            var eSurrogate = _eSurrogate;
            // Pairs: this iteration's phrasing and its own surrogate (drawn only in paired runs, as above). In robust mode
            // an adversarial prompt comes with the pair it was found against, so the choice is made first.
            int pairedAdversarial = -1;
            if (_pairTargets.Length > 0)
            {
                int k;
                if (_adversarialEmbeddings.Length > 0 && rng.NextDouble() < o.AdversarialShare)
                {
                    pairedAdversarial = rng.NextInt(0, _adversarialEmbeddings.Length);
                    k = o.AdversarialGoals![pairedAdversarial];
                }
                // One pair draws nothing, so it trains exactly as --concept T --surrogate S would.
                else k = _pairTargets.Length == 1 ? 0 : rng.NextInt(0, _pairTargets.Length);
                (eTarget, ePositive, eSurrogate) = (_pairTargets[k], _pairTargets[k], _pairSurrogates[k]);
            }
            var draw = IterationSampler.Draw(rng, o, ddimTimesteps, _folder.VaeScaleFactor);
            var sw = Stopwatch.StartNew();
            var x = SampleX(draw, rng, eTarget, ct);
            timings = timings with { SamplingX = timings.SamplingX + sw.Elapsed };

            // Anchors and frozen predictions.
            int anchors = o.Action == TrainingAction.EraseWithAnchoring ? o.AnchorCount : 0;
            var anchorEmbeddings = DrawAnchors(anchors, rng);
            // Growing: the library's concepts anchor too, so the combined model keeps erasing them as before.
            anchorEmbeddings.AddRange(_libraryAnchors);
            anchors += _libraryAnchors.Length;
            sw.Restart();
            var frozenRows = new List<float[]> { ePositive, eSurrogate };
            frozenRows.AddRange(anchorEmbeddings);
            var frozen = PredictUNet(x, draw, frozenRows, gate: 0f);
            timings = timings with { Frozen = timings.Frozen + sw.Elapsed };

            int latent = x.Length;
            var target = new float[(1 + anchors) * latent];
            var ePos = frozen.AsSpan(0, latent);
            var eSur = frozen.AsSpan(latent, latent);
            float eta = (float)o.Eta;
            for (int i = 0; i < latent; i++) target[i] = eSur[i] - eta * (ePos[i] - eSur[i]);
            // With positive == concept, eps(x,t,c_tar) of the frozen model is ePos: the untrained loss at this draw.
            double frozenEra = _positiveIsTarget || _familyEmbeddings.Length > 0 || _pairTargets.Length > 0 ? MeanSquaredDifference(ePos, target.AsSpan(0, latent)) : double.NaN;
            frozen.AsSpan(2 * latent, anchors * latent).CopyTo(target.AsSpan(latent));

            var rowWeights = new float[1 + anchors];
            rowWeights[0] = 1f;
            for (int a = 1; a <= anchors; a++) rowWeights[a] = (float)(o.AnchorStrength / anchors);

            sw.Restart();
            // Robust mode: part of the iterations erase an adversarial phrasing instead of the concept's own prompt.
            var erased = eTarget;
            if (pairedAdversarial >= 0) erased = _adversarialEmbeddings[pairedAdversarial];
            else if (_pairTargets.Length == 0 && _adversarialEmbeddings.Length > 0 && rng.NextDouble() < o.AdversarialShare)
                erased = _adversarialEmbeddings[rng.NextInt(0, _adversarialEmbeddings.Length)];
            var trainRows = new List<float[]> { erased };
            trainRows.AddRange(anchorEmbeddings);
            var (loss, rowLoss) = RunTrainingGraph(x, draw, trainRows, target, rowWeights, ref timings);
            timings = timings with { ForwardBackward = timings.ForwardBackward + sw.Elapsed };
            if (!double.IsFinite(loss))
                throw new SpmException($"The loss became {loss} at step {step + 1}; lower the learning rate (--lr) or the anchor strength.");

            ZeroFrozenGradients();
            double gradNorm = GradientNorm();
            // The probe reads the same membrane state as this iteration's loss (before the update); its time is
            // kept out of the iteration's.
            ErasureProbeReading? probeReading = null;
            var probeTime = TimeSpan.Zero;
            if (probe is not null)
            {
                sw.Restart();
                probeReading = MeasureProbe(probe);
                probeTime = sw.Elapsed;
                timings = timings with { Probe = timings.Probe + probeTime };
            }
            sw.Restart();
            double lr = schedule.At(o.LearningRate, step);
            optimizer.Step(_parameters, lr);
            RestoreFrozen();
            timings = timings with { Optimizer = timings.Optimizer + sw.Elapsed };

            double lossEra = rowLoss[0];
            double lossAnc = anchors > 0 ? rowLoss.Skip(1).Average(v => (double)v) : 0;
            bool checkpoint = o.CheckpointEvery > 0 && (step + 1) % o.CheckpointEvery == 0 && step + 1 < o.Iterations;
            timings = timings with { Total = timings.Total + (total.Elapsed - iterationStart - probeTime), Iterations = timings.Iterations + 1, SamplingCalls = timings.SamplingCalls + draw.Steps };
            var report = new TrainingProgress(step + 1, o.Iterations, loss, lossEra, lossAnc, lr, draw, timings, checkpoint)
            {
                FrozenErasureLoss = frozenEra,
                GradientNorm = gradNorm,
                Probe = probeReading,
            };
            log.Add(report);
            history.Add(report);
            if (checkpoint)
            {
                // The log first: a kill between the two leaves a log ahead of the checkpoint, and a resume keeps only
                // the rows up to the checkpoint's step. The other order could lose rows (the SIGKILL test caught it).
                log.Flush();
                TrainingCheckpoint.Save(output.Checkpoint, step + 1, _parameters, optimizer, rng, fingerprint);
            }
            if (o.PreviewEvery > 0 && (step + 1) % o.PreviewEvery == 0)
            {
                sw.Restart();
                RenderPreview(output.Preview(step + 1), ct);
                timings = timings with { Preview = timings.Preview + sw.Elapsed };
                report = report with { Timings = timings };
            }
            progress?.Report(report);
        }

        SpmFile.Save(output.Path, ToAdapter(), overwrite: true);
        log.Flush();
        if (File.Exists(output.Checkpoint)) File.Delete(output.Checkpoint);
        return new TrainingResult(output.Path, o.Iterations, start, timings, history) { Probe = probe?.Info };
    }

    /// <summary>Runs the first k of the DDIM steps from Gaussian noise, guided, with the membranes on.</summary>
    private float[] SampleX(IterationDraw draw, SeededRandom rng, float[] eTarget, CancellationToken ct)
    {
        var o = _options;
        var scheduler = SchedulerRegistry.Create("ddim", _ddimConfig);
        scheduler.SetTimesteps(o.SamplingSteps);
        int latent = 4 * draw.LatentHeight * draw.LatentWidth;
        var x = new float[latent];
        rng.FillGaussian(x);
        if (scheduler.InitNoiseSigma != 1.0)
            System.Numerics.Tensors.TensorPrimitives.Multiply(x, (float)scheduler.InitNoiseSigma, x);
        using var ro = new RunOptions();
        using var runner = OpenRunner([_eUncond, eTarget], Gates(2, _ => 1f, _ => LibraryGates(eTarget)), draw.LatentHeight, draw.LatentWidth, ro);
        DenoisingLoop.Run(runner, [scheduler], x, null, guidance: true, o.SamplingGuidance, draw.Steps, cancellationToken: ct);
        return x;
    }

    /// <summary>
    /// Gates [rows, R]: row r's trained membrane at <paramref name="gate"/>(r); the library's frozen SPMs (growing) at
    /// <paramref name="library"/>(r), one multiplier per SPM, or 0 where it gives null (random anchors).
    /// </summary>
    private FloatTensor Gates(int rows, Func<int, float> gate, Func<int, float[]?>? library = null)
    {
        int r = _layout.TotalRank, own = _layout.Sets[0].Rank;
        var gates = new FloatTensor(rows, r);
        for (int row = 0; row < rows; row++)
        {
            var span = gates.Span.Slice(row * r, r);
            span[..own].Fill(gate(row));
            if (library?.Invoke(row) is not { } multipliers) continue;
            for (int s = 1; s < _layout.Sets.Count; s++)
                span.Slice(_layout.ColumnOffset(s), _layout.Sets[s].Rank).Fill(multipliers[s - 1]);
        }
        return gates;
    }

    /// <summary>The library SPMs' multipliers for a fixed conditioning row, or null (no library, or a random anchor).</summary>
    private float[]? LibraryGates(float[] row) => _libraryGates.GetValueOrDefault(row);

    /// <summary>A run of stacked membrane entries the optimizer must not change: a library SPM's columns (growing).</summary>
    private sealed record FrozenSegment(TrainableTensor Tensor, int Start, float[] Saved);

    /// <summary>
    /// Records the library's columns of every stacked down/up tensor (and whole tensors of layers the trained set does
    /// not cover): their gradients are zeroed before each step and their values restored after it, so AdamW's
    /// moments stay zero there and its weight decay cannot shrink the library's membranes.
    /// </summary>
    private void FreezeLibraryColumns()
    {
        int total = _layout.TotalRank, own = _layout.Sets[0].Rank;
        var byName = _parameters.ToDictionary(p => p.Name, StringComparer.Ordinal);
        foreach (var layer in _layout.Layers)
        {
            int from = _layout.IsApplied(0, layer.ModulePath) ? own : 0;
            if (from == total) continue;
            var down = byName[MembraneNames.Down(layer.ModulePath)];
            int rowLen = MembraneShapes.FanIn(layer);
            _frozen.Add(new FrozenSegment(down, from * rowLen, down.Value.AsSpan(from * rowLen, (total - from) * rowLen).ToArray()));
            var up = byName[MembraneNames.Up(layer.ModulePath)];
            for (int o = 0; o < layer.OutFeatures; o++)
                _frozen.Add(new FrozenSegment(up, o * total + from, up.Value.AsSpan(o * total + from, total - from).ToArray()));
        }
    }

    private void ZeroFrozenGradients()
    {
        foreach (var f in _frozen) f.Tensor.Grad.AsSpan(f.Start, f.Saved.Length).Clear();
    }

    private void RestoreFrozen()
    {
        foreach (var f in _frozen) f.Saved.CopyTo(f.Tensor.Value.AsSpan(f.Start));
    }

    /// <summary>A UNet runner over the injected session with these conditioning rows and gates (membranes bound in place, so updates show).</summary>
    private UNetRunner OpenRunner(IReadOnlyList<float[]> rows, FloatTensor gates, int lh, int lw, RunOptions ro)
    {
        var extras = new Dictionary<string, FloatTensor>(_injected.Membranes.Inputs, StringComparer.Ordinal) { [MembraneNames.Gates] = gates };
        return _unetModel.OpenRunner(TextRows(rows, lh, lw), extras, rows.Count, lh, lw, _sessions.Provider == ExecutionProviderKind.Cuda, ro);
    }

    /// <summary>The fixed probe's inputs: one x per probe k at the probe size, the query timesteps and the erasure targets.</summary>
    private sealed record ProbeState(ErasureProbeInfo Info, float[] Samples, float[] Targets, int LatentHeight, int LatentWidth);

    /// <summary>
    /// Builds the fixed erasure probe (a measurement only): one guided DDIM trajectory from noise of a generator of its
    /// own, with the membranes off (so the probe does not depend on when a run starts or resumes), x kept after each
    /// probe k; the query timestep and the erasure target of each as training derives them; the frozen model's loss.
    /// </summary>
    private ProbeState PrepareProbe(CancellationToken ct)
    {
        var o = _options;
        int[] ks = ErasureProbePlan.Steps(o.SamplingSteps);
        int size = ErasureProbePlan.Size(o), lh = size / _folder.VaeScaleFactor, lw = size / _folder.VaeScaleFactor, latent = 4 * lh * lw, n = ks.Length;
        var scheduler = SchedulerRegistry.Create("ddim", _ddimConfig);
        scheduler.SetTimesteps(o.SamplingSteps);
        var ddimTimesteps = scheduler.Timesteps.ToArray();
        var rng = new SeededRandom(o.Seed ^ 0x5052_4F42_4500_0000UL);
        var x = new float[latent];
        rng.FillGaussian(x);
        if (scheduler.InitNoiseSigma != 1.0)
            System.Numerics.Tensors.TensorPrimitives.Multiply(x, (float)scheduler.InitNoiseSigma, x);
        var samples = new float[n * latent];
        float g = (float)o.SamplingGuidance;
        // x is kept after each probe k: the snapshots are taken as the loop passes them.
        int taken = 0;
        void Snapshot(int done)
        {
            for (; taken < n && ks[taken] == done; taken++) x.CopyTo(samples, taken * latent);
        }
        Snapshot(0);
        using (var ro = new RunOptions())
        using (var runner = OpenRunner([_eUncond, _eTarget], Gates(2, _ => 0f, _ => LibraryGates(_eTarget)), lh, lw, ro))
            DenoisingLoop.Run(runner, [scheduler], x, null, guidance: true, g, ks[^1],
                new DenoisingHooks { AfterStep = i => Snapshot(i + 1) }, ct);
        if (taken != n) throw new InvalidOperationException("The probe steps must be ascending.");
        var queryT = ks.Select(k => IterationSampler.QueryTimestep(k, o, ddimTimesteps)).ToArray();

        // Frozen rows per probe: c_tar, c_pos, c_sur.
        var frozenSamples = new float[3 * n * latent];
        var rows = new List<float[]>(3 * n);
        var rowT = new List<double>(3 * n);
        for (int p = 0; p < n; p++)
        {
            for (int r = 0; r < 3; r++) samples.AsSpan(p * latent, latent).CopyTo(frozenSamples.AsSpan((3 * p + r) * latent));
            rows.AddRange([_eTarget, _ePositive, _eSurrogate]);
            rowT.AddRange([queryT[p], queryT[p], queryT[p]]);
        }
        var frozen = PredictRows(frozenSamples, lh, lw, rows, rowT, gate: 0f);
        var targets = new float[n * latent];
        var frozenLosses = new double[n];
        float eta = (float)o.Eta;
        for (int p = 0; p < n; p++)
        {
            var eTar = frozen.AsSpan(3 * p * latent, latent);
            var ePos = frozen.AsSpan((3 * p + 1) * latent, latent);
            var eSur = frozen.AsSpan((3 * p + 2) * latent, latent);
            var target = targets.AsSpan(p * latent, latent);
            for (int i = 0; i < latent; i++) target[i] = eSur[i] - eta * (ePos[i] - eSur[i]);
            frozenLosses[p] = MeanSquaredDifference(eTar, target);
        }
        return new ProbeState(new ErasureProbeInfo(ks, queryT, frozenLosses), samples, targets, lh, lw);
    }

    /// <summary>The current membrane's erasure loss at every probe (one forward call, no gradients).</summary>
    private ErasureProbeReading MeasureProbe(ProbeState probe)
    {
        int n = probe.Info.Steps.Count, latent = probe.Samples.Length / n;
        var eps = PredictRows(probe.Samples, probe.LatentHeight, probe.LatentWidth,
            Enumerable.Repeat(_eTarget, n).ToList(), probe.Info.Timesteps.Select(t => (double)t).ToList(), gate: 1f);
        var losses = new double[n];
        var relative = new double[n];
        for (int p = 0; p < n; p++)
        {
            losses[p] = MeanSquaredDifference(eps.AsSpan(p * latent, latent), probe.Targets.AsSpan(p * latent, latent));
            relative[p] = losses[p] / probe.Info.FrozenLosses[p];
        }
        return new ErasureProbeReading(losses, relative);
    }

    /// <summary>
    /// One injected UNet call with a latent, a conditioning row and a timestep per batch row; returns [rows, 4, h, w].
    /// A UNet whose timestep input is a scalar gets one call per row when the timesteps differ.
    /// </summary>
    private float[] PredictRows(float[] samples, int lh, int lw, IReadOnlyList<float[]> rows, IReadOnlyList<double> timesteps, float gate)
    {
        int b = rows.Count, latent = samples.Length / b;
        if (_timestep.Rank == 0 && timesteps.Distinct().Count() > 1)
        {
            var all = new float[samples.Length];
            for (int r = 0; r < b; r++)
                PredictRows(samples.AsSpan(r * latent, latent).ToArray(), lh, lw, [rows[r]], [timesteps[r]], gate).CopyTo(all, r * latent);
            return all;
        }
        var owned = new List<OrtValue>();
        try
        {
            var inputs = TextFeeds(TextRows(rows, lh, lw), owned);
            owned.Add(inputs[_sampleInput] = OrtValue.CreateTensorValueFromMemory(samples, [b, 4, lh, lw]));
            owned.Add(inputs[_timestep.Name] = OrtTensors.TimestepRows(timesteps.ToArray(), _timestep, _unet.FilePath));
            var gates = Gates(b, _ => gate, r => LibraryGates(rows[r]));
            using var outputs = _injected.Run(inputs, gates, [_outputName]);
            return outputs[0].GetTensorDataAsSpan<float>().ToArray();
        }
        finally
        {
            foreach (var v in owned) v.Dispose();
        }
    }

    /// <summary>
    /// Writes the preview grid: one row per preview prompt, columns base | with the membrane, from the same noise
    /// (a generator of its own, so previews never change the training run), guided DDIM, decoded by the VAE.
    /// Both columns of every row go through one batched UNet call per step (gates 0 and 1 per row).
    /// </summary>
    private void RenderPreview(string path, CancellationToken ct)
    {
        var o = _options;
        int prompts = _previewEmbeddings.Length, images = 2 * prompts, lh = o.Resolution / _folder.VaeScaleFactor, lw = o.Resolution / _folder.VaeScaleFactor, latent = 4 * lh * lw;
        var scheduler = SchedulerRegistry.Create("ddim", _ddimConfig);
        scheduler.SetTimesteps(o.PreviewSteps);
        var rng = new SeededRandom(o.Seed ^ 0x5052_4556_4945_5700UL);
        var x = new float[images * latent];
        for (int p = 0; p < prompts; p++)
        {
            var noise = x.AsSpan(2 * p * latent, latent);
            rng.FillGaussian(noise);
            System.Numerics.Tensors.TensorPrimitives.Multiply(noise, (float)scheduler.InitNoiseSigma, noise);
            noise.CopyTo(x.AsSpan((2 * p + 1) * latent, latent));
        }
        // Image i: prompt i/2, membrane on for odd i. Rows as the loop lays them out: [uncond × images, cond × images],
        // the gates of both rows of an odd image at 1.
        var hiddenRows = new List<float[]>(2 * images);
        for (int i = 0; i < images; i++) hiddenRows.Add(_eUncond);
        for (int i = 0; i < images; i++) hiddenRows.Add(_previewEmbeddings[i / 2]);
        var schedulers = new IScheduler[images];
        schedulers[0] = scheduler;
        for (int i = 1; i < images; i++)
        {
            schedulers[i] = SchedulerRegistry.Create("ddim", _ddimConfig);
            schedulers[i].SetTimesteps(o.PreviewSteps);
        }
        using (var ro = new RunOptions())
        using (var runner = OpenRunner(hiddenRows, Gates(2 * images, r => (r % images) % 2 == 1 ? 1f : 0f, r => LibraryGates(_previewEmbeddings[(r % images) / 2])), lh, lw, ro))
            DenoisingLoop.Run(runner, schedulers, x, null, guidance: true, o.PreviewGuidance, cancellationToken: ct);

        _vae ??= new VaeDecoderModel(_sessions.OpenCreated(OnnxModelSource.FromFile(_folder.VaeDecoderPath)), _folder.VaeDecoderPath);
        var latents = new FloatTensor([images, 4, lh, lw], x);
        System.Numerics.Tensors.TensorPrimitives.Multiply(latents.Span, (float)(1.0 / _folder.VaeScalingFactor), latents.Span);
        var decoded = _vae.Decode(latents);
        int height = decoded.Shape[2], width = decoded.Shape[3], cell = 3 * height * width;
        var cells = new List<float[]?>(images);
        for (int i = 0; i < images; i++)
        {
            var img = decoded.Data.AsSpan(i * cell, cell).ToArray();
            for (int j = 0; j < img.Length; j++) img[j] = Math.Clamp((img[j] + 1f) * 0.5f, 0f, 1f); // [-1, 1] -> [0, 1]
            cells.Add(img);
        }
        var grid = Spm.Training.Evaluation.ImageGrid.Compose(cells, prompts, 2, height, width);
        Spm.Training.Evaluation.ImageGrid.SavePng(path, grid.Image, grid.Height, grid.Width);
    }

    private static double MeanSquaredDifference(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double sum = 0;
        for (int i = 0; i < a.Length; i++)
        {
            double d = a[i] - b[i];
            sum += d * d;
        }
        return sum / a.Length;
    }

    private double GradientNorm()
    {
        double sum = 0;
        foreach (var p in _parameters)
        {
            double n = System.Numerics.Tensors.TensorPrimitives.Norm(p.Grad);
            sum += n * n;
        }
        return Math.Sqrt(sum);
    }

    private List<float[]> DrawAnchors(int count, SeededRandom rng)
    {
        var list = new List<float[]>(count);
        if (count == 0) return list;
        if (_anchorPromptEmbeddings.Length > 0)
        {
            // Family anchors: count distinct prompts of the atlas's list, or all of them.
            list.AddRange(AnchorSampler.DrawPromptIndices(rng, _anchorPromptEmbeddings.Length, count).Select(i => _anchorPromptEmbeddings[i]));
            return list;
        }
        var sampler = new RowAnchorSampler(_eTarget, _rowLayout);
        // The reference code's batching quirk: only half of the anchors are random, the rest are E("").
        int random = _options.ReferenceQuirk ? (count + 1) / 2 : count;
        for (int i = 0; i < count; i++)
        {
            if (i < random)
            {
                var a = new float[sampler.Length];
                sampler.Sample(rng, a);
                list.Add(a);
            }
            else
            {
                list.Add(_eUncond);
            }
        }
        return list;
    }

    /// <summary>One injected UNet call on the same latents for every conditioning row; returns [rows, 4, h, w].</summary>
    private float[] PredictUNet(float[] x, IterationDraw draw, IReadOnlyList<float[]> rows, float gate, double? timestep = null)
    {
        int b = rows.Count, latent = x.Length;
        var sample = new float[b * latent];
        for (int r = 0; r < b; r++) x.CopyTo(sample, r * latent);
        var owned = new List<OrtValue>();
        try
        {
            var inputs = TextFeeds(TextRows(rows, draw.LatentHeight, draw.LatentWidth), owned);
            owned.Add(inputs[_sampleInput] = OrtValue.CreateTensorValueFromMemory(sample, [b, 4, draw.LatentHeight, draw.LatentWidth]));
            owned.Add(inputs[_timestep.Name] = OrtTensors.TimestepInput(timestep ?? draw.QueryTimestep, b, _timestep, _unet.FilePath));
            var gates = Gates(b, _ => gate, r => LibraryGates(rows[r]));
            using var outputs = _injected.Run(inputs, gates, [_outputName]);
            return outputs[0].GetTensorDataAsSpan<float>().ToArray();
        }
        finally
        {
            foreach (var v in owned) v.Dispose();
        }
    }

    private (double Loss, float[] RowLoss) RunTrainingGraph(float[] x, IterationDraw draw, IReadOnlyList<float[]> rows, float[] target, float[] rowWeights, ref TrainingTimings timings)
    {
        int b = rows.Count, latent = x.Length;
        var sample = new float[b * latent];
        for (int r = 0; r < b; r++) x.CopyTo(sample, r * latent);
        var text = TextRows(rows, draw.LatentHeight, draw.LatentWidth);
        var gates = Gates(b, _ => 1f, r => LibraryGates(rows[r])).Data;
        long[] latentShape = [b, 4, draw.LatentHeight, draw.LatentWidth];
        var owned = new List<OrtValue>();
        try
        {
            OrtValue Own(OrtValue v) { owned.Add(v); return v; }
            // The text inputs first (encoder_hidden_states and the family's further inputs: SDXL's text_embeds and
            // time_ids), so the gradient graph is probed and fed with every input the UNet takes.
            var feeds = TextFeeds(text, owned);
            foreach (var (name, value) in new Dictionary<string, OrtValue>(StringComparer.Ordinal)
            {
                [_sampleInput] = Own(OrtValue.CreateTensorValueFromMemory(sample, latentShape)),
                [_timestep.Name] = Own(OrtTensors.TimestepInput(draw.QueryTimestep, b, _timestep, _unet.FilePath)),
                [MembraneNames.Gates] = Own(OrtValue.CreateTensorValueFromMemory(gates, [b, _layout.TotalRank])),
                [MembraneNames.Scales] = Own(OrtValue.CreateTensorValueFromMemory(_scales, [_scales.Length])),
                [MembraneTrainingGraph.TargetInput] = Own(OrtValue.CreateTensorValueFromMemory(target, latentShape)),
                [MembraneTrainingGraph.RowWeightsInput] = Own(OrtValue.CreateTensorValueFromMemory(rowWeights, [b])),
            })
                feeds[name] = value;
            foreach (var p in _parameters)
                feeds[p.Name] = Own(OrtValue.CreateTensorValueFromMemory(p.Value, p.Shape.Select(d => (long)d).ToArray()));
            // Gradient graphs read sizes at run time, so one graph serves every latent size; only a probe with a
            // single row could mistake the batch axis for a broadcast one, so that case keeps one graph per size.
            var key = b >= 2 && ReuseGradientGraphAcrossSizes ? (b, 0, 0) : (b, draw.LatentHeight, draw.LatentWidth);
            if (!_graphs.TryGetValue(key, out var graph))
            {
                var sw = Stopwatch.StartNew();
                MembraneTrainingGraph BuildGraph() =>
                    MembraneTrainingGraph.Build(_trainingModel, _parameters.Select(p => p.Name).ToList(), feeds, _gradientSettings);
                if (_graphCache is null)
                {
                    graph = BuildGraph();
                    _graphs[key] = graph;
                }
                else
                {
                    // Kept in the trainer's own table too (for the next step), but owned and disposed by the cache.
                    graph = _graphCache.GetOrBuild(GraphCacheKey(key), BuildGraph);
                    _graphs[key] = graph;
                }
                timings = timings with
                {
                    GraphBuild = timings.GraphBuild + sw.Elapsed,
                    GraphsFromCache = timings.GraphsFromCache + (graph.OptimizedModel == Spm.Diffusion.Runtime.OptimizedModelUse.Loaded ? 1 : 0),
                };
            }
            return graph.Run(feeds, _gradients);
        }
        finally
        {
            foreach (var v in owned) v.Dispose();
        }
    }

    /// <summary>
    /// The UNet's text inputs for these conditioning rows at a latent size: the family's row layout stacks them (SDXL:
    /// the pooled embeddings too, and <c>time_ids</c> from the image size, diffusers' defaults: original = target = the
    /// size trained at, crop 0).
    /// </summary>
    private UNetTextInputs TextRows(IReadOnlyList<float[]> rows, int latentHeight, int latentWidth)
        => _rowLayout.Stack(rows, SizeConditioning.Default(latentWidth * _folder.VaeScaleFactor, latentHeight * _folder.VaeScaleFactor));

    /// <summary>ORT values of the text inputs, keyed by the UNet's input names (added to <paramref name="owned"/>).</summary>
    private Dictionary<string, OrtValue> TextFeeds(UNetTextInputs text, List<OrtValue> owned)
    {
        var feeds = new Dictionary<string, OrtValue>(StringComparer.Ordinal);
        OrtValue Own(FloatTensor t)
        {
            var v = OrtValue.CreateTensorValueFromMemory(t.Data, t.Shape.Select(d => (long)d).ToArray());
            owned.Add(v);
            return v;
        }
        feeds[_hiddenInput] = Own(text.HiddenStates);
        foreach (var (name, t) in text.Added) feeds[name] = Own(t);
        return feeds;
    }

    /// <summary>
    /// The lower bound of the UNet work of iterations with these draws: the same calls an iteration makes (k guided
    /// sampling calls of 2 rows and one frozen call of 2 + anchors rows, at the draw's size) timed as bare ONNX Runtime
    /// runs on the injected session, inputs made beforehand and nothing else between the calls. <c>spm bench train</c>
    /// adds the measured forward + backward to it and compares the iteration time against the sum.
    /// </summary>
    /// <param name="draws">The draws of the iterations to mirror (from <see cref="TrainingProgress.Draw"/>).</param>
    /// <param name="cancellationToken">Checked between calls.</param>
    /// <returns>The summed time of the bare calls.</returns>
    public TimeSpan TimeBareUNetCalls(IEnumerable<IterationDraw> draws, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(draws);
        int anchors = _options.Action == TrainingAction.EraseWithAnchoring ? _options.AnchorCount + _libraryAnchors.Length : 0;
        var total = TimeSpan.Zero;
        foreach (var draw in draws)
        {
            total += TimeBare(draw, 2, draw.Steps, cancellationToken);
            total += TimeBare(draw, 2 + anchors, 1, cancellationToken);
        }
        return total;
    }

    private TimeSpan TimeBare(IterationDraw draw, int rows, int calls, CancellationToken ct)
    {
        if (calls == 0) return TimeSpan.Zero;
        int latent = 4 * draw.LatentHeight * draw.LatentWidth;
        using var sample = OrtValue.CreateTensorValueFromMemory(new float[rows * latent], [rows, 4, draw.LatentHeight, draw.LatentWidth]);
        using var owned = new OwnedValues();
        var text = TextFeeds(TextRows(Enumerable.Repeat(_eTarget, rows).ToList(), draw.LatentHeight, draw.LatentWidth), owned);
        using var t = OrtTensors.TimestepInput(draw.QueryTimestep, rows, _timestep, _unet.FilePath);
        var gates = Gates(rows, _ => 1f, _ => LibraryGates(_eTarget));
        using var gateValue = OrtValue.CreateTensorValueFromMemory(gates.Data, [rows, _layout.TotalRank]);
        var names = new List<string> { _sampleInput, _timestep.Name };
        var values = new List<OrtValue> { sample, t };
        foreach (var (name, value) in text) { names.Add(name); values.Add(value); }
        _injected.AppendInputs(names, values, gateValue);
        using var ro = new RunOptions();
        // One untimed call first: a new shape makes ONNX Runtime plan its memory again, a cost the bound leaves out.
        using (_injected.Session.Run(ro, names, values, [_outputName])) { }
        var sw = new Stopwatch();
        for (int i = 0; i < calls; i++)
        {
            ct.ThrowIfCancellationRequested();
            sw.Start();
            using var outputs = _injected.Session.Run(ro, names, values, [_outputName]);
            sw.Stop();
        }
        return sw.Elapsed;
    }

    /// <summary>ORT values disposed together.</summary>
    private sealed class OwnedValues : List<OrtValue>, IDisposable
    {
        public void Dispose()
        {
            foreach (var v in this) v.Dispose();
            Clear();
        }
    }

    /// <summary>The trained membranes as an SPM adapter in the official layout with our extra metadata.</summary>
    public SpmAdapter ToAdapter()
    {
        var o = _options;
        var membranes = new List<Membrane>();
        int total = _layout.TotalRank;
        foreach (var layer in _layout.Layers)
        {
            if (!_layout.IsApplied(0, layer.ModulePath)) continue; // a layer only the library covers
            var down = _injected.Membranes.Inputs[MembraneNames.Down(layer.ModulePath)].Clone();
            var upFlat = _injected.Membranes.Inputs[MembraneNames.Up(layer.ModulePath)].Clone();
            if (total != o.Rank)
            {
                // Growing: keep the trained set's columns 0..r of the stacked tensors, not the library's.
                int rowLen = MembraneShapes.FanIn(layer);
                var downShape = (int[])down.Shape.Clone();
                downShape[0] = o.Rank;
                down = new FloatTensor(downShape, down.Data.AsSpan(0, o.Rank * rowLen).ToArray());
                var ownUp = new float[layer.OutFeatures * o.Rank];
                for (int row = 0; row < layer.OutFeatures; row++)
                    upFlat.Data.AsSpan(row * total, o.Rank).CopyTo(ownUp.AsSpan(row * o.Rank));
                upFlat = new FloatTensor([layer.OutFeatures, o.Rank], ownUp);
            }
            var up = layer.IsConv ? upFlat.Reshape(layer.OutFeatures, o.Rank, 1, 1) : upFlat;
            membranes.Add(new Membrane(SpmKeys.KeyFor(layer.ModulePath), down, up, (float)o.Alpha, layer.ModulePath));
        }
        var extra = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            [SpmMetadataKeys.Surrogate] = o.Surrogate,
            [SpmMetadataKeys.BaseModel] = _baseModelId,
            [SpmMetadataKeys.ModelFamily] = _folder.Family.Id(),
            [SpmMetadataKeys.Training] = SettingsJson(),
            [SpmMetadataKeys.Writer] = SpmMetadataKeys.CurrentWriter,
        };
        var config = new SpmConfig(o.FamilyPrompts ?? [o.Concept], o.Rank, (float)o.Alpha, extra);
        return new SpmAdapter(config, membranes);
    }

    private string SettingsJson() => SettingsJson(_options);

    /// <summary>
    /// The training settings as the SPM file's <c>training</c> metadata records them (sorted keys, JSON): what a
    /// manifest run compares to decide that a finished file is this concept's and can be skipped.
    /// </summary>
    public static string SettingsJson(LatentAnchoringOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var o = options;
        var settings = new SortedDictionary<string, object?>(StringComparer.Ordinal)
        {
            ["concept"] = o.Concept, ["positive"] = o.Positive, ["surrogate"] = o.Surrogate, ["unconditional"] = o.Unconditional,
            ["eta"] = o.Eta, ["anchor_strength"] = o.AnchorStrength, ["action"] = o.Action == TrainingAction.Erase ? "erase" : "erase_with_la",
            ["anchors"] = o.AnchorCount, ["reference_quirk"] = o.ReferenceQuirk, ["iterations"] = o.Iterations, ["lr"] = o.LearningRate,
            ["weight_decay"] = o.WeightDecay, ["adam_epsilon"] = o.AdamEpsilon, ["warmup"] = o.WarmupSteps, ["cosine_cycles"] = o.CosineCycles, ["rank"] = o.Rank,
            ["alpha"] = o.Alpha, ["resolution"] = o.Resolution, ["dynamic_resolution"] = o.DynamicResolution,
            ["sampling_steps"] = o.SamplingSteps, ["sampling_guidance"] = o.SamplingGuidance,
            ["query_timestep"] = o.QueryTimestep.ToString(), ["seed"] = o.Seed,
        };
        // Only robust runs name these, so ordinary runs keep their settings (and checkpoints) as before.
        if (o.AdversarialPrompts is { Count: > 0 } adversarial)
        {
            settings["adversarial_prompts"] = adversarial.Count;
            settings["adversarial_share"] = o.AdversarialShare;
            if (o.AdversarialGoals is { } goals) settings["adversarial_goals"] = goals.ToList();
        }
        if (o.InitialSpm is { } init) settings["initial_spm"] = Path.GetFileName(init);
        // Atlas runs only: the anchor prompts and the family, so ordinary runs' settings stay as before.
        if (o.AnchorPrompts is { } anchorPrompts) settings["anchor_prompts"] = anchorPrompts.ToList();
        if (o.FamilyPrompts is { } family) settings["family"] = family.ToList();
        if (o.Pairs is { } pairs) settings["pairs"] = pairs.Select(p => new[] { p.Target, p.Surrogate }).ToList();
        // Growing: the library it was trained against (file names and content hashes), so a checkpoint or a finished
        // file of another library is not taken for this run's.
        if (o.LibrarySpms is { Count: > 0 } library)
            settings["library"] = library.Select(f => $"{Path.GetFileName(f)} sha256:{FileSha256(f)[..16]}").ToList();
        return JsonSerializer.Serialize(settings);
    }

    private string Fingerprint()
    {
        // The probe is not a training setting (the file's metadata does not mention it), but it adds log columns, so a
        // checkpoint of a run with the probe resumes only with the probe, and one without only without.
        var bytes = SHA256.HashData(Encoding.UTF8.GetBytes(SettingsJson() + "|" + _baseModelId + (_options.ErasureProbe ? "|probe" : "")));
        return Convert.ToHexString(bytes, 0, 16).ToLowerInvariant();
    }

    private static string FileSha256(string path)
    {
        using var stream = File.OpenRead(path);
        return Convert.ToHexString(SHA256.HashData(stream)).ToLowerInvariant();
    }

    /// <summary>The base-model id a run on <paramref name="folder"/> writes as the SPM's <c>base_model</c> metadata.</summary>
    public static string BaseModelId(ModelFolder folder)
    {
        ArgumentNullException.ThrowIfNull(folder);
        // The UNet graph file's hash identifies the base model without reading GBs of external weights.
        using var stream = File.OpenRead(folder.UNetPath);
        var hash = SHA256.HashData(stream);
        return $"{folder.Name} (unet sha256 {Convert.ToHexString(hash, 0, 8).ToLowerInvariant()})";
    }

    private static string FindInput(List<ValueInfoProto> inputs, string name, int fallbackIndex, string file)
    {
        var byName = inputs.FirstOrDefault(i => i.Name == name);
        if (byName is not null) return byName.Name;
        if (fallbackIndex < inputs.Count) return inputs[fallbackIndex].Name;
        throw new SpmFormatException(file, name, "the UNet has no such input.");
    }

    // Everything the training graph depends on: the UNet file (path, size, time), the membrane layout (layers, rank),
    // the rows and latent size of the key, and the session settings. Not the concept, seed or membrane values: those
    // are fed at every step.
    private string GraphCacheKey((int Rows, int H, int W) key)
    {
        var file = new FileInfo(_unet.FilePath);
        var layers = string.Join(",", _layout.Layers.Select(l => l.ModulePath));
        return $"{file.FullName}|{file.Length}|{file.LastWriteTimeUtc.Ticks}|rank {_options.Rank} of {_layout.TotalRank} ({string.Join(",", _layout.Sets.Select(s => s.Name))})|{layers}|{key}|{_gradientSettings with { Sessions = null }}";
    }

    /// <inheritdoc />
    public void Dispose()
    {
        // Graphs from a shared cache belong to the cache.
        if (_graphCache is null)
            foreach (var g in _graphs.Values) g.Dispose();
        _graphs.Clear();
        _vae?.Dispose();
        _injected.Dispose();
    }
}
