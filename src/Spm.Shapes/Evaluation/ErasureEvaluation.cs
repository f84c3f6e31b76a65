using Spm.Core.Metrics;
using Spm.Shapes.World;
using Spm.Training.Evaluation;

namespace Spm.Shapes.Evaluation;

/// <summary>Makes the picture for one evaluation prompt: a planar RGB image [3, S, S] with values in [0, 1].</summary>
/// <param name="prompt">The prompt and its seed.</param>
/// <param name="cancellationToken">Stops a long generation.</param>
public delegate float[] ImageSource(EvalPrompt prompt, CancellationToken cancellationToken);

/// <summary>One way of producing pictures: the base model, or the model with some SPMs at some settings.</summary>
/// <param name="Name">Row label ("base", "erased", "erased, no transport", "erased, no anchoring").</param>
/// <param name="Generate">The image source.</param>
public sealed record EvalVariant(string Name, ImageSource Generate);

/// <summary>Concepts erased together, and the variants of erasing them to compare against the base model.</summary>
/// <param name="Name">Case label ("circle", "red + circle + striped").</param>
/// <param name="Concepts">The concepts erased.</param>
/// <param name="Variants">The erased variants (the base model is added by the evaluation).</param>
public sealed record EvalCase(string Name, IReadOnlyList<EvalConcept> Concepts, IReadOnlyList<EvalVariant> Variants);

/// <summary>Settings of an erasure evaluation.</summary>
/// <param name="ImagesPerSet">Prompts (one image each) per target set and in the preservation set.</param>
/// <param name="Seed">Seed of the prompt sets and the generation seeds.</param>
/// <param name="ImageSize">Side of the square images.</param>
/// <param name="GridPromptsPerSet">How many prompts of each set appear in the comparison grid.</param>
/// <param name="PsnrCapDb">PSNR of identical images is infinite; means use min(PSNR, this).</param>
public sealed record EvalOptions(int ImagesPerSet = 50, ulong Seed = 0, int ImageSize = 64, int GridPromptsPerSet = 4, double PsnrCapDb = 100)
{
    /// <summary>How the prompts are worded (same intents and seeds for every wording).</summary>
    public PromptWording Wording { get; init; } = PromptWording.Canonical;

    /// <summary>Also list every image with what the evaluator read in it (<see cref="EvalReport.Images"/>); off by default.</summary>
    public bool RecordImages { get; init; }

    /// <summary>Throws <see cref="ArgumentException"/> for unusable settings.</summary>
    public void Validate()
    {
        if (ImagesPerSet is < 1 or > 100_000) throw new ArgumentException($"Images per set must be 1..100000, got {ImagesPerSet}.");
        if (ImageSize is < 16 or > 4096) throw new ArgumentException($"Image size must be 16..4096, got {ImageSize}.");
        if (GridPromptsPerSet < 0) throw new ArgumentException("Grid prompts per set must not be negative.");
        if (!(PsnrCapDb > 0)) throw new ArgumentException("The PSNR cap must be positive.");
    }
}

/// <summary>Where an evaluation is.</summary>
/// <param name="Done">Images made so far.</param>
/// <param name="Total">Images to make in all.</param>
/// <param name="Stage">What is being made ("circle / erased").</param>
public readonly record struct EvalProgress(int Done, int Total, string Stage);

