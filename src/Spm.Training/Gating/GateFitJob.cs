using System.Globalization;
using System.Text.Json.Nodes;
using Spm.Core.Gating;
using Spm.Core.Membranes;
using Spm.Diffusion.Membranes;
using Spm.Diffusion.Pipelines;
using Spm.Diffusion.Runtime;
using Spm.Training.Attacks;
using Spm.Training.Evaluation;

namespace Spm.Training.Gating;

/// <summary>What fitting learned gates for SPM files is asked to do (<c>spm gate fit</c>).</summary>
public sealed record GateFitRequest
{
    /// <summary>The model folder.</summary>
    public required string Model { get; init; }

    /// <summary>The SPM files to fit a gate for.</summary>
    public required IReadOnlyList<string> Spms { get; init; }

    /// <summary>The concept each SPM erases, in order; SPMs of one concept share a judge and its labels.</summary>
    public required IReadOnlyList<string> Concepts { get; init; }

    /// <summary>One judge per distinct concept of <see cref="Concepts"/>, in the order the concepts first appear (one judge for all: an SPM set of one concept).</summary>
    public required IReadOnlyList<IConceptJudge> Judges { get; init; }

    /// <summary>Images drawn per prompt; a prompt's label is the share of them that shows the concept.</summary>
    public int ImagesPerPrompt { get; init; } = 2;

    /// <summary>Seed of the image seeds, the held-out split and the probe's initialisation.</summary>
    public ulong Seed { get; init; }

    /// <summary>How the probe is fitted.</summary>
    public ProbeFitOptions Fit { get; init; } = ProbeFitOptions.Default;

    /// <summary>Probability at or below which the gate stays shut.</summary>
    public float Closed { get; init; } = ConceptProbe.DefaultClosed;

    /// <summary>Probability at or above which the gate is fully open.</summary>
    public float Open { get; init; } = ConceptProbe.DefaultOpen;

    /// <summary>The membrane's multiplier with the gate fully open; null chooses it (<see cref="StrengthCandidates"/>, at most <see cref="MaxLeak"/>).</summary>
    public float? Strength { get; init; }

    /// <summary>
    /// Prompts the model does not draw the concept for that are pushed along the concept's direction
    /// (<see cref="DirectionAugmentation"/>) and labelled, so the gate also opens where an embedding-space attack makes
    /// the model draw the concept; 0 (the default) fits on the prompts alone.
    /// </summary>
    public int DirectionPrompts { get; init; }

    /// <summary>The multiples of the direction each of <see cref="DirectionPrompts"/> is pushed by.</summary>
    public IReadOnlyList<float> DirectionStrengths { get; init; } = DirectionAugmentation.DefaultStrengths;

    /// <summary>How images are drawn.</summary>
    public EvalGenerationSettings Sampling { get; init; } = new();

    /// <summary>ONNX Runtime options of the pipeline.</summary>
    public OnnxRuntimeOptions Runtime { get; init; } = new();

    /// <summary>The concept each SPM file erases when none is given: the first of its prompts.</summary>
    /// <exception cref="Spm.Core.SpmFormatException">A file is not an SPM file.</exception>
    public static IReadOnlyList<string> FirstPromptsOf(IReadOnlyList<string> spms)
    {
        ArgumentNullException.ThrowIfNull(spms);
        return spms.Select(f => SpmFile.Load(f).Config.Prompts[0]).ToArray();
    }

    /// <summary>The strengths an automatic choice tries, smallest first.</summary>
    public static IReadOnlyList<float> StrengthCandidates { get; } = [1f, 1.25f, 1.5f, 2f];

    /// <summary>The leak an automatic strength choice accepts (share of base images of the concept the SPM leaves it in).</summary>
    public const double MaxLeak = 0.02;

    /// <summary>Labelled prompts the base model draws the concept for that an automatic strength choice measures on, at most.</summary>
    public const int StrengthPrompts = 60;
}

/// <summary>The gate fitted for one SPM file.</summary>
/// <param name="Spm">The SPM file.</param>
/// <param name="Concept">Its concept.</param>
/// <param name="Judge">The judge that labelled its data.</param>
/// <param name="Gated">The SPM with the probe in its metadata (<see cref="ConceptProbe.MetadataKey"/>), tensors unchanged.</param>
/// <param name="Fit">The probe's fit and its train and held-out metrics.</param>
/// <param name="Strength">The automatic strength choice, or null (a fixed strength, or no labelled prompt drawn as the concept).</param>
/// <param name="Prompts">Labelled prompts.</param>
/// <param name="Positives">Of these, prompts labelled as showing the concept (share at least one half).</param>
public sealed record GateFitOutcome(string Spm, string Concept, string Judge, SpmAdapter Gated, GateFitResult Fit, StrengthChoice? Strength, int Prompts, int Positives);

