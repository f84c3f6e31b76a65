using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using Spm.Core;
using Spm.Core.Gating;
using Spm.Core.SafeTensors;
using Spm.Diffusion.Membranes;
using Spm.Diffusion.Pipelines;
using Spm.Diffusion.Runtime;
using Spm.Shapes.World;
using Spm.Training.Evaluation;
using Spm.Training.LatentAnchoring;

namespace Spm.Shapes.Evaluation;

/// <summary>Which standard cases an erasure evaluation runs.</summary>
public enum EvalCaseSelection
{
    /// <summary>Each SPM alone, then all together (with several).</summary>
    All,

    /// <summary>Each SPM alone.</summary>
    Each,

    /// <summary>All SPMs together (what a routed library does); with one SPM, its own case.</summary>
    Together,
}

/// <summary>What an evaluation run (<c>spm eval</c>) is asked to do: files resolved, settings checked.</summary>
public sealed record SpmEvaluationRequest
{
    /// <summary>The model folder.</summary>
    public required string Model { get; init; }

    /// <summary>The erasing SPM files (empty for a fidelity run).</summary>
    public IReadOnlyList<string> Spms { get; init; } = [];

    /// <summary>SPM files trained without latent anchoring, for the "no anchoring" rows.</summary>
    public IReadOnlyList<string> NoAnchoringSpms { get; init; } = [];

    /// <summary>
    /// Concept words given for the SPMs in order (erasers, then optionally the no-anchoring ones), a family membrane's
    /// words joined by commas ("circle,square"); an SPM without one gets its trainer's recorded family, else the one
    /// tiny-shapes word its prompts name.
    /// </summary>
    public IReadOnlyList<string> Concepts { get; init; } = [];

    /// <summary>Measure the base model's fidelity to random captions instead of erasure.</summary>
    public bool Fidelity { get; init; }

    /// <summary>Images per prompt set (erasure) or captions (fidelity).</summary>
    public int Images { get; init; } = 100;

    /// <summary>Seed of the prompt sets and image seeds.</summary>
    public ulong Seed { get; init; }

    /// <summary>How the images are generated.</summary>
    public EvalGenerationSettings Generation { get; init; } = new();

    /// <summary>Gate curve, facilitate factor and calibration of the erased variants.</summary>
    public GateSettings Transport { get; init; } = GateSettings.Default;

    /// <summary>Prompts of each set shown in the comparison grids.</summary>
    public int GridPrompts { get; init; } = 4;

    /// <summary>How the erasure prompts are worded (canonical, synonyms, held-out; same intents and seeds).</summary>
    public PromptWording Wording { get; init; } = PromptWording.Canonical;

    /// <summary>Also list every image with what the evaluator read in it (<see cref="EvalReport.Images"/>).</summary>
    public bool RecordImages { get; init; }

    /// <summary>Which of the standard cases run: each SPM alone, all together, or both (the default).</summary>
    public EvalCaseSelection Cases { get; init; } = EvalCaseSelection.All;

    /// <summary>
    /// Also run the ablation variants ("erased, no transport" and, with no-anchoring SPMs, "erased, no anchoring"); true by
    /// default. Without them only "erased" is measured against the base, at about half the images.
    /// </summary>
    public bool Ablations { get; init; } = true;

    /// <summary>The style the model draws in (a derived model's world), so the evaluator reads it right.</summary>
    public ShapeStyle Style { get; init; } = ShapeStyle.Flat;

    /// <summary>ONNX Runtime options of the pipeline.</summary>
    public OnnxRuntimeOptions Runtime { get; init; } = new();
}

/// <summary>
/// One evaluation run on a model with SPMs loaded, what <c>spm eval</c> does: <see cref="Open"/> loads the SPMs and the
/// pipeline and settles the concepts and cases (saying what it noticed on the way), then <see cref="Evaluate"/> or
/// <see cref="MeasureFidelity"/> does the long work, and <see cref="ToJson(EvalReport)"/> gives the report file's
/// content (the report, plus a <c>run</c> object: model, sampling, gate, SPMs and cost).
/// </summary>
public sealed class SpmEvaluationRun : IDisposable
{
    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    private readonly StableDiffusionPipeline _pipeline;
    private readonly SpmErasureEvaluator _evaluator;
    private readonly IReadOnlyList<MembraneSet> _sets;
    private readonly IReadOnlyList<IReadOnlyList<EvalConcept>> _concepts;