/// <summary>
/// One line of the result table: for one case, one concept and one variant, the concept's detection rate on
/// prompts that ask for it, and preservation on prompts that ask for none of the case's concepts.
/// </summary>
/// <param name="Case">Case label.</param>
/// <param name="Concept">The concept whose detection rate this row gives.</param>
/// <param name="Variant">Variant label ("base" for the base model).</param>
/// <param name="TargetImages">Images of prompts asking for the concept.</param>
/// <param name="DetectionRate">Share of those images in which the evaluator reads the concept.</param>
/// <param name="PreservationImages">Images of prompts asking for none of the case's concepts.</param>
/// <param name="PreservationAccuracy">Share of those images in which every attribute the prompt names is read as named.</param>
/// <param name="MeanSsim">Mean SSIM of the preservation images against the base model's (same prompt and seed); null for the base row.</param>
/// <param name="MeanPsnr">Mean PSNR in dB, each capped at <see cref="EvalOptions.PsnrCapDb"/>; null for the base row.</param>
public sealed record EvalRow(
    string Case,
    string Concept,
    string Variant,
    int TargetImages,
    double DetectionRate,
    int PreservationImages,
    double PreservationAccuracy,
    double? MeanSsim,
    double? MeanPsnr)
{
    /// <summary>UnlearnCanvas's UA (unlearning accuracy): share of the target images that no longer show the concept, 1 − <see cref="DetectionRate"/>.</summary>
    public double UnlearningAccuracy => 1 - DetectionRate;

    /// <summary>
    /// UnlearnCanvas's IRA (in-domain retain accuracy): on the preservation prompts, which name another value of the
    /// concept's attribute ("square" when circle is erased), the share of images in which that attribute is read as named.
    /// </summary>
    public double InDomainRetainAccuracy { get; init; } = double.NaN;

    /// <summary>
    /// UnlearnCanvas's CRA (cross-domain retain accuracy): on the preservation prompts, the share of the other attributes
    /// the prompts name (colour, pattern, background when a shape is erased) that are read as named, over all such
    /// (image, attribute) judgements.
    /// </summary>
    public double CrossDomainRetainAccuracy { get; init; } = double.NaN;
}

/// <summary>The retain accuracies of UnlearnCanvas on judged images (<see cref="EvalRow.InDomainRetainAccuracy"/>, <see cref="EvalRow.CrossDomainRetainAccuracy"/>).</summary>
public static class RetainAccuracy
{
    /// <summary>
    /// IRA of <paramref name="concept"/>: over the prompts that name a value of its attribute, the share whose image reads
    /// that value (an image with no object found counts as wrong). NaN when no prompt names the attribute.
    /// </summary>
    public static double InDomain(EvalConcept concept, IEnumerable<(ShapePrompt Prompt, ShapeJudgement Judgement)> judged)
    {
        ArgumentNullException.ThrowIfNull(concept);
        ArgumentNullException.ThrowIfNull(judged);
        int named = 0, right = 0;
        foreach (var (prompt, j) in judged)
        {
            if (concept.NamedBy(prompt) is not { } value) continue;
            named++;
            if (new EvalConcept(concept.Attribute, value).IsDetectedIn(j)) right++;
        }
        return named == 0 ? double.NaN : right / (double)named;
    }

    /// <summary>
    /// CRA of <paramref name="concept"/>: over every (prompt, attribute other than the concept's) the prompt names, the
    /// share read as named. NaN when no prompt names another attribute.
    /// </summary>
    public static double CrossDomain(EvalConcept concept, IEnumerable<(ShapePrompt Prompt, ShapeJudgement Judgement)> judged)
    {
        ArgumentNullException.ThrowIfNull(concept);
        ArgumentNullException.ThrowIfNull(judged);
        int named = 0, right = 0;
        foreach (var (prompt, j) in judged)
            foreach (var attribute in Enum.GetValues<ConceptAttribute>())
            {
                if (attribute == concept.Attribute) continue;
                var probe = new EvalConcept(attribute, 0);
                if (probe.NamedBy(prompt) is not { } value) continue;
                named++;
                if (new EvalConcept(attribute, value).IsDetectedIn(j)) right++;
            }
        return named == 0 ? double.NaN : right / (double)named;
    }
}

/// <summary>A comparison sheet: one row per prompt, columns base | variant 1 | variant 2 ...</summary>
/// <param name="Case">Case label.</param>
/// <param name="Columns">Column labels, base first.</param>
/// <param name="Prompts">Row labels (prompt texts).</param>
/// <param name="Image">The planar RGB grid.</param>
/// <param name="Height">Grid height in pixels.</param>
/// <param name="Width">Grid width in pixels.</param>
public sealed record EvalGrid(string Case, IReadOnlyList<string> Columns, IReadOnlyList<string> Prompts, float[] Image, int Height, int Width);

