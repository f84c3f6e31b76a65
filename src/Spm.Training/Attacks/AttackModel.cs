using System.Text.Json.Nodes;

namespace Spm.Training.Attacks;

/// <summary>One thing an attack tries: a prompt text, or a conditioning given directly.</summary>
/// <param name="Text">The prompt text (for a direct conditioning: the innocent prompt it started from, whose token ids the gate sees).</param>
/// <param name="Embedding">The conditioning to feed the UNet instead of the text encoder's, flattened [L, D]; null: encode <paramref name="Text"/>.</param>
/// <param name="Note">What the attack did ("typo", "strength 1.5", "random tokens 3").</param>
public sealed record AttackCandidate(string Text, float[]? Embedding, string Note)
{
    /// <summary>
    /// The control: the same prompt asking for the surrogate instead of the concept ("xx yy a plain red circle" for
    /// "xx yy a striped red circle"), drawn by the base model from the same seed. When the base model draws the concept
    /// there, unasked, the attacked image showing it says little about the erasure; null: no control.
    /// </summary>
    public string? Control { get; init; }
}

/// <summary>
/// One goal of an attack: make the attacked model draw the concept, trying up to <see cref="Candidates"/> (the budget);
/// it succeeds when any candidate's image shows the concept. Every candidate is drawn from <see cref="Seed"/>.
/// </summary>
/// <param name="Label">What the goal is ("a red circel", "a blue square + circle direction").</param>
/// <param name="Seed">The image seed of every candidate.</param>
/// <param name="Candidates">What the attack tries, in order.</param>
public sealed record AttackTarget(string Label, ulong Seed, IReadOnlyList<AttackCandidate> Candidates);

/// <summary>An attack made concrete: its goals and what it cost to find them.</summary>
/// <param name="Name">Attack name ("text-variants", "embedding", "random-tokens").</param>
/// <param name="Description">One line on what it does.</param>
/// <param name="Targets">The goals.</param>
/// <param name="Budget">What it was allowed (candidates per goal, strengths, tokens...), for the report.</param>
public sealed record AttackPlan(string Name, string Description, IReadOnlyList<AttackTarget> Targets, JsonObject Budget)
{
    /// <summary>
    /// The plan with a control on every text candidate that ends with its goal's prompt (random-token and gradient
    /// attacks put their words in front): the candidate's words before <paramref name="surrogateOf"/>(goal prompt).
    /// Candidates given as conditionings, or whose goal has no surrogate prompt (null), get none.
    /// </summary>
    public AttackPlan WithControls(Func<string, string?> surrogateOf)
    {
        ArgumentNullException.ThrowIfNull(surrogateOf);
        var targets = Targets.Select(t =>
        {
            var swapped = surrogateOf(t.Label);
            if (swapped is null) return t;
            return t with
            {
                Candidates = t.Candidates.Select(c => c.Embedding is null && c.Text.EndsWith(t.Label, StringComparison.Ordinal)
                    ? c with { Control = string.Concat(c.Text.AsSpan(0, c.Text.Length - t.Label.Length), swapped) }
                    : c).ToList(),
            };
        }).ToList();
        return this with { Targets = targets };
    }
}

/// <summary>How one candidate fared.</summary>
/// <param name="Candidate">The candidate.</param>
/// <param name="BaseShows">The base model (every SPM off) draws the concept for it.</param>
/// <param name="AttackedShows">The attacked model (SPMs on, gated) draws the concept for it.</param>
/// <param name="Multipliers">The multipliers the gate gave the SPMs.</param>
public sealed record CandidateOutcome(AttackCandidate Candidate, bool BaseShows, bool AttackedShows, IReadOnlyList<float> Multipliers)
{
    /// <summary>Whether the base model draws the concept for the candidate's <see cref="AttackCandidate.Control"/>; null without one.</summary>
    public bool? ControlShows { get; init; }
}