    private SpmEvaluationRun(SpmEvaluationRequest request, StableDiffusionPipeline pipeline, EvalImageGenerator generator,
        IReadOnlyList<MembraneSet> sets, IReadOnlyList<IReadOnlyList<EvalConcept>> concepts, IReadOnlyList<SpmCaseSpec> cases)
    {
        Request = request;
        _pipeline = pipeline;
        Generator = generator;
        _sets = sets;
        _concepts = concepts;
        Cases = cases;
        var reader = new ErasureEvaluation(new ShapeEvaluator(ShapeEvaluatorOptions.For(request.Style)));
        _evaluator = request.Fidelity ? new SpmErasureEvaluator(generator, null, reader) : new SpmErasureEvaluator(generator, request.Transport, reader);
    }

    /// <summary>The request.</summary>
    public SpmEvaluationRequest Request { get; }

    /// <summary>The image generator (its scheduler and image size are the run's).</summary>
    public EvalImageGenerator Generator { get; }

    /// <summary>The cases an erasure run evaluates (none for a fidelity run).</summary>
    public IReadOnlyList<SpmCaseSpec> Cases { get; }

    /// <summary>What the last <see cref="Evaluate"/> or <see cref="MeasureFidelity"/> cost.</summary>
    public SpmEvalCost? LastCost => _evaluator.LastCost;