/// <summary>
/// Fits the learned gate of SPM files (<c>spm gate fit</c>): <see cref="Open"/> loads the SPMs and the pipeline,
/// <see cref="Label"/> draws base-model images for prompts and lets the judges label them, <see cref="Fit(int, IReadOnlyList{LabelledPrompt}, IReadOnlyList{LabelledPrompt}?, IProgress{double}?, IProgress{string}?, IReadOnlyList{DirectionSample}?, CancellationToken)"/> fits one
/// SPM's probe on the text encoder's states and (when asked) chooses its strength, and <see cref="Save"/> writes the
/// gated file. The steps are separate so a caller can show progress and results as they come.
/// </summary>
public sealed class GateFitJob : IDisposable
{
    private readonly StableDiffusionPipeline _pipeline;
    private readonly IReadOnlyList<SpmAdapter> _adapters;
    private readonly string[] _distinctConcepts;
    private readonly int _width;
    private readonly float[] _signature;

    private GateFitJob(GateFitRequest request, StableDiffusionPipeline pipeline, EvalImageGenerator generator, IReadOnlyList<SpmAdapter> adapters)
    {
        Request = request;
        _pipeline = pipeline;
        Generator = generator;
        _adapters = adapters;
        _distinctConcepts = request.Concepts.Distinct(StringComparer.Ordinal).ToArray();
        var empty = generator.Encode("");
        _width = empty.Embedding.Length / empty.TokenIds.Length;
        _signature = ConceptProbe.EncoderSignature(empty.Embedding, _width);
    }

    /// <summary>The request.</summary>
    public GateFitRequest Request { get; }

    /// <summary>The image generator (the SPMs are loaded; labelling draws with every multiplier at 0, the base model).</summary>
    public EvalImageGenerator Generator { get; }

    /// <summary>The judges' names, the columns of the labels.</summary>
    public IReadOnlyList<string> JudgeNames => Request.Judges.Select(j => j.Name).ToArray();

    /// <summary>
    /// Loads the SPM files and the pipeline with them injected (so an automatic strength can be measured);
    /// <paramref name="warnings"/> hears a CUDA request that fell back to the CPU.
    /// </summary>
    /// <exception cref="ArgumentException">The concepts do not match the SPMs, or the judges the distinct concepts.</exception>
    public static GateFitJob Open(GateFitRequest request, IProgress<string>? warnings = null)
    {
        ArgumentNullException.ThrowIfNull(request);
        Spm.Diffusion.Pipelines.Families.ModelFamilies.RefuseSdxl(request.Model, "spm gate fit (GateFitJob)");
        if (request.Spms.Count == 0) throw new ArgumentException("No SPM file to fit a gate for.", nameof(request));
        if (request.Concepts.Count != request.Spms.Count)
            throw new ArgumentException($"{request.Concepts.Count} concept(s) for {request.Spms.Count} SPM file(s): give one per file.", nameof(request));
        int distinct = request.Concepts.Distinct(StringComparer.Ordinal).Count();
        if (request.Judges.Count != distinct && request.Judges.Count != 1)
            throw new ArgumentException($"{request.Judges.Count} judge(s) for {distinct} distinct concept(s): give one per concept, or one for a single concept.", nameof(request));
        if (request.Judges.Count == 1 && distinct != 1)
            throw new ArgumentException("One judge judges one concept: give SPMs of one concept.", nameof(request));
        if (request.ImagesPerPrompt is < 1 or > 64) throw new ArgumentException($"Images per prompt must be 1..64, got {request.ImagesPerPrompt}.", nameof(request));
        if (!(request.Closed >= 0 && request.Closed < request.Open && request.Open <= 1))
            throw new ArgumentException($"The gate thresholds must satisfy 0 <= closed < open <= 1, got {request.Closed} and {request.Open}.", nameof(request));

        var adapters = request.Spms.Select(f => SpmFile.Load(f)).ToArray();
        var loaded = LoadedSpms.Load(request.Model, request.Spms);
        var pipeline = StableDiffusionPipeline.Load(request.Model, new PipelineOptions { Runtime = request.Runtime, UNetSource = loaded.UNetSource });
        try
        {
            if (pipeline.ProviderFallbackReason is { } why) warnings?.Report($"{why}; running on the CPU.");
            return new GateFitJob(request, pipeline, new EvalImageGenerator(pipeline, loaded, request.Sampling), adapters);
        }
        catch
        {
            pipeline.Dispose();
            throw;
        }
    }

