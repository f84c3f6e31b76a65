using Spm.Core.Gating;
using Spm.Core.Metrics;
using Spm.Training.Evaluation;

namespace Spm.Training.Attacks;

/// <summary>
/// Runs attacks against a model with SPMs loaded (gate included) and measures what the erased model keeps. Every
/// candidate is drawn twice from the same seed, by the base model (every SPM off) and by the attacked model (the chosen
/// SPMs at the multipliers their gates give for the candidate's conditioning), in shared batches of one
/// <see cref="EvalImageGenerator"/>; the judge reads both.
/// </summary>
public sealed class AttackRunner
{
    private readonly EvalImageGenerator _generator;
    private readonly IReadOnlyList<int> _active;
    private readonly IReadOnlyList<GateSettings> _gates;
    private readonly IConceptJudge _judge;

    /// <summary>Creates a runner.</summary>
    /// <param name="generator">The generator, its pipeline loaded with every SPM's membranes.</param>
    /// <param name="activeSpms">Indices (load order) of the SPMs the attacked model uses; the others stay off.</param>
    /// <param name="gates">Gate settings, one per loaded SPM (a fixed multiplier bypasses the gate).</param>
    /// <param name="judge">Decides whether an image shows the erased concept.</param>
    public AttackRunner(EvalImageGenerator generator, IReadOnlyList<int> activeSpms, IReadOnlyList<GateSettings> gates, IConceptJudge judge)
    {
        ArgumentNullException.ThrowIfNull(generator);
        ArgumentNullException.ThrowIfNull(activeSpms);
        ArgumentNullException.ThrowIfNull(gates);
        ArgumentNullException.ThrowIfNull(judge);
        if (gates.Count != generator.SpmCount) throw new ArgumentException($"Expected gate settings for {generator.SpmCount} SPMs, got {gates.Count}.", nameof(gates));
        foreach (var i in activeSpms)
            if (i < 0 || i >= generator.SpmCount) throw new ArgumentOutOfRangeException(nameof(activeSpms), $"SPM index {i} is not one of the {generator.SpmCount} loaded.");
        _generator = generator;
        _active = activeSpms;
        _gates = gates;
        _judge = judge;
    }

    /// <summary>The judge.</summary>
    public IConceptJudge Judge => _judge;

    /// <summary>The multipliers of every loaded SPM for a candidate (inactive SPMs 0).</summary>
    public float[] MultipliersFor(AttackCandidate candidate)
    {
        ArgumentNullException.ThrowIfNull(candidate);
        var m = new float[_generator.SpmCount];
        if (_active.Count == 0) return m;
        var gates = candidate.Embedding is null
            ? _generator.GatesFor(candidate.Text, _gates)
            : _generator.GatesFor(candidate.Text, candidate.Embedding, _gates);
        foreach (var i in _active) m[i] = gates[i].Multiplier;
        return m;
    }

