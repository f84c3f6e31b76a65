namespace Spm.Training.LatentAnchoring;

/// <summary>What the trainer optimises (the reference code's <c>action</c>).</summary>
public enum TrainingAction
{
    /// <summary><c>L_era + lambda * L_anc</c>: erasure with latent anchoring (the method).</summary>
    EraseWithAnchoring,

    /// <summary><c>L_era</c> only: the ablation without anchoring.</summary>
    Erase,
}

/// <summary>
/// Every knob of latent-anchoring training (spec section 2), with the spec's defaults.
/// </summary>
public sealed record LatentAnchoringOptions
{
    /// <summary>The target concept to erase (c_tar).</summary>
    public required string Concept { get; init; }

    /// <summary>
    /// The prompt whose prediction defines the erasure direction; the reference layout's <c>positive</c>.
    /// Null means the same as <see cref="Concept"/>.
    /// </summary>
    public string? Positive { get; init; }

    /// <summary>The surrogate concept c_sur (the reference layout's <c>neutral</c>); default the empty prompt.</summary>
    public string Surrogate { get; init; } = "";

    /// <summary>The unconditional prompt used by classifier-free guidance while sampling x.</summary>
    public string Unconditional { get; init; } = "";

    /// <summary>Erasing guidance eta (the reference layout's <c>guidance_scale</c>).</summary>
    public double Eta { get; init; } = 1.0;

    /// <summary>Anchoring strength lambda (<c>la_strength</c>); 1000 for SD 1.x.</summary>
    public double AnchorStrength { get; init; } = 1000.0;

    /// <summary>Erase with or without anchoring.</summary>
    public TrainingAction Action { get; init; } = TrainingAction.EraseWithAnchoring;

    /// <summary>Number of anchors drawn per iteration (<c>sampling_batch_size</c>).</summary>
    public int AnchorCount { get; init; } = 4;

    /// <summary>
    /// Reproduce the reference implementation's anchor batch exactly: only half of the anchors are random,
    /// the other half are copies of E("") (see the spec, section 2.5).
    /// </summary>
    public bool ReferenceQuirk { get; init; }

    /// <summary>Training iterations.</summary>
    public int Iterations { get; init; } = 3000;

    /// <summary>Peak learning rate of AdamW.</summary>
    public double LearningRate { get; init; } = 1e-4;

    /// <summary>AdamW weight decay.</summary>
    public double WeightDecay { get; init; } = 0.01;

    /// <summary>
    /// AdamW epsilon (1e-8 as in the reference). It matters when gradients are tiny: where <c>sqrt(v)</c> falls below
    /// epsilon the update is no longer normalised and shrinks with the gradient (on the random-weight fixture, gradients
    /// are ~1e-9..1e-6).
    /// </summary>
    public double AdamEpsilon { get; init; } = 1e-8;

    /// <summary>Linear warm-up steps of the learning rate.</summary>
    public int WarmupSteps { get; init; } = 500;

    /// <summary>Hard restarts of the cosine schedule after warm-up.</summary>
    public int CosineCycles { get; init; } = 3;

    /// <summary>Membrane rank.</summary>
    public int Rank { get; init; } = 1;

    /// <summary>Membrane alpha (scale = alpha / rank).</summary>
    public double Alpha { get; init; } = 1.0;

    /// <summary>Nominal resolution in pixels; latent sizes are drawn from {res/2, res/2+64, ..., res-64}.</summary>
    public int Resolution { get; init; } = 512;

    /// <summary>Draw height and width per iteration (the reference's <c>dynamic_resolution</c>); false = always the nominal size.</summary>
    public bool DynamicResolution { get; init; } = true;

    /// <summary>Batch size (prompts per iteration). Only 1 is supported, as in the reference configs.</summary>
    public int BatchSize { get; init; } = 1;

    /// <summary>DDIM sampling steps of the schedule x is drawn from (k is drawn in 1..steps-1).</summary>
    public int SamplingSteps { get; init; } = 30;

