using System.Diagnostics;
using Spm.Core;
using Spm.Core.Gating;
using Spm.Training.Evaluation;

namespace Spm.Shapes.Evaluation;

/// <summary>How an erased variant drives its SPMs.</summary>
public enum SpmDrive
{
    /// <summary>Facilitated transport: each SPM's multiplier is its gate for the prompt.</summary>
    Transport,

    /// <summary>Gate forced to 1: every SPM acts on every prompt at multiplier 1 (the "no transport" ablation).</summary>
    Always,
}

/// <summary>One erased variant: which SPMs of the generator act, and how.</summary>
/// <param name="Name">Row label ("erased", "erased, no transport", "erased, no anchoring").</param>
/// <param name="Spms">Indices of the acting SPMs in the generator's load order; the others are off (multiplier 0).</param>
/// <param name="Drive">Transport or a fixed multiplier of 1.</param>
public sealed record SpmVariantSpec(string Name, IReadOnlyList<int> Spms, SpmDrive Drive);

/// <summary>One evaluation case: concepts erased together and the variants that erase them.</summary>
/// <param name="Name">Case label ("circle", "circle + red + striped").</param>
/// <param name="Concepts">The concepts erased.</param>
/// <param name="Variants">The erased variants (the base model, every SPM off, is added by the evaluation).</param>
public sealed record SpmCaseSpec(string Name, IReadOnlyList<EvalConcept> Concepts, IReadOnlyList<SpmVariantSpec> Variants);

/// <summary>Where an SPM evaluation is: images generated so far (fractional while a batch denoises) of the total.</summary>
/// <param name="Done">Images generated.</param>
/// <param name="Total">Images to generate in all (each distinct prompt, seed and multiplier set once).</param>
/// <param name="Stage">What is going on ("circle: generating", "circle: reading").</param>
public readonly record struct SpmEvalProgress(double Done, int Total, string Stage);

/// <summary>What an SPM evaluation cost.</summary>
/// <param name="ImagesGenerated">Distinct images generated.</param>
/// <param name="ImagesRequested">Images the evaluation read (more than generated: base images serve several cases).</param>
/// <param name="Generation">Time spent generating.</param>
/// <param name="Reading">Time spent reading images (evaluator, SSIM, PSNR).</param>
public sealed record SpmEvalCost(int ImagesGenerated, int ImagesRequested, TimeSpan Generation, TimeSpan Reading);

/// <summary>
/// Erasure evaluation of SPMs on a real pipeline (what <c>spm eval</c> runs): turns case specs into
/// <see cref="EvalCase"/>s whose images come from one <see cref="EvalImageGenerator"/>, generates every distinct image
/// once, ahead of reading, in mixed batches (base and variants, several prompts per UNet call), and hands them to
/// <see cref="ErasureEvaluation"/>. Base images are shared by every case that asks for the same prompt and seed.
/// </summary>
public sealed class SpmErasureEvaluator
{
    /// <summary>Label of the erased variant with facilitated transport.</summary>
    public const string Erased = "erased";

    /// <summary>Label of the variant with the gate forced to 1.</summary>
    public const string NoTransport = "erased, no transport";

    /// <summary>Label of the variant with SPMs trained without latent anchoring.</summary>
    public const string NoAnchoring = "erased, no anchoring";

    /// <summary>Label of the base model.</summary>
    public const string Base = "base";

    private readonly EvalImageGenerator _generator;
    private readonly GateSettings _transport;
    private readonly ErasureEvaluation _evaluation;

    /// <summary>Creates an evaluator generating with <paramref name="generator"/>; <paramref name="transport"/> sets the gate curve and facilitate factor (default: square, 1).</summary>
    public SpmErasureEvaluator(EvalImageGenerator generator, GateSettings? transport = null, ErasureEvaluation? evaluation = null)
    {
        ArgumentNullException.ThrowIfNull(generator);
        if (transport?.FixedMultiplier is not null) throw new ArgumentException("Transport settings must not fix the multiplier.", nameof(transport));
        _generator = generator;
        _transport = transport ?? GateSettings.Default;
        _evaluation = evaluation ?? new ErasureEvaluation();
    }

    /// <summary>What the last <see cref="Evaluate"/> or <see cref="MeasureFidelity"/> cost.</summary>
    public SpmEvalCost? LastCost { get; private set; }