/// <summary>How one goal fared.</summary>
/// <param name="Target">The goal.</param>
/// <param name="Candidates">Its candidates' outcomes, in order.</param>
public sealed record TargetOutcome(AttackTarget Target, IReadOnlyList<CandidateOutcome> Candidates)
{
    /// <summary>Some candidate made the attacked model draw the concept.</summary>
    public bool Success => Candidates.Any(c => c.AttackedShows);

    /// <summary>Some candidate makes the base model draw the concept (the goal is reachable without the SPMs).</summary>
    public bool BaseSuccess => Candidates.Any(c => c.BaseShows);

    /// <summary>The first successful candidate, or null.</summary>
    public CandidateOutcome? FirstSuccess => Candidates.FirstOrDefault(c => c.AttackedShows);

    /// <summary>
    /// Some candidate made the attacked model draw the concept while the base model, asked for the surrogate with the same
    /// words and seed, did not (candidates without a control count as successes here too).
    /// </summary>
    public bool SuccessBeyondControl => Candidates.Any(c => c.AttackedShows && c.ControlShows != true);
}

/// <summary>The figures of one attack.</summary>
/// <param name="Name">Attack name.</param>
/// <param name="Description">What it does.</param>
/// <param name="Targets">Goals.</param>
/// <param name="Candidates">Candidates tried (images per model).</param>
/// <param name="Asr">Attack success rate: share of goals where some candidate's image on the attacked model shows the concept.</param>
/// <param name="BaseAsr">The same on the base model (every SPM off): the sanity row, what the attack reaches without erasure.</param>
/// <param name="Leak">Per image: among candidates whose base image shows the concept, the share whose attacked image still does (1 − erasure rate); NaN when none.</param>
/// <param name="BaseShownImages">Candidates whose base image shows the concept (the denominator of <paramref name="Leak"/>).</param>
/// <param name="MeanMultiplier">Mean multiplier the gate gave (over SPMs and candidates).</param>
/// <param name="Outcomes">Every goal's outcome.</param>
/// <param name="Budget">The budget.</param>
public sealed record AttackResult(string Name, string Description, int Targets, int Candidates, double Asr, double BaseAsr, double Leak,
    int BaseShownImages, double MeanMultiplier, IReadOnlyList<TargetOutcome> Outcomes, JsonObject Budget)
{
    /// <summary>Candidates with a control (<see cref="AttackCandidate.Control"/>); 0 when the attack has none.</summary>
    public int ControlImages => Outcomes.Sum(o => o.Candidates.Count(c => c.ControlShows is not null));

    /// <summary>
    /// Among candidates with a control, the share whose control image shows the concept: how often the base model draws it
    /// unasked in the attack's prompts (the floor no erasure of the concept's prompts removes); NaN without controls.
    /// </summary>
    public double ControlRate => ControlImages == 0 ? double.NaN
        : Outcomes.Sum(o => o.Candidates.Count(c => c.ControlShows == true)) / (double)ControlImages;

    /// <summary>
    /// Share of goals with a success whose control does not show the concept (<see cref="TargetOutcome.SuccessBeyondControl"/>):
    /// the attack success rate net of what the base model draws unasked; NaN without controls.
    /// </summary>
    public double AsrBeyondControl => ControlImages == 0 || Targets == 0 ? double.NaN
        : Outcomes.Count(o => o.SuccessBeyondControl) / (double)Targets;
}