    /// <summary>Classifier-free guidance scale while sampling x.</summary>
    public double SamplingGuidance { get; init; } = 3.0;

    /// <summary>
    /// How the query timestep is chosen from k: <see cref="QueryTimestepMode.Reference"/> uses
    /// <c>999 - floor(k*1000/steps)</c> (slightly noisier than x), <see cref="QueryTimestepMode.Exact"/> the DDIM timestep x sits at.
    /// </summary>
    public QueryTimestepMode QueryTimestep { get; init; } = QueryTimestepMode.Reference;

    /// <summary>Random seed for everything (noise, k, sizes, anchors, initialisation).</summary>
    public ulong Seed { get; init; } = 0;

    /// <summary>Save a checkpoint every this many iterations (0 = never).</summary>
    public int CheckpointEvery { get; init; } = 500;

    /// <summary>
    /// Also measure the erasure loss on a fixed probe every iteration (see <see cref="ErasureProbeInfo"/>): the same x
    /// and t for 5 fixed k, logged next to the training loss. A measurement only: it uses a generator of its own and
    /// never changes the training objective or the result.
    /// </summary>
    public bool ErasureProbe { get; init; }

    /// <summary>Render a preview grid every this many iterations (0 = never).</summary>
    public int PreviewEvery { get; init; }

    /// <summary>
    /// Prompts of the preview grid besides the concept (one row each, base | with the membrane). Null means a small
    /// built-in set of unrelated prompts. Previews do not touch the training state: they do not change the result.
    /// </summary>
    public IReadOnlyList<string>? PreviewPrompts { get; init; }

    /// <summary>DDIM steps of the preview images.</summary>
    public int PreviewSteps { get; init; } = 20;

    /// <summary>Classifier-free guidance scale of the preview images.</summary>
    public double PreviewGuidance { get; init; } = 7.5;

    /// <summary>The preview rows: the concept first, then <see cref="PreviewPrompts"/> or the built-in set.</summary>
    public IReadOnlyList<string> PreviewRows => [Concept, .. PreviewPrompts ?? DefaultPreviewPrompts];

    /// <summary>Unrelated prompts shown by default next to the concept (what anchoring should keep unchanged).</summary>
    public static IReadOnlyList<string> DefaultPreviewPrompts { get; } = ["a photo of a dog", "a landscape painting", "a red car on a street"];

    /// <summary>
    /// Robust mode: adversarial phrasings of the concept (e.g. free tokens a gradient attack found before it). Each
    /// iteration takes one of them, with probability <see cref="AdversarialShare"/>, as the erased row's conditioning in
    /// place of the concept's, against the same target (the concept's own surrogate-guided prediction), so the membrane
    /// learns to erase them too. Latent anchoring is unchanged. Null or empty: ordinary training.
    /// </summary>
    public IReadOnlyList<string>? AdversarialPrompts { get; init; }

    /// <summary>Share of iterations that train on an adversarial prompt when there are some (robust mode).</summary>
    public double AdversarialShare { get; init; } = 0.5;

    /// <summary>Start from this SPM file's membranes instead of fresh ones (same layers and rank); null: fresh.</summary>
    public string? InitialSpm { get; init; }

    /// <summary>
    /// Growing a library: SPM files already erasing other concepts (a library's files). They are loaded frozen next to
    /// the trained membrane, each at its facilitated-transport gate for the row's prompt, so every prediction (sampling
    /// x, the frozen targets, the trained rows) is the combined model's; and each file's prompts join the anchors
    /// every iteration (with anchoring on), so the new membrane learns to leave the already erased concepts as the
    /// library erases them. Null or empty: ordinary training.
    /// </summary>
    public IReadOnlyList<string>? LibrarySpms { get; init; }

    /// <summary>
    /// Family anchors (from a concept atlas, <c>spm train --anchors-from-atlas</c>): concept prompts to anchor instead of
    /// the spec's random anchors. Each iteration draws <see cref="AnchorCount"/> of them without replacement from the run's
    /// generator (all of them, in order, when there are no more); the anchoring loss and its weight are unchanged.
    /// Null: the spec's random anchors.
    /// </summary>
    public IReadOnlyList<string>? AnchorPrompts { get; init; }