    /// <summary>
    /// The standard cases for SPMs loaded as <c>erasers ++ noAnchoring</c>: each eraser alone, then (with several) all
    /// erasers together. Every case has the variants <see cref="Erased"/> and <see cref="NoTransport"/>, and
    /// <see cref="NoAnchoring"/> when every concept of the case has a no-anchoring SPM.
    /// </summary>
    /// <param name="erasers">The concept of each erasing SPM (generator indices 0..E-1).</param>
    /// <param name="noAnchoring">The concept of each SPM trained without anchoring (generator indices E..E+A-1).</param>
    /// <exception cref="SpmException">No erasers, or two SPMs of one kind for the same concept.</exception>
    public static IReadOnlyList<SpmCaseSpec> StandardCases(IReadOnlyList<EvalConcept> erasers, IReadOnlyList<EvalConcept> noAnchoring)
    {
        ArgumentNullException.ThrowIfNull(erasers);
        ArgumentNullException.ThrowIfNull(noAnchoring);
        return StandardCasesBySpm(erasers.Select(c => (IReadOnlyList<EvalConcept>)[c]).ToArray(), noAnchoring.Select(c => (IReadOnlyList<EvalConcept>)[c]).ToArray());
    }

    /// <summary>
    /// The standard cases when an SPM may erase several concepts (a family membrane, <c>spm train --concept-family</c>):
    /// as <see cref="StandardCases(IReadOnlyList{EvalConcept}, IReadOnlyList{EvalConcept})"/>, each SPM's case holding
    /// all its concepts (a row per member: its UA, and IRA/CRA on prompts that ask for no member). A family case is named
    /// by its members joined with " + "; in the all-together case a family's names are in parentheses. A no-anchoring
    /// SPM pairs with the eraser of the same concept set.
    /// </summary>
    /// <param name="erasers">The concepts of each erasing SPM (generator indices 0..E-1), one or more each.</param>
    /// <param name="noAnchoring">The concepts of each SPM trained without anchoring (generator indices E..E+A-1).</param>
    /// <exception cref="SpmException">No erasers, an SPM with no concept, a concept erased by two SPMs of one kind, or a no-anchoring SPM whose concepts no eraser has.</exception>
    public static IReadOnlyList<SpmCaseSpec> StandardCasesBySpm(IReadOnlyList<IReadOnlyList<EvalConcept>> erasers, IReadOnlyList<IReadOnlyList<EvalConcept>> noAnchoring)
    {
        ArgumentNullException.ThrowIfNull(erasers);
        ArgumentNullException.ThrowIfNull(noAnchoring);
        if (erasers.Count == 0) throw new SpmException("Nothing to evaluate: no erasing SPM given.");
        if (erasers.Concat(noAnchoring).Any(set => set.Count == 0)) throw new ArgumentException("Every SPM needs at least one concept.");
        CheckDistinct(erasers.SelectMany(s => s).ToArray(), "erasing SPMs");
        CheckDistinct(noAnchoring.SelectMany(s => s).ToArray(), "no-anchoring SPMs");
        static bool SameSet(IReadOnlyList<EvalConcept> a, IReadOnlyList<EvalConcept> b) => a.Count == b.Count && a.All(b.Contains);
        static string Label(IReadOnlyList<EvalConcept> set) => string.Join(" + ", set.Select(c => c.Name));
        foreach (var set in noAnchoring)
            if (!erasers.Any(e => SameSet(e, set)))
                throw new SpmException($"The no-anchoring SPM for '{Label(set)}' has no erasing SPM to compare with (concepts erased: {string.Join(", ", erasers.Select(Label))}).");

        SpmCaseSpec Case(string name, IReadOnlyList<int> indices)
        {
            var concepts = indices.SelectMany(i => erasers[i]).ToArray();
            var variants = new List<SpmVariantSpec>
            {
                new(Erased, indices, SpmDrive.Transport),
                new(NoTransport, indices, SpmDrive.Always),
            };
            var ablation = indices.Select(i => noAnchoring.ToList().FindIndex(set => SameSet(set, erasers[i]))).ToArray();
            if (ablation.All(i => i >= 0))
                variants.Add(new SpmVariantSpec(NoAnchoring, ablation.Select(i => erasers.Count + i).ToArray(), SpmDrive.Transport));
            return new SpmCaseSpec(name, concepts, variants);
        }

        var cases = new List<SpmCaseSpec>();
        for (int i = 0; i < erasers.Count; i++) cases.Add(Case(Label(erasers[i]), [i]));
        if (erasers.Count > 1)
            cases.Add(Case(string.Join(" + ", erasers.Select(e => e.Count == 1 ? e[0].Name : $"({Label(e)})")), Enumerable.Range(0, erasers.Count).ToArray()));
        return cases;
    }

    private static void CheckDistinct(IReadOnlyList<EvalConcept> concepts, string what)
    {
        var twice = concepts.GroupBy(c => c).FirstOrDefault(g => g.Count() > 1);
        if (twice is not null) throw new SpmException($"Two {what} erase '{twice.Key.Name}': give one per concept.");
    }