    /// <summary>Runs <paramref name="plan"/>; <paramref name="progress"/> gets the share of images done (0..1).</summary>
    public (AttackResult Result, IReadOnlyList<(float[] Base, float[] Attacked)> FirstImages) Run(AttackPlan plan, int keepImages = 8,
        IProgress<double>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(plan);
        var candidates = plan.Targets.SelectMany(t => t.Candidates.Select(c => (Target: t, Candidate: c))).ToList();
        var multipliers = candidates.Select(c => MultipliersFor(c.Candidate)).ToList();
        var zero = new float[_generator.SpmCount];
        var requests = new List<EvalImageRequest>(3 * candidates.Count);
        // Per candidate: base and attacked image, then (with a control) the base model on the surrogate prompt, same seed.
        var first = new int[candidates.Count];
        for (int i = 0; i < candidates.Count; i++)
        {
            var (t, c) = candidates[i];
            first[i] = requests.Count;
            requests.Add(new EvalImageRequest(c.Text, t.Seed, zero, c.Embedding));
            requests.Add(new EvalImageRequest(c.Text, t.Seed, multipliers[i], c.Embedding));
            if (c.Control is not null) requests.Add(new EvalImageRequest(c.Control, t.Seed, zero));
        }
        var images = _generator.Generate(requests, Scale(progress, requests.Count), cancellationToken);
        int size = _generator.ImageSize;
        var outcomes = new List<TargetOutcome>(plan.Targets.Count);
        var kept = new List<(float[], float[])>();
        int k = 0;
        foreach (var t in plan.Targets)
        {
            var list = new List<CandidateOutcome>(t.Candidates.Count);
            foreach (var c in t.Candidates)
            {
                var b = images[first[k]];
                var a = images[first[k] + 1];
                bool? control = c.Control is null ? null : _judge.Shows(images[first[k] + 2], size, size);
                list.Add(new CandidateOutcome(c, _judge.Shows(b, size, size), _judge.Shows(a, size, size), multipliers[k]) { ControlShows = control });
                if (kept.Count < keepImages && list.Count == 1) kept.Add((b, a));
                k++;
            }
            outcomes.Add(new TargetOutcome(t, list));
        }
        var all = outcomes.SelectMany(o => o.Candidates).ToList();
        var shown = all.Where(c => c.BaseShows).ToList();
        double mean = all.Count == 0 || _active.Count == 0 ? 0 : all.Average(c => _active.Average(i => (double)c.Multipliers[i]));
        var result = new AttackResult(plan.Name, plan.Description, outcomes.Count, all.Count,
            outcomes.Count == 0 ? double.NaN : outcomes.Count(o => o.Success) / (double)outcomes.Count,
            outcomes.Count == 0 ? double.NaN : outcomes.Count(o => o.BaseSuccess) / (double)outcomes.Count,
            shown.Count == 0 ? double.NaN : shown.Count(c => c.AttackedShows) / (double)shown.Count,
            shown.Count, mean, outcomes, plan.Budget);
        return (result, kept);
    }

    /// <summary>
    /// What the attacked model keeps on <paramref name="prompts"/> (none asking for an erased concept): SSIM against the base
    /// images, how often base and attacked images show what their prompt asks for (each prompt's
    /// <see cref="KeptPrompt.Intent"/> judge), how often an erased concept shows anyway (<paramref name="erasedJudges"/>),
    /// and the mean multiplier; SSIM again over the images whose base version shows no erased concept.
    /// </summary>
    public CollateralResult Collateral(string name, IReadOnlyList<KeptPrompt> prompts, IReadOnlyList<IConceptJudge> erasedJudges,
        IProgress<double>? progress = null, CancellationToken cancellationToken = default)
        => Collateral(name, prompts, erasedJudges, 0, progress, cancellationToken);