    /// <summary>
    /// Erasing a family (<c>spm train --concept-family</c>): every prompt of the family is a target. Each iteration
    /// draws one of them uniformly; x is sampled with it, and its own erasure target
    /// <c>eps(c_sur) - eta (eps(c) - eps(c_sur))</c> is matched on it. The SPM file lists every family prompt as its
    /// concepts (the gate opens on any of them); <see cref="Concept"/> names the run (the probe and previews use it).
    /// Null: the single concept.
    /// </summary>
    public IReadOnlyList<string>? FamilyPrompts { get; init; }

    /// <summary>
    /// Paired erasure (<c>spm train --pairs</c>): the concept in context, each phrasing with its own surrogate ("a red
    /// striped circle" towards "a red plain circle"). Each iteration draws one pair uniformly; x is sampled with its
    /// target, and <c>eps(s) - eta (eps(t) - eps(s))</c> of the pair is matched on the target. The membrane then learns
    /// what the concept does inside the prompts it appears in, not only the bare word against the bare surrogate, which
    /// matters for a pattern or a colour that is always drawn on something. The SPM file still names <see cref="Concept"/>
    /// (the gate opens on the concept, the pairs are its contexts). Null: the concept against <see cref="Surrogate"/>.
    /// </summary>
    public IReadOnlyList<ErasurePair>? Pairs { get; init; }

    /// <summary>
    /// Robust mode on a paired run: for each of <see cref="AdversarialPrompts"/>, the index in <see cref="Pairs"/> of the
    /// pair it attacks. An iteration that trains on an adversarial prompt samples x with that pair's target and matches
    /// that pair's erasure target, so a prompt found against "a red striped circle" is erased towards "a red plain
    /// circle", not towards whichever pair was drawn. Required (one per adversarial prompt) when both are given.
    /// </summary>
    public IReadOnlyList<int>? AdversarialGoals { get; init; }