    /// <summary>Labels <paramref name="prompts"/>: <see cref="GateFitRequest.ImagesPerPrompt"/> base-model images each, read by every judge (<see cref="GateFitting.Label"/>).</summary>
    public IReadOnlyList<LabelledPrompt> Label(IReadOnlyList<string> prompts, IProgress<double>? progress = null, CancellationToken cancellationToken = default)
        => GateFitting.Label(Generator, prompts, Request.ImagesPerPrompt, Request.Seed, Request.Judges, progress, cancellationToken);

    /// <summary>
    /// With <see cref="GateFitRequest.DirectionPrompts"/> above 0: labels SPM <paramref name="spm"/>'s concept's pushed
    /// conditionings (<see cref="DirectionAugmentation.Label"/>, <see cref="GateFitRequest.ImagesPerPrompt"/> images per
    /// push, the direction measured on <paramref name="labelled"/>); else none.
    /// </summary>
    public IReadOnlyList<DirectionSample> LabelDirections(int spm, IReadOnlyList<LabelledPrompt> labelled, IProgress<double>? progress = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(labelled);
        if (Request.DirectionPrompts <= 0) return [];
        int judge = JudgeOf(spm);
        var direction = DirectionAugmentation.Direction(labelled, judge, Encode);
        return DirectionAugmentation.Label(Generator, Request.Concepts[spm], labelled, judge, Request.Judges[judge], direction, Request.DirectionStrengths,
            Request.DirectionPrompts, Request.ImagesPerPrompt, Request.Seed, progress, cancellationToken);
    }

    /// <summary>
    /// The samples <see cref="LabelDirections"/> gives SPM <paramref name="spm"/>: one per strength for each of
    /// <see cref="GateFitRequest.DirectionPrompts"/> prompts, or fewer when <paramref name="labelled"/> holds fewer prompts
    /// never drawn as the concept (0 when the request asks for none).
    /// </summary>
    public int DirectionSampleCount(int spm, IReadOnlyList<LabelledPrompt> labelled)
    {
        ArgumentNullException.ThrowIfNull(labelled);
        if (Request.DirectionPrompts <= 0) return 0;
        int judge = JudgeOf(spm);
        int negatives = labelled.Where(d => d.Labels[judge] == 0f).Select(d => d.Prompt).Distinct(StringComparer.Ordinal).Count();
        return Math.Min(Request.DirectionPrompts, negatives) * Request.DirectionStrengths.Count;
    }

    private float[] Encode(string text) => Generator.Encode(text).Embedding;

    // Which positions of the prompt sit inside a word (ConceptProbe.SkipsMidWord); the ids come from the generator's cache.
    private bool[] MidWord(string text) => _pipeline.Tokenizer.MidWordMask(Generator.Encode(text).TokenIds);

    /// <summary>
    /// The prompts an automatic strength choice for SPM <paramref name="spm"/> measures on: up to
    /// <see cref="GateFitRequest.StrengthPrompts"/> labelled prompts the base model draws its concept for, surest first.
    /// Empty with a fixed strength.
    /// </summary>
    public IReadOnlyList<string> StrengthPromptsFor(int spm, IReadOnlyList<LabelledPrompt> labelled)
    {
        ArgumentNullException.ThrowIfNull(labelled);
        if (Request.Strength is not null) return [];
        int judge = JudgeOf(spm);
        return labelled.Select((d, k) => (d, k)).Where(t => t.d.Labels[judge] >= 0.5f)
            .OrderByDescending(t => t.d.Labels[judge]).ThenBy(t => t.k).Take(GateFitRequest.StrengthPrompts).Select(t => t.d.Prompt).ToList();
    }

    /// <summary>
    /// Fits SPM <paramref name="spm"/>'s probe on <paramref name="labelled"/> (every fifth prompt held out), chooses its
    /// strength when the request leaves it open (<paramref name="strengthProgress"/> follows the images that takes; with no
    /// labelled prompt drawn as the concept the strength is 1 and <paramref name="warnings"/> says so), and gives the SPM
    /// with the gate in its metadata. <paramref name="directions"/> (<see cref="LabelDirections"/>, this SPM's concept's)
    /// join the training data.
    /// </summary>
    public GateFitOutcome Fit(int spm, IReadOnlyList<LabelledPrompt> labelled, IProgress<double>? strengthProgress = null,
        IProgress<string>? warnings = null, IReadOnlyList<DirectionSample>? directions = null, CancellationToken cancellationToken = default)
        => Fit(spm, labelled, mined: null, strengthProgress, warnings, directions, cancellationToken);