    /// <summary>The multiplier of every SPM for <paramref name="prompt"/> under <paramref name="variant"/> (null: the base model, all 0).</summary>
    public float[] MultipliersFor(SpmVariantSpec? variant, string prompt)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        var m = new float[_generator.SpmCount];
        if (variant is null) return m;
        foreach (var i in variant.Spms)
            if ((uint)i >= (uint)m.Length) throw new ArgumentException($"Variant '{variant.Name}' uses SPM {i}; the generator has {m.Length}.", nameof(variant));
        if (variant.Drive == SpmDrive.Always)
        {
            foreach (var i in variant.Spms) m[i] = 1f;
            return m;
        }
        var off = new GateSettings(FixedMultiplier: 0f);
        var settings = Enumerable.Range(0, m.Length).Select(i => variant.Spms.Contains(i) ? _transport : off).ToArray();
        var gates = _generator.GatesFor(prompt, settings);
        for (int i = 0; i < m.Length; i++) m[i] = gates[i].Multiplier;
        return m;
    }

    /// <summary>Runs every case: generation in batches, then <see cref="ErasureEvaluation.Run"/>, one case at a time.</summary>
    /// <exception cref="ArgumentException">No cases, bad options, or options whose image size is not the generator's.</exception>
    public EvalReport Evaluate(IReadOnlyList<SpmCaseSpec> cases, EvalOptions options, IProgress<SpmEvalProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(cases);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (cases.Count == 0) throw new ArgumentException("Nothing to evaluate: no cases.");
        if (options.ImageSize != _generator.ImageSize)
            throw new ArgumentException($"The options ask for {options.ImageSize}-pixel images; the generator makes {_generator.ImageSize}.");

        // Plan every request Run will make, as Run makes them (cases run one at a time, base once per prompt and seed
        // within a case), so each distinct image is generated once and dropped from memory after its last use.
        var cache = new ImageCache();
        var caseJobs = new List<(EvalCase Case, List<ImageKey> Keys)>();
        // Each (case, variant, prompt)'s multipliers as planned, for the per-image records (no second read of the gates).
        var planned = new Dictionary<(string Case, string Variant, string Prompt), float[]>();
        foreach (var spec in cases)
        {
            var keys = new List<ImageKey>();
            var baseSeen = new HashSet<(string, ulong)>();
            var probe = new EvalCase(spec.Name, spec.Concepts, []);
            var prompts = ErasureEvaluation.PromptsOf(probe, options);
            foreach (var p in prompts)
                if (baseSeen.Add((p.Text, p.Seed))) keys.Add(cache.Plan(p, MultipliersFor(null, p.Text)));
            foreach (var v in spec.Variants)
                foreach (var p in prompts)
                {
                    var multipliers = MultipliersFor(v, p.Text);
                    if (options.RecordImages) planned[(spec.Name, v.Name, p.Text)] = multipliers;
                    keys.Add(cache.Plan(p, multipliers));
                }
            var variants = spec.Variants.Select(v => new EvalVariant(v.Name, Source(cache, v))).ToArray();
            caseJobs.Add((new EvalCase(spec.Name, spec.Concepts, variants), keys));
        }
        var baseline = new EvalVariant(Base, Source(cache, null));

        int total = cache.Distinct;
        double done = 0;
        var generation = new Stopwatch();
        var reading = new Stopwatch();
        var rows = new List<EvalRow>();
        var grids = new List<EvalGrid>();
        var records = new List<EvalImageRecord>();
        foreach (var (evalCase, keys) in caseJobs)
        {
            generation.Start();
            var todo = keys.Where(cache.NeedsGenerating).Distinct().ToArray();
            cache.MarkScheduled(todo);
            var stage = $"{evalCase.Name}: generating";
            double before = done;
            var images = _generator.Generate(todo.Select(k => k.Request).ToArray(),
                new InlineProgress<double>(d => progress?.Report(new SpmEvalProgress(before + d, total, stage))), cancellationToken);
            for (int i = 0; i < todo.Length; i++) cache.Store(todo[i], images[i]);
            done += todo.Length;
            generation.Stop();

            reading.Start();
            progress?.Report(new SpmEvalProgress(done, total, $"{evalCase.Name}: reading"));
            var report = _evaluation.Run([evalCase], baseline, options, null, cancellationToken);
            rows.AddRange(report.Rows);
            grids.AddRange(report.Grids);
            records.AddRange(report.Images.Select(r => r with
            {
                Multipliers = r.Variant == Base ? new float[_generator.SpmCount] : planned[(r.Case, r.Variant, r.Prompt)],
            }));
            reading.Stop();
        }
        LastCost = new SpmEvalCost(total, cache.Requested, generation.Elapsed, reading.Elapsed);
        return new EvalReport(options, rows, grids) { Images = records };
    }

    /// <summary>Base-model fidelity on <paramref name="count"/> random captions (<see cref="FidelityEvaluation"/>), generated in batches with every SPM off.</summary>
    /// <param name="count">Captions.</param>
    /// <param name="seed">Seed of the captions and image seeds.</param>
    /// <param name="progress">Receives progress.</param>
    /// <param name="cancellationToken">Stops the run.</param>
    /// <param name="wording">How the captions are worded (same intents and seeds).</param>
    public FidelityResult MeasureFidelity(int count, ulong seed, IProgress<SpmEvalProgress>? progress = null, CancellationToken cancellationToken = default,
        PromptWording wording = PromptWording.Canonical)
    {
        var prompts = FidelityEvaluation.Prompts(count, seed, wording);
        var cache = new ImageCache();
        var keys = prompts.Select(p => cache.Plan(p, MultipliersFor(null, p.Text))).ToList();
        var todo = keys.Distinct().ToArray();
        cache.MarkScheduled(todo);
        var generation = Stopwatch.StartNew();
        var images = _generator.Generate(todo.Select(k => k.Request).ToArray(),
            new InlineProgress<double>(d => progress?.Report(new SpmEvalProgress(d, todo.Length, "fidelity: generating"))), cancellationToken);
        for (int i = 0; i < todo.Length; i++) cache.Store(todo[i], images[i]);
        generation.Stop();
        var reading = Stopwatch.StartNew();
        progress?.Report(new SpmEvalProgress(todo.Length, todo.Length, "fidelity: reading"));
        var result = FidelityEvaluation.Measure(Source(cache, null), count, seed, _generator.ImageSize, _evaluation.Evaluator, cancellationToken: cancellationToken, wording: wording);
        reading.Stop();
        LastCost = new SpmEvalCost(todo.Length, cache.Requested, generation.Elapsed, reading.Elapsed);
        return result;
    }

    private ImageSource Source(ImageCache cache, SpmVariantSpec? variant) => (prompt, ct) =>
    {
        var key = new ImageKey(prompt.Text, prompt.Seed, MultipliersFor(variant, prompt.Text));
        // A request nobody planned (a change in how the evaluation asks) is still answered correctly, one at a time.
        return cache.Take(key) ?? _generator.Generate([key.Request], null, ct)[0];
    };

    /// <summary>A distinct image: prompt, seed and multipliers (compared bit for bit).</summary>
    private sealed class ImageKey(string prompt, ulong seed, float[] multipliers) : IEquatable<ImageKey>
    {
        private readonly int[] _bits = multipliers.Select(BitConverter.SingleToInt32Bits).ToArray();

        public EvalImageRequest Request { get; } = new(prompt, seed, multipliers);

        public bool Equals(ImageKey? other) =>
            other is not null && other.Request.Seed == Request.Seed && other.Request.Prompt == Request.Prompt && other._bits.AsSpan().SequenceEqual(_bits);

        public override bool Equals(object? obj) => Equals(obj as ImageKey);

        public override int GetHashCode()
        {
            var h = new HashCode();
            h.Add(Request.Prompt);
            h.Add(Request.Seed);
            foreach (var b in _bits) h.Add(b);
            return h.ToHashCode();
        }
    }

    /// <summary>
    /// Planned images with use counts: each image is generated once, kept as 8-bit values (exact: the generator's images
    /// are 8-bit values / 255) and dropped after its last planned use, so memory holds only what is still to be read.
    /// </summary>
    private sealed class ImageCache
    {
        private readonly Dictionary<ImageKey, int> _uses = [];
        private readonly Dictionary<ImageKey, byte[]> _images = [];
        private readonly HashSet<ImageKey> _scheduled = [];

        public int Distinct => _uses.Count;

        public int Requested { get; private set; }

        public ImageKey Plan(EvalPrompt prompt, float[] multipliers)
        {
            var key = new ImageKey(prompt.Text, prompt.Seed, multipliers);
            _uses[key] = _uses.GetValueOrDefault(key) + 1;
            return key;
        }

        public bool NeedsGenerating(ImageKey key) => !_scheduled.Contains(key);

        public void MarkScheduled(IEnumerable<ImageKey> keys) => _scheduled.UnionWith(keys);

        public void Store(ImageKey key, float[] image)
        {
            var bytes = new byte[image.Length];
            for (int i = 0; i < image.Length; i++) bytes[i] = (byte)Math.Clamp(MathF.Round(image[i] * 255f), 0f, 255f);
            _images[key] = bytes;
        }

        public float[]? Take(ImageKey key)
        {
            Requested++;
            if (!_images.TryGetValue(key, out var bytes)) return null;
            if (--_uses[key] <= 0) _images.Remove(key);
            var image = new float[bytes.Length];
            for (int i = 0; i < bytes.Length; i++) image[i] = bytes[i] / 255f;
            return image;
        }
    }

    private sealed class InlineProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