    /// <summary>Throws <see cref="ArgumentException"/> naming the first invalid option.</summary>
    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(Concept)) throw new ArgumentException("The concept to erase is empty (--concept).");
        if (Iterations < 1) throw new ArgumentException($"--iterations must be at least 1 (got {Iterations}).");
        if (Rank < 1) throw new ArgumentException($"--rank must be at least 1 (got {Rank}).");
        if (!(LearningRate > 0) || double.IsInfinity(LearningRate)) throw new ArgumentException($"--lr must be positive (got {LearningRate}).");
        if (Resolution < 64 || Resolution % 64 != 0) throw new ArgumentException($"--resolution must be a positive multiple of 64 (got {Resolution}).");
        if (SamplingSteps < 2) throw new ArgumentException($"Sampling steps must be at least 2 (got {SamplingSteps}).");
        if (AnchorCount < 0) throw new ArgumentException($"Anchor count must be non-negative (got {AnchorCount}).");
        if (BatchSize != 1) throw new ArgumentException($"Only batch size 1 is supported (got {BatchSize}).");
        if (!(AdamEpsilon > 0) || double.IsInfinity(AdamEpsilon)) throw new ArgumentException($"--adam-epsilon must be positive (got {AdamEpsilon}).");
        if (PreviewEvery < 0) throw new ArgumentException($"--preview-every must be non-negative (got {PreviewEvery}).");
        if (PreviewEvery > 0 && (PreviewSteps < 1 || PreviewRows.Count > 16)) throw new ArgumentException("Previews need at least 1 step and at most 16 prompts.");
        if (CheckpointEvery < 0) throw new ArgumentException($"--checkpoint-every must be non-negative (got {CheckpointEvery}).");
        if (WarmupSteps < 0 || CosineCycles < 1) throw new ArgumentException("Warm-up steps must be >= 0 and cosine cycles >= 1.");
        if (double.IsNaN(Eta) || double.IsNaN(AnchorStrength) || AnchorStrength < 0) throw new ArgumentException("eta must be a number and the anchor strength non-negative.");
        if (!(AdversarialShare is >= 0 and <= 1)) throw new ArgumentException($"The adversarial share must be in [0, 1] (got {AdversarialShare}).");
        if (AdversarialPrompts is not null && AdversarialPrompts.Any(string.IsNullOrWhiteSpace)) throw new ArgumentException("An adversarial prompt is empty.");
        if (AnchorPrompts is not null)
        {
            if (AnchorPrompts.Count == 0) throw new ArgumentException("The list of anchor prompts is empty (the atlas has no concept to anchor).");
            if (AnchorPrompts.Any(string.IsNullOrWhiteSpace)) throw new ArgumentException("An anchor prompt is empty.");
            if (ReferenceQuirk) throw new ArgumentException("--reference-quirk shapes the spec's random anchors; it does not combine with anchor prompts from an atlas.");
        }
        if (Pairs is not null)
        {
            if (Pairs.Count == 0) throw new ArgumentException("The list of erasure pairs is empty.");
            if (Pairs.FirstOrDefault(p => string.IsNullOrWhiteSpace(p.Target) || p.Surrogate is null) is { } bad)
                throw new ArgumentException($"An erasure pair has an empty target ('{bad.Target}' => '{bad.Surrogate}').");
            if (FamilyPrompts is not null) throw new ArgumentException("Erasure pairs and a concept family do not combine: a family erases every member towards one surrogate.");
            if (Positive is not null) throw new ArgumentException("Each erasure pair is erased along its own target; a separate positive prompt does not apply.");
            int adversarial = AdversarialPrompts?.Count ?? 0;
            if (adversarial > 0 && (AdversarialGoals is null || AdversarialGoals.Count != adversarial))
                throw new ArgumentException($"A paired run with {adversarial} adversarial prompts needs the pair each one attacks ({AdversarialGoals?.Count ?? 0} given).");
            if (AdversarialGoals is not null && AdversarialGoals.Any(g => g < 0 || g >= Pairs.Count))
                throw new ArgumentException($"An adversarial goal is not an index of the {Pairs.Count} erasure pairs.");
        }
        else if (AdversarialGoals is not null) throw new ArgumentException("Adversarial goals index erasure pairs; this run has none.");
        if (FamilyPrompts is not null)
        {
            if (FamilyPrompts.Count == 0 || FamilyPrompts.Any(string.IsNullOrWhiteSpace)) throw new ArgumentException("A concept family needs at least one non-empty prompt.");
            if (Positive is not null) throw new ArgumentException("A concept family erases each member towards the surrogate; a separate positive prompt does not apply.");
            if (AdversarialPrompts is { Count: > 0 }) throw new ArgumentException("Robust mode (adversarial prompts) trains one concept, not a family.");
            if (AnchorPrompts is not null && AnchorPrompts.Intersect(FamilyPrompts, StringComparer.OrdinalIgnoreCase).FirstOrDefault() is { } both)
                throw new ArgumentException($"'{both}' is both a family member (erased) and an anchor (kept).");
        }
    }
}

/// <summary>One phrasing of the erased concept and the phrasing it is moved towards (<see cref="LatentAnchoringOptions.Pairs"/>).</summary>
/// <param name="Target">A prompt with the concept ("a red striped circle").</param>
/// <param name="Surrogate">The same prompt with the surrogate in its place ("a red plain circle").</param>
public sealed record ErasurePair(string Target, string Surrogate);

/// <summary>How the timestep used for the erasure and anchoring predictions is derived from the sampled step count.</summary>
public enum QueryTimestepMode
{
    /// <summary>The reference code's <c>999 - floor(k * 1000 / steps)</c>.</summary>
    Reference,

    /// <summary>The DDIM timestep at which x actually sits after k steps.</summary>
    Exact,
}