/// <summary>The result of an erasure evaluation.</summary>
/// <param name="Options">The settings used.</param>
/// <param name="Rows">The table, case by case, base row first within each concept.</param>
/// <param name="Grids">One comparison sheet per case.</param>
public sealed record EvalReport(EvalOptions Options, IReadOnlyList<EvalRow> Rows, IReadOnlyList<EvalGrid> Grids)
{
    /// <summary>Every image read, when <see cref="EvalOptions.RecordImages"/> is set (else empty): where a rate's misses are.</summary>
    public IReadOnlyList<EvalImageRecord> Images { get; init; } = [];
}

/// <summary>
/// One image of an evaluation and what the evaluator read in it: the per-image detail behind a row's rates.
/// </summary>
/// <param name="Case">Case label.</param>
/// <param name="Variant">Variant label ("base" for the base model).</param>
/// <param name="Set">"target" (a prompt asking for <paramref name="Concept"/>) or "preservation" (asking for none of the case's concepts).</param>
/// <param name="Concept">The concept a target prompt asks for; null for preservation prompts.</param>
/// <param name="Prompt">The prompt text.</param>
/// <param name="Seed">The image seed.</param>
/// <param name="FoundObject">Whether the evaluator found an object.</param>
/// <param name="Shape">The shape read.</param>
/// <param name="Colour">The colour read.</param>
/// <param name="Pattern">The pattern read.</param>
/// <param name="Background">The background read.</param>
/// <param name="MatchesPrompt">Every attribute the prompt names was read as named.</param>
/// <param name="Detected">The case's concepts read in the image.</param>
/// <param name="Ssim">SSIM against the base model's image of the same prompt and seed; null for the base.</param>
public sealed record EvalImageRecord(
    string Case, string Variant, string Set, string? Concept, string Prompt, ulong Seed, bool FoundObject,
    ShapeKind Shape, ShapeColor Colour, FillPattern Pattern, ShapeBackground Background, bool MatchesPrompt,
    IReadOnlyList<string> Detected, double? Ssim)
{
    /// <summary>
    /// Each SPM's multiplier for this image (the gate it was drawn at), in the order the SPMs were loaded; null when the
    /// images came from sources that do not say (<see cref="ErasureEvaluation.Run"/> alone). Which membrane acted on an
    /// image that went wrong.
    /// </summary>
    public IReadOnlyList<float>? Multipliers { get; init; }
}

/// <summary>
/// Measures concept erasure the way the SPM paper does, on the tiny-shapes world: per case, images of the base
/// model and of each erased variant for the same prompts and seeds, read by the <see cref="ShapeEvaluator"/>.
/// The model is reached only through <see cref="ImageSource"/> delegates, so this runs on any generator
/// (and is tested on rendered ground truth).
/// </summary>
public sealed class ErasureEvaluation
{
    private readonly ShapeEvaluator _evaluator;

    /// <summary>Creates an evaluation reading images with <paramref name="evaluator"/> (default: the tuned one).</summary>
    public ErasureEvaluation(ShapeEvaluator? evaluator = null) => _evaluator = evaluator ?? new ShapeEvaluator();

    /// <summary>The evaluator that reads the images.</summary>
    public ShapeEvaluator Evaluator => _evaluator;

    /// <summary>
    /// The prompts <see cref="Run"/> asks every variant of <paramref name="evalCase"/> (and the baseline) for, in the order
    /// it asks: each concept's target prompts, then the preservation prompts. A caller can generate these images ahead,
    /// in batches, and let its <see cref="ImageSource"/>s look them up.
    /// </summary>
    public static IReadOnlyList<EvalPrompt> PromptsOf(EvalCase evalCase, EvalOptions options)
    {
        ArgumentNullException.ThrowIfNull(evalCase);
        ArgumentNullException.ThrowIfNull(options);
        return evalCase.Concepts.SelectMany(concept => EvalPromptSets.Target(concept, options.ImagesPerSet, options.Seed, options.Wording))
            .Concat(EvalPromptSets.Preservation(evalCase.Concepts, options.ImagesPerSet, options.Seed, options.Wording))
            .ToArray();
    }