    /// <summary>
    /// Loads the request's SPMs (erasers, then no-anchoring ones) and the pipeline, and settles each SPM's concept and the
    /// standard cases. <paramref name="warnings"/> hears, in order, the layout's warnings, SPMs whose recorded training
    /// contradicts their role, and a CUDA request that fell back to the CPU.
    /// </summary>
    /// <exception cref="SpmException">A concept cannot be told, a concept word is unknown, no eraser, or two SPMs of one kind for one concept.</exception>
    public static SpmEvaluationRun Open(SpmEvaluationRequest request, IProgress<string>? warnings = null)
    {
        ArgumentNullException.ThrowIfNull(request);
        Spm.Diffusion.Pipelines.Families.ModelFamilies.RefuseSdxl(request.Model, "spm eval (SpmEvaluationRun)");
        if (request.Fidelity)
        {
            if (request.Spms.Count > 0 || request.NoAnchoringSpms.Count > 0)
                throw new ArgumentException("A fidelity run measures the base model: it takes no SPM files.", nameof(request));
            var basePipeline = StableDiffusionPipeline.Load(request.Model, new PipelineOptions { Runtime = request.Runtime });
            try
            {
                if (basePipeline.ProviderFallbackReason is { } why) warnings?.Report($"{why}; running on the CPU.");
                return new SpmEvaluationRun(request, basePipeline, new EvalImageGenerator(basePipeline, null, request.Generation), [], [], []);
            }
            catch
            {
                basePipeline.Dispose();
                throw;
            }
        }

        var loaded = LoadedSpms.Load(request.Model, [.. request.Spms, .. request.NoAnchoringSpms]);
        foreach (var w in loaded.Layout.Warnings) warnings?.Report(w);
        var concepts = ResolveConcepts(request, loaded.Layout.Sets);
        foreach (var w in TrainingWarnings(request)) warnings?.Report(w);
        var cases = Select(SpmErasureEvaluator.StandardCasesBySpm(concepts.Take(request.Spms.Count).ToArray(), concepts.Skip(request.Spms.Count).ToArray()),
            request.Spms.Count, request.Cases, request.Ablations);
        var pipeline = StableDiffusionPipeline.Load(request.Model, new PipelineOptions { UNetSource = loaded.UNetSource, Runtime = request.Runtime });
        try
        {
            if (pipeline.ProviderFallbackReason is { } why) warnings?.Report($"{why}; running on the CPU.");
            return new SpmEvaluationRun(request, pipeline, new EvalImageGenerator(pipeline, loaded, request.Generation), loaded.Layout.Sets, concepts, cases);
        }
        catch
        {
            pipeline.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The standard cases (each eraser alone, then all together when there are several) narrowed to
    /// <paramref name="selection"/>, each case keeping only its "erased" variant when <paramref name="ablations"/> is off.
    /// With one eraser, its own case is both "each" and "together".
    /// </summary>
    internal static IReadOnlyList<SpmCaseSpec> Select(IReadOnlyList<SpmCaseSpec> standard, int erasers, EvalCaseSelection selection, bool ablations)
    {
        var chosen = selection switch
        {
            EvalCaseSelection.Each => standard.Take(erasers),
            EvalCaseSelection.Together => standard.Skip(erasers == 1 ? 0 : erasers),
            _ => standard,
        };
        return chosen.Select(c => ablations ? c : c with { Variants = c.Variants.Where(v => v.Name == SpmErasureEvaluator.Erased).ToArray() }).ToArray();
    }

    /// <summary>
    /// The concepts of every SPM of <paramref name="request"/> (erasers, then no-anchoring ones): the concept word(s)
    /// given for it (a family's joined by commas); else, for a family membrane (its training record lists the family,
    /// <see cref="TrainingRecord.FamilyOf"/>), the concept each family prompt names; else the one tiny-shapes word in
    /// its file's prompts (<paramref name="sets"/>, in the same order). One concept for an ordinary SPM, several for a family.
    /// </summary>
    /// <exception cref="SpmException">A word names no tiny-shapes value, or a file's prompts name none or several.</exception>
    public static IReadOnlyList<IReadOnlyList<EvalConcept>> ResolveConcepts(SpmEvaluationRequest request, IReadOnlyList<MembraneSet> sets)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(sets);
        var files = request.Spms.Concat(request.NoAnchoringSpms).ToArray();
        if (sets.Count != files.Length) throw new ArgumentException($"Expected {files.Length} membrane sets (one per SPM file), got {sets.Count}.", nameof(sets));
        var concepts = new IReadOnlyList<EvalConcept>[files.Length];
        for (int i = 0; i < files.Length; i++)
        {
            if (i < request.Concepts.Count)
            {
                concepts[i] = EvalConcept.ParseList(request.Concepts[i]);
                continue;
            }
            IReadOnlyList<string>? family;
            using (var st = SafeTensorsFile.Open(files[i])) family = TrainingRecord.FamilyOf(st.Metadata);
            concepts[i] = family is not null ? EvalConcept.FamilyFromPrompts(family, files[i]) : [EvalConcept.FromPrompts(sets[i].Concepts, files[i])];
        }
        return concepts;
    }

    /// <summary>
    /// Warnings for SPMs whose recorded training (the file's metadata) contradicts their role: an eraser trained without
    /// anchoring, or a no-anchoring SPM trained with it. Files without a training record say nothing.
    /// </summary>
    public static IEnumerable<string> TrainingWarnings(SpmEvaluationRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        foreach (var (file, ablation) in request.Spms.Select(f => (f, false)).Concat(request.NoAnchoringSpms.Select(f => (f, true))))
        {
            string? action;
            using (var st = SafeTensorsFile.Open(file)) action = TrainingRecord.ActionOf(st.Metadata);
            if (action is null) continue;
            if (ablation && action != "erase")
                yield return $"'{file}' is given as --no-anchoring-spm but was trained with action '{action}' (with latent anchoring).";
            if (!ablation && action == "erase")
                yield return $"'{file}' was trained without latent anchoring (action 'erase'); its \"erased\" rows are the ablation's.";
        }
    }

    /// <summary>Runs the erasure evaluation of every case (see <see cref="SpmErasureEvaluator.Evaluate"/>).</summary>
    /// <exception cref="InvalidOperationException">This is a fidelity run.</exception>
    public EvalReport Evaluate(IProgress<SpmEvalProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        if (Request.Fidelity) throw new InvalidOperationException("This run measures fidelity; it has no erasure cases.");
        var options = new EvalOptions(Request.Images, Request.Seed, Generator.ImageSize, Request.GridPrompts) { Wording = Request.Wording, RecordImages = Request.RecordImages };
        return _evaluator.Evaluate(Cases, options, progress, cancellationToken);
    }

    /// <summary>Measures the base model's fidelity to <see cref="SpmEvaluationRequest.Images"/> random captions.</summary>
    public FidelityResult MeasureFidelity(IProgress<SpmEvalProgress>? progress = null, CancellationToken cancellationToken = default)
        => _evaluator.MeasureFidelity(Request.Images, Request.Seed, progress, cancellationToken, Request.Wording);

    /// <summary>The report file of an erasure run: the report's JSON with a <c>run</c> object.</summary>
    public string ToJson(EvalReport report)
    {
        ArgumentNullException.ThrowIfNull(report);
        var doc = JsonNode.Parse(EvalReportWriter.ToJson(report))!.AsObject();
        doc["run"] = RunInfo();
        return doc.ToJsonString(JsonOptions);
    }

    /// <summary>The report file of a fidelity run: the result under <c>fidelity</c>, with a <c>run</c> object.</summary>
    public string ToJson(FidelityResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        return new JsonObject
        {
            ["fidelity"] = JsonSerializer.SerializeToNode(result, JsonOptions),
            ["run"] = RunInfo(),
        }.ToJsonString(JsonOptions);
    }

    /// <summary>The <c>run</c> object of the report: model, sampling, gate, the SPMs with their concepts and roles, and the cost.</summary>
    private JsonObject RunInfo()
    {
        var r = Request;
        var cost = LastCost ?? throw new InvalidOperationException("Nothing has been evaluated yet.");
        var spms = new JsonArray();
        var files = r.Spms.Concat(r.NoAnchoringSpms).ToArray();
        for (int i = 0; i < files.Length; i++)
            spms.Add(new JsonObject
            {
                ["file"] = files[i],
                ["name"] = _sets[i].Name,
                ["concept"] = string.Join(" + ", _concepts[i].Select(c => c.Name)),
                ["concepts"] = new JsonArray(_concepts[i].Select(c => (JsonNode?)JsonValue.Create(c.Name)).ToArray()),
                ["role"] = i < r.Spms.Count ? "erase" : "no-anchoring",
                ["prompts"] = new JsonArray(_sets[i].Concepts.Select(c => (JsonNode?)JsonValue.Create(c)).ToArray()),
            });
        return new JsonObject
        {
            ["model"] = Path.GetFullPath(r.Model),
            ["scheduler"] = Generator.SchedulerName,
            ["steps"] = r.Generation.Steps,
            ["guidance"] = r.Generation.GuidanceScale,
            ["imageSize"] = Generator.ImageSize,
            ["batch"] = r.Generation.BatchSize,
            ["parallel"] = r.Generation.Parallelism,
            ["threads"] = r.Runtime.IntraOpThreads,
            ["gateCurve"] = r.Transport.Curve.ToString().ToLowerInvariant(),
            ["gateCalibration"] = GateCalibrations.NameOf(r.Transport.Calibration),
            ["facilitateFactor"] = r.Transport.FacilitateFactor,
            ["spms"] = spms,
            ["cases"] = r.Cases.ToString().ToLowerInvariant(),
            ["ablations"] = r.Ablations,
            ["imagesGenerated"] = cost.ImagesGenerated,
            ["imagesRead"] = cost.ImagesRequested,
            ["generationSeconds"] = Math.Round(cost.Generation.TotalSeconds, 3),
            ["readingSeconds"] = Math.Round(cost.Reading.TotalSeconds, 3),
        };
    }

    /// <inheritdoc />
    public void Dispose() => _pipeline.Dispose();
}