    /// <summary>
    /// As <see cref="Fit(int, IReadOnlyList{LabelledPrompt}, IProgress{double}?, IProgress{string}?, IReadOnlyList{DirectionSample}?, CancellationToken)"/>,
    /// with <paramref name="mined"/> (<see cref="MinePrompts"/>, labelled) joining the training data; like the pushed
    /// conditionings they never enter the held-out fifth, so its figures compare with a fit without them.
    /// </summary>
    public GateFitOutcome Fit(int spm, IReadOnlyList<LabelledPrompt> labelled, IReadOnlyList<LabelledPrompt>? mined, IProgress<double>? strengthProgress = null,
        IProgress<string>? warnings = null, IReadOnlyList<DirectionSample>? directions = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(labelled);
        int judgeIndex = JudgeOf(spm);
        var concept = Request.Concepts[spm];
        var judge = Request.Judges[judgeIndex];
        var (fit, direction) = FitProbe(spm, labelled, mined, directions, cancellationToken);
        fit.Probe.Fit["judge"] = judge.Name;
        if (mined is { Count: > 0 })
        {
            fit.Probe.Fit["mined_prompts"] = mined.Count;
            fit.Probe.Fit["mined_positive_share"] = Math.Round(mined.Average(m => m.Labels[judgeIndex]), 4);
        }
        if (direction is not null)
        {
            fit.Probe.Fit["direction_samples"] = directions!.Count;
            fit.Probe.Fit["direction_norm"] = Math.Round(System.Numerics.Tensors.TensorPrimitives.Norm(direction), 4);
            fit.Probe.Fit["direction_strengths"] = new JsonArray(directions!.Select(d => d.Strength).Distinct().Order().Select(x => (JsonNode?)JsonValue.Create(x)).ToArray());
            fit.Probe.Fit["direction_positive_share"] = Math.Round(directions!.Average(d => d.Label), 4);
        }
        float strength = Request.Strength ?? 1f;
        StrengthChoice? choice = null;
        if (Request.Strength is null)
        {
            var drawn = StrengthPromptsFor(spm, labelled);
            if (drawn.Count == 0) warnings?.Report($"no labelled prompt is drawn as '{concept}': strength 1.");
            else
            {
                choice = GateFitting.ChooseStrength(Generator, spm, drawn, judge, GateFitRequest.StrengthCandidates, Request.Seed, GateFitRequest.MaxLeak,
                    strengthProgress, cancellationToken);
                strength = choice.Strength;
                fit.Probe.Fit["strength_leaks"] = new JsonObject(choice.Leaks.Select(l =>
                    new KeyValuePair<string, JsonNode?>(l.Strength.ToString("0.##", CultureInfo.InvariantCulture), double.IsFinite(l.Leak) ? Math.Round(l.Leak, 4) : null)));
            }
        }
        var probe = fit.Probe.WithThresholds(Request.Closed, Request.Open).WithStrength(strength);
        var a = _adapters[spm];
        var extra = new Dictionary<string, string>(a.Config.Extra, StringComparer.Ordinal) { [ConceptProbe.MetadataKey] = probe.ToJson() };
        var gated = new SpmAdapter(a.Config with { Extra = extra }, a.Membranes, a.StorageDType);
        return new GateFitOutcome(Request.Spms[spm], concept, judge.Name, gated, fit, choice, labelled.Count, labelled.Count(d => d.Labels[judgeIndex] >= 0.5f));
    }