    /// <summary>Runs every case against <paramref name="baseline"/>.</summary>
    /// <exception cref="ArgumentException">No cases, a case without concepts, or unusable options.</exception>
    /// <exception cref="Spm.Core.SpmException">An image source returned an image of the wrong size.</exception>
    public EvalReport Run(
        IReadOnlyList<EvalCase> cases,
        EvalVariant baseline,
        EvalOptions? options = null,
        IProgress<EvalProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(cases);
        ArgumentNullException.ThrowIfNull(baseline);
        options ??= new EvalOptions();
        options.Validate();
        if (cases.Count == 0) throw new ArgumentException("Nothing to evaluate: no cases.");
        foreach (var c in cases)
        {
            if (c.Concepts.Count == 0) throw new ArgumentException($"Case '{c.Name}' erases no concept.");
            var names = c.Variants.Select(v => v.Name).Append(baseline.Name).ToArray();
            if (names.Distinct(StringComparer.Ordinal).Count() != names.Length)
                throw new ArgumentException($"Case '{c.Name}': variant names must be distinct and differ from the baseline's ('{baseline.Name}').");
        }

        int n = options.ImagesPerSet;
        var plans = cases.Select(c => new
        {
            Case = c,
            Targets = c.Concepts.Select(concept => EvalPromptSets.Target(concept, n, options.Seed, options.Wording)).ToArray(),
            Preservation = EvalPromptSets.Preservation(c.Concepts, n, options.Seed, options.Wording),
        }).ToArray();
        int total = plans.Sum(p => (p.Targets.Length + 1) * n * (1 + p.Case.Variants.Count));
        int done = 0;
        var baseCache = new Dictionary<(string, ulong), Judged>();
        var rows = new List<EvalRow>();
        var grids = new List<EvalGrid>();
        var records = new List<EvalImageRecord>();

        foreach (var plan in plans)
        {
            var c = plan.Case;
            var allPrompts = plan.Targets.SelectMany(t => t).Concat(plan.Preservation).ToArray();
            var variants = new[] { baseline }.Concat(c.Variants).ToArray();
            var images = new Dictionary<string, Judged[]>();
            foreach (var variant in variants)
            {
                bool isBase = ReferenceEquals(variant, baseline);
                var stage = $"{c.Name} / {variant.Name}";
                var judged = new Judged[allPrompts.Length];
                for (int i = 0; i < allPrompts.Length; i++)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    var prompt = allPrompts[i];
                    if (isBase && baseCache.TryGetValue((prompt.Text, prompt.Seed), out var cached)) judged[i] = cached;
                    else
                    {
                        var image = variant.Generate(prompt, cancellationToken);
                        int expected = 3 * options.ImageSize * options.ImageSize;
                        if (image is null || image.Length != expected)
                            throw new Spm.Core.SpmException($"Variant '{variant.Name}' returned {image?.Length ?? 0} values for \"{prompt.Text}\", expected {expected} (3 x {options.ImageSize} x {options.ImageSize}).");
                        judged[i] = new Judged(image, _evaluator.Evaluate(image, options.ImageSize));
                        if (isBase) baseCache[(prompt.Text, prompt.Seed)] = judged[i];
                    }
                    progress?.Report(new EvalProgress(++done, total, stage));
                }
                images[variant.Name] = judged;
            }

            var baseJudged = images[baseline.Name];
            int preservationStart = allPrompts.Length - plan.Preservation.Count;
            // Each variant's SSIM and PSNR against the base, once per image (every concept's row reads the same
            // preservation images; the per-image records also read the target images' SSIM).
            int firstCompared = options.RecordImages ? 0 : preservationStart;
            var ssimOf = new Dictionary<string, double[]>();
            var psnrOf = new Dictionary<string, double[]>();
            foreach (var variant in c.Variants)
            {
                var judged = images[variant.Name];
                var ssims = new double[allPrompts.Length];
                var psnrs = new double[allPrompts.Length];
                for (int i = firstCompared; i < allPrompts.Length; i++)
                {
                    ssims[i] = ImageMetrics.Ssim(judged[i].Image, baseJudged[i].Image, 3, options.ImageSize, options.ImageSize);
                    if (i >= preservationStart) psnrs[i] = Math.Min(options.PsnrCapDb, ImageMetrics.Psnr(judged[i].Image, baseJudged[i].Image));
                }
                ssimOf[variant.Name] = ssims;
                psnrOf[variant.Name] = psnrs;
            }
            for (int k = 0; k < c.Concepts.Count; k++)
            {
                var concept = c.Concepts[k];
                foreach (var variant in variants)
                {
                    bool isBase = ReferenceEquals(variant, baseline);
                    var judged = images[variant.Name];
                    int detected = 0;
                    for (int i = k * n; i < (k + 1) * n; i++) if (concept.IsDetectedIn(judged[i].Judgement)) detected++;
                    int preserved = 0;
                    double ssim = 0, psnr = 0;
                    for (int i = preservationStart; i < allPrompts.Length; i++)
                    {
                        if (judged[i].Judgement.Matches(allPrompts[i].Prompt)) preserved++;
                        if (isBase) continue;
                        ssim += ssimOf[variant.Name][i];
                        psnr += psnrOf[variant.Name][i];
                    }
                    int m = plan.Preservation.Count;
                    var kept = Enumerable.Range(preservationStart, m).Select(i => (allPrompts[i].Prompt, judged[i].Judgement)).ToArray();
                    rows.Add(new EvalRow(c.Name, concept.Name, variant.Name, n, detected / (double)n, m, preserved / (double)m,
                        isBase ? null : ssim / m, isBase ? null : psnr / m)
                    {
                        InDomainRetainAccuracy = RetainAccuracy.InDomain(concept, kept),
                        CrossDomainRetainAccuracy = RetainAccuracy.CrossDomain(concept, kept),
                    });
                }
            }

            if (options.RecordImages)
                foreach (var variant in variants)
                {
                    bool isBase = ReferenceEquals(variant, baseline);
                    var judged = images[variant.Name];
                    for (int i = 0; i < allPrompts.Length; i++)
                    {
                        var j = judged[i].Judgement;
                        var target = i < preservationStart ? c.Concepts[i / n] : null;
                        records.Add(new EvalImageRecord(c.Name, variant.Name, target is null ? "preservation" : "target", target?.Name,
                            allPrompts[i].Text, allPrompts[i].Seed, j.FoundObject, j.Shape.Value, j.Color.Value, j.Pattern.Value, j.Background.Value,
                            j.Matches(allPrompts[i].Prompt), c.Concepts.Where(k => k.IsDetectedIn(j)).Select(k => k.Name).ToArray(),
                            isBase ? null : ssimOf[variant.Name][i]));
                    }
                }

            if (options.GridPromptsPerSet > 0)
                grids.Add(BuildGrid(c, variants, images, plan.Targets, plan.Preservation, preservationStart, options));
        }
        return new EvalReport(options, rows, grids) { Images = records };
    }

    private static EvalGrid BuildGrid(
        EvalCase c, EvalVariant[] variants, Dictionary<string, Judged[]> images, IReadOnlyList<EvalPrompt>[] targets,
        IReadOnlyList<EvalPrompt> preservation, int preservationStart, EvalOptions options)
    {
        int n = options.ImagesPerSet, g = Math.Min(options.GridPromptsPerSet, n);
        var indices = new List<int>();
        for (int k = 0; k < targets.Length; k++) indices.AddRange(Enumerable.Range(k * n, g));
        indices.AddRange(Enumerable.Range(preservationStart, Math.Min(g, preservation.Count)));
        var cells = new List<float[]?>();
        var labels = new List<string>();
        var all = targets.SelectMany(t => t).Concat(preservation).ToArray();
        foreach (var i in indices)
        {
            labels.Add(all[i].Text);
            foreach (var v in variants) cells.Add(images[v.Name][i].Image);
        }
        var (grid, h, w) = ImageGrid.Compose(cells, indices.Count, variants.Length, options.ImageSize, options.ImageSize);
        return new EvalGrid(c.Name, variants.Select(v => v.Name).ToArray(), labels, grid, h, w);
    }

    private readonly record struct Judged(float[] Image, ShapeJudgement Judgement);
}