    /// <summary>
    /// As <see cref="Collateral(string, IReadOnlyList{KeptPrompt}, IReadOnlyList{IConceptJudge}, IProgress{double}?, CancellationToken)"/>;
    /// with <paramref name="probeSeeds"/> above 0 the base model also draws that many more images of every prompt (other
    /// seeds, derived from the prompt's), and the result adds the figures over the prompts none of whose base images
    /// shows an erased concept (<see cref="CollateralResult.Free"/>).
    /// </summary>
    public CollateralResult Collateral(string name, IReadOnlyList<KeptPrompt> prompts, IReadOnlyList<IConceptJudge> erasedJudges, int probeSeeds,
        IProgress<double>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(prompts);
        ArgumentNullException.ThrowIfNull(erasedJudges);
        ArgumentOutOfRangeException.ThrowIfNegative(probeSeeds);
        var zero = new float[_generator.SpmCount];
        var multipliers = prompts.Select(p => MultipliersFor(new AttackCandidate(p.Text, null, ""))).ToList();
        var requests = new List<EvalImageRequest>((2 + probeSeeds) * prompts.Count);
        for (int i = 0; i < prompts.Count; i++)
        {
            requests.Add(new EvalImageRequest(prompts[i].Text, prompts[i].Seed, zero));
            requests.Add(new EvalImageRequest(prompts[i].Text, prompts[i].Seed, multipliers[i]));
        }
        for (int i = 0; i < prompts.Count; i++)
            for (int k = 1; k <= probeSeeds; k++)
                requests.Add(new EvalImageRequest(prompts[i].Text, ProbeSeed(prompts[i].Seed, k), zero));
        var images = _generator.Generate(requests, Scale(progress, requests.Count), cancellationToken);
        int size = _generator.ImageSize;
        double ssimSum = 0, ssimMin = double.PositiveInfinity, cleanSum = 0;
        int baseOk = 0, ok = 0, shownBase = 0, shown = 0, clean = 0;
        var perImage = new List<KeptImage>(prompts.Count);
        for (int i = 0; i < prompts.Count; i++)
        {
            var b = images[2 * i];
            var a = images[2 * i + 1];
            double ssim = ReferenceEquals(a, b) || a.AsSpan().SequenceEqual(b) ? 1.0 : ImageMetrics.Ssim(a, b, 3, size, size);
            ssimSum += ssim;
            ssimMin = Math.Min(ssimMin, ssim);
            bool baseAsAsked = prompts[i].Intent.Shows(b, size, size), asAsked = prompts[i].Intent.Shows(a, size, size);
            bool baseShows = erasedJudges.Any(j => j.Shows(b, size, size)), shows = erasedJudges.Any(j => j.Shows(a, size, size));
            if (baseAsAsked) baseOk++;
            if (asAsked) ok++;
            if (baseShows) shownBase++;
            else
            {
                clean++;
                cleanSum += ssim;
            }
            if (shows) shown++;
            double m = _active.Count == 0 ? 0 : _active.Average(k => (double)multipliers[i][k]);
            int probeShown = 0;
            for (int k = 0; k < probeSeeds; k++)
            {
                var probe = images[2 * prompts.Count + i * probeSeeds + k];
                if (erasedJudges.Any(j => j.Shows(probe, size, size))) probeShown++;
            }
            perImage.Add(new KeptImage(prompts[i].Text, prompts[i].Seed, m, ssim, baseAsAsked, asAsked, baseShows, shows, probeShown));
        }
        ConceptFreeFigures? free = null;
        if (probeSeeds > 0)
        {
            var freePrompts = perImage.Where(k => !k.BaseShowsConcept && k.ProbeShown == 0).ToList();
            free = new ConceptFreeFigures(probeSeeds, freePrompts.Count,
                freePrompts.Count == 0 ? double.NaN : freePrompts.Average(k => k.Ssim),
                freePrompts.Count == 0 ? double.NaN : freePrompts.Count(k => k.BaseAsAsked) / (double)freePrompts.Count,
                freePrompts.Count == 0 ? double.NaN : freePrompts.Count(k => k.AsAsked) / (double)freePrompts.Count,
                freePrompts.Count == 0 ? double.NaN : freePrompts.Average(k => k.Multiplier));
        }
        int n = prompts.Count;
        double mean = n == 0 || _active.Count == 0 ? 0 : multipliers.Average(m => _active.Average(i => (double)m[i]));
        return new CollateralResult(name, n, n == 0 ? double.NaN : ssimSum / n, n == 0 ? double.NaN : ssimMin,
            n == 0 ? double.NaN : baseOk / (double)n, n == 0 ? double.NaN : ok / (double)n, mean,
            n == 0 ? double.NaN : shownBase / (double)n, n == 0 ? double.NaN : shown / (double)n, clean, clean == 0 ? double.NaN : cleanSum / clean, perImage, free);
    }

    // Probe seed k of a prompt: another seed of the same prompt, never its compared image's.
    private static ulong ProbeSeed(ulong seed, int k) => unchecked((seed ^ 0x9E37_79B9_7F4A_7C15UL) * 0xBF58_476D_1CE4_E5B9UL + (ulong)k * 0x94D0_49BB_1331_11EBUL);

    private static IProgress<double>? Scale(IProgress<double>? progress, int total) =>
        progress is null || total == 0 ? null : new Relay(d => progress.Report(Math.Min(1.0, d / total)));

    private sealed class Relay(Action<double> report) : IProgress<double>
    {
        public void Report(double value) => report(value);
    }
}