    // The probe alone (no strength): labelled prompts, pushed conditionings and mined prompts, as Fit describes.
    private (GateFitResult Fit, float[]? Direction) FitProbe(int spm, IReadOnlyList<LabelledPrompt> labelled, IReadOnlyList<LabelledPrompt>? mined,
        IReadOnlyList<DirectionSample>? directions, CancellationToken cancellationToken)
    {
        int judgeIndex = JudgeOf(spm);
        var concept = Request.Concepts[spm];
        var extra = new List<ProbeSample>();
        float[]? direction = null;
        if (directions is { Count: > 0 })
        {
            if (directions.FirstOrDefault(d => d.Concept != concept) is { } other)
                throw new ArgumentException($"A direction sample of '{other.Concept}' was given for the gate of '{concept}'.", nameof(directions));
            direction = DirectionAugmentation.Direction(labelled, judgeIndex, Encode);
            extra.AddRange(DirectionAugmentation.ToProbeSamples(directions, direction, Encode, MidWord));
        }
        if (mined is not null)
            foreach (var m in mined)
            {
                if (judgeIndex >= m.Labels.Count) throw new ArgumentException($"The mined prompt '{m.Prompt}' has {m.Labels.Count} labels; judge {judgeIndex} has none.", nameof(mined));
                extra.Add(new ProbeSample(m.Prompt, Encode(m.Prompt), m.Labels[judgeIndex], m.Images, MidWord(m.Prompt)));
            }
        var fit = GateFitting.Fit(concept, labelled, judgeIndex, Encode, _width, _signature, Request.Fit, cancellationToken: cancellationToken,
            extraTraining: extra.Count > 0 ? extra : null, midWord: MidWord);
        return (fit, direction);
    }

    /// <summary>
    /// Active labelling of SPM <paramref name="spm"/>'s gate: fits a first probe (as <see cref="Fit(int, IReadOnlyList{LabelledPrompt}, IReadOnlyList{LabelledPrompt}?, IProgress{double}?, IProgress{string}?, IReadOnlyList{DirectionSample}?, CancellationToken)"/>
    /// would, without choosing a strength), reads its gate on every one of <paramref name="candidates"/> not labelled yet,
    /// and returns <paramref name="take"/> of those it opens for (gamma above 0), drawn uniformly with <paramref name="seed"/>
    /// (all of them when fewer open). Labelling these tells the probe where it opens wrongly: a typo of another word it
    /// reads as the concept, a neighbour it confuses, as well as where it is right, without spending images on the many
    /// prompts it already shuts correctly.
    /// </summary>
    /// <returns>The chosen prompts and how many candidates the first probe opened for.</returns>
    public (IReadOnlyList<string> Prompts, int Opened) MinePrompts(int spm, IReadOnlyList<LabelledPrompt> labelled, IReadOnlyList<DirectionSample>? directions,
        IReadOnlyList<string> candidates, int take, ulong seed, IProgress<double>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(labelled);
        ArgumentNullException.ThrowIfNull(candidates);
        ArgumentOutOfRangeException.ThrowIfNegative(take);
        var probe = FitProbe(spm, labelled, null, directions, cancellationToken).Fit.Probe.WithThresholds(Request.Closed, Request.Open);
        var known = labelled.Select(l => l.Prompt).ToHashSet(StringComparer.Ordinal);
        var fresh = candidates.Where(c => !known.Contains(c)).Distinct(StringComparer.Ordinal).ToList();
        var open = new List<string>();
        for (int i = 0; i < fresh.Count; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (probe.Gamma(Encode(fresh[i]), MidWord(fresh[i])) > 0f) open.Add(fresh[i]);
            if (progress is not null && (i % 256 == 255 || i == fresh.Count - 1)) progress.Report((i + 1) / (double)fresh.Count);
        }
        if (open.Count <= take) return (open, open.Count);
        // A partial Fisher-Yates shuffle: the first `take` entries are a uniform draw.
        var rng = new Spm.Core.Randomness.SeededRandom(seed ^ 0x4D49_4E45UL);
        for (int i = 0; i < take; i++)
        {
            int j = rng.NextInt(i, open.Count);
            (open[i], open[j]) = (open[j], open[i]);
        }
        return (open.GetRange(0, take), open.Count);
    }

    /// <summary>Writes the gated SPM to <paramref name="path"/> (atomically, in the file's storage type).</summary>
    public static void Save(GateFitOutcome outcome, string path, bool overwrite)
    {
        ArgumentNullException.ThrowIfNull(outcome);
        ArgumentNullException.ThrowIfNull(path);
        if (Path.GetDirectoryName(Path.GetFullPath(path)) is { } dir) Directory.CreateDirectory(dir);
        SpmFile.Save(path, outcome.Gated, overwrite, outcome.Gated.StorageDType);
    }

    private int JudgeOf(int spm)
    {
        if (spm < 0 || spm >= Request.Spms.Count) throw new ArgumentOutOfRangeException(nameof(spm), $"SPM index {spm} is not one of the {Request.Spms.Count}.");
        return Request.Judges.Count == 1 ? 0 : Array.IndexOf(_distinctConcepts, Request.Concepts[spm]);
    }

    /// <inheritdoc />
    public void Dispose() => _pipeline.Dispose();
}