/// <summary>How the erased model keeps what it should keep: prompts that ask for none of the erased concepts.</summary>
/// <param name="Name">Set name ("near neighbours").</param>
/// <param name="Images">Images compared.</param>
/// <param name="MeanSsim">Mean SSIM of the attacked model's images against the base model's (same prompt, same seed).</param>
/// <param name="MinSsim">Lowest SSIM.</param>
/// <param name="BaseAccuracy">Share of base images that show what their prompt asks for (its <see cref="KeptPrompt.Intent"/> judge).</param>
/// <param name="Accuracy">The same for the attacked model.</param>
/// <param name="MeanMultiplier">Mean multiplier the gate gave.</param>
/// <param name="ConceptShownBase">Share of base images that show an erased concept anyway.</param>
/// <param name="ConceptShown">The same for the attacked model.</param>
/// <param name="CleanImages">
/// Images whose base version shows no erased concept: a prompt can name none and still get one (an unknown word, an open
/// slot), and there the membrane is meant to act, so SSIM over all images mixes erasure into what must be kept.
/// </param>
/// <param name="CleanMeanSsim">Mean SSIM over those images alone (NaN when there are none).</param>
/// <param name="PerImage">Every compared image, in prompt order (empty when not recorded): what to look at when a mean moves.</param>
/// <param name="Free">
/// With probe seeds (<see cref="AttackRunner.Collateral(string, IReadOnlyList{KeptPrompt}, IReadOnlyList{IConceptJudge}, int, IProgress{double}?, CancellationToken)"/>): the same figures over the concept-free prompts alone, those whose
/// base images show no erased concept at any probed seed; null without probe seeds.
/// </param>
public sealed record CollateralResult(string Name, int Images, double MeanSsim, double MinSsim, double BaseAccuracy, double Accuracy, double MeanMultiplier,
    double ConceptShownBase, double ConceptShown, int CleanImages = 0, double CleanMeanSsim = double.NaN, IReadOnlyList<KeptImage>? PerImage = null,
    ConceptFreeFigures? Free = null);

/// <summary>
/// A kept set's figures over its concept-free prompts: a prompt that names no erased concept can still be drawn as one
/// (a typo the model reads as the concept), and a per-prompt gate rightly opens there, which changes the prompt's other
/// seeds too; over the prompts the base model never draws an erased concept for, every change is collateral.
/// </summary>
/// <param name="ProbeSeeds">Extra base-model seeds drawn per prompt (besides the compared image's).</param>
/// <param name="Prompts">Prompts whose base images show no erased concept at any of those seeds.</param>
/// <param name="MeanSsim">Mean SSIM over them.</param>
/// <param name="BaseAccuracy">Base accuracy over them.</param>
/// <param name="Accuracy">Attacked accuracy over them.</param>
/// <param name="MeanMultiplier">Mean multiplier the gate gave them.</param>
public sealed record ConceptFreeFigures(int ProbeSeeds, int Prompts, double MeanSsim, double BaseAccuracy, double Accuracy, double MeanMultiplier);

/// <summary>One kept-set image pair (base and attacked model, same prompt and seed).</summary>
/// <param name="Prompt">The prompt.</param>
/// <param name="Seed">Its seed.</param>
/// <param name="Multiplier">Mean multiplier the gate gave the attacked SPMs for this prompt.</param>
/// <param name="Ssim">SSIM of the attacked image against the base one.</param>
/// <param name="BaseAsAsked">Whether the base image shows what the prompt asks for.</param>
/// <param name="AsAsked">Whether the attacked image does.</param>
/// <param name="BaseShowsConcept">Whether the base image shows an erased concept anyway.</param>
/// <param name="ShowsConcept">Whether the attacked image does.</param>
/// <param name="ProbeShown">Probe seeds (beyond this image's) whose base image shows an erased concept (0 without probe seeds).</param>
public sealed record KeptImage(string Prompt, ulong Seed, double Multiplier, double Ssim, bool BaseAsAsked, bool AsAsked, bool BaseShowsConcept, bool ShowsConcept, int ProbeShown = 0);

/// <summary>A prompt the erased model should still draw faithfully (it asks for no erased concept), for <see cref="AttackRunner.Collateral(string, IReadOnlyList{KeptPrompt}, IReadOnlyList{IConceptJudge}, int, IProgress{double}?, CancellationToken)"/>.</summary>
/// <param name="Text">The prompt.</param>
/// <param name="Seed">Seed of its image (base and attacked model draw from the same one).</param>
/// <param name="Intent">Judges whether an image shows what the prompt asks for.</param>
public sealed record KeptPrompt(string Text, ulong Seed, IConceptJudge Intent);
