using System.Numerics.Tensors;

namespace Spm.Core.Gating;

/// <summary>
/// Facilitated transport (spec section 3): how strongly each SPM acts for a prompt. For prompt p and concept c,
/// <c>gamma(p, c) = max(clipcos(p, c), tokenuni(p, c))</c>; an SPM's gamma is the maximum over its concepts, times
/// the facilitate factor; its membranes' multiplier is <c>f(gamma)</c> (<see cref="GateCurve"/>), unless a fixed
/// multiplier bypasses the gate. Computed once per prompt, from the positive prompt only.
/// </summary>
public static class FacilitatedTransport
{
    /// <summary>
    /// Cosine similarity of two flattened, padded embeddings (all 77 × D values each). 0 when either is all zeros
    /// (cosine is undefined there, and a zero text has nothing in common with anything).
    /// </summary>
    /// <exception cref="ArgumentException">The lengths differ (embeddings of different text encoders or paddings).</exception>
    public static float ClipCosine(ReadOnlySpan<float> prompt, ReadOnlySpan<float> concept)
    {
        if (prompt.Length != concept.Length)
            throw new ArgumentException($"Embeddings differ in length ({prompt.Length} vs {concept.Length}).");
        if (prompt.IsEmpty) return 0f;
        float np = TensorPrimitives.Norm(prompt), nc = TensorPrimitives.Norm(concept);
        if (np == 0f || nc == 0f) return 0f;
        return TensorPrimitives.Dot(prompt, concept) / (np * nc);
    }

    /// <summary>
    /// Token-union ratio <c>|tokens(p) ∩ tokens(c)| / |tokens(c)|</c> over token-id sets without special tokens;
    /// 0 when the concept has no ordinary token.
    /// </summary>
    public static float TokenUnion(IReadOnlySet<int> promptTokens, IReadOnlySet<int> conceptTokens)
    {
        ArgumentNullException.ThrowIfNull(promptTokens);
        ArgumentNullException.ThrowIfNull(conceptTokens);
        if (conceptTokens.Count == 0) return 0f;
        int common = 0;
        foreach (var t in conceptTokens) if (promptTokens.Contains(t)) common++;
        return (float)common / conceptTokens.Count;
    }

    /// <summary><c>gamma(p, c) = max(clipcos, tokenuni)</c>.</summary>
    public static float Gamma(GateText prompt, GateText concept)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(concept);
        return MathF.Max(ClipCosine(prompt.Embedding, concept.Embedding), TokenUnion(prompt.TokenSet, concept.TokenSet));
    }

    /// <summary>
    /// A cosine measured above a floor: <c>clamp((cosine − floor) / (1 − floor), 0, 1)</c>; a floor of 1 or more leaves
    /// only an exact match (cosine ≥ 1) at 1. See <see cref="GateCalibration.EmptyPrompt"/>.
    /// </summary>
    public static float CalibratedCosine(float cosine, float floor)
    {
        if (!(floor < 1f)) return cosine >= 1f ? 1f : 0f;
        return Math.Clamp((cosine - floor) / (1f - floor), 0f, 1f);
    }

    /// <summary>
    /// <c>gamma(p, c)</c> with the clipcos term calibrated against <paramref name="baseline"/> (the empty prompt's view):
    /// <c>max(CalibratedCosine(clipcos(p, c), clipcos(baseline, c)), tokenuni(p, c))</c>. A null baseline gives <see cref="Gamma(GateText, GateText)"/>.
    /// </summary>
    public static float Gamma(GateText prompt, GateText concept, GateText? baseline)
    {
        if (baseline is null) return Gamma(prompt, concept);
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(concept);
        float cos = CalibratedCosine(ClipCosine(prompt.Embedding, concept.Embedding), ClipCosine(baseline.Embedding, concept.Embedding));
        return MathF.Max(cos, TokenUnion(prompt.TokenSet, concept.TokenSet));
    }

    /// <summary>An SPM's gamma for a prompt: the maximum of <see cref="Gamma(GateText, GateText)"/> over its concepts (0 with no concept).</summary>
    public static float SpmGamma(GateText prompt, IReadOnlyList<GateText> concepts) => SpmGamma(prompt, concepts, null);

    /// <summary>An SPM's gamma with the clipcos term calibrated against <paramref name="baseline"/> (null: the spec's raw gamma).</summary>
    public static float SpmGamma(GateText prompt, IReadOnlyList<GateText> concepts, GateText? baseline)
    {
        ArgumentNullException.ThrowIfNull(concepts);
        if (concepts.Count == 0) return 0f;
        float best = float.NegativeInfinity;
        foreach (var c in concepts) best = MathF.Max(best, Gamma(prompt, c, baseline));
        return best;
    }

    /// <summary>The membrane multiplier for an SPM gamma: the fixed multiplier if set, else <c>f(gamma × factor)</c>.</summary>
    public static float Multiplier(float spmGamma, GateSettings settings)
    {
        ArgumentNullException.ThrowIfNull(settings);
        if (settings.FixedMultiplier is { } m) return m;
        return GateCurves.Apply(settings.Curve, spmGamma * settings.FacilitateFactor);
    }

    /// <summary>
    /// The multiplier of one SPM for a prompt, read as <paramref name="settings"/> say, calibration included (the fixed
    /// multiplier skips the similarity work). See <see cref="Read"/> for what each calibration needs.
    /// </summary>
    /// <exception cref="ArgumentException">The calibration needs <paramref name="emptyPrompt"/> and it is null.</exception>
    /// <exception cref="SpmException"><see cref="GateCalibration.Learned"/> without a usable probe.</exception>
    public static float Multiplier(GateText prompt, IReadOnlyList<GateText> concepts, GateSettings settings,
        GateText? emptyPrompt = null, ConceptProbe? probe = null)
    {
        ArgumentNullException.ThrowIfNull(settings);
        return settings.FixedMultiplier ?? Read(prompt, concepts, settings, emptyPrompt, probe).Multiplier;
    }

    /// <summary>
    /// Reads one SPM's gate for a prompt: the one implementation of every <see cref="GateCalibration"/>, used by the
    /// pipeline's gate evaluator and by callers holding <see cref="GateText"/>s themselves.
    /// <list type="bullet">
    /// <item><see cref="GateCalibration.None"/>: the spec's raw gamma.</item>
    /// <item><see cref="GateCalibration.EmptyPrompt"/>: clipcos measured above the empty prompt's cosine (needs <paramref name="emptyPrompt"/>).</item>
    /// <item><see cref="GateCalibration.Learned"/>: <paramref name="probe"/>'s gamma, 1 when the prompt holds every token of
    /// a concept, the multiplier scaled by the probe's strength; the probe must fit this encoder (checked against <paramref name="emptyPrompt"/>).</item>
    /// <item><see cref="GateCalibration.Auto"/>: Learned when a fitting probe is given, else EmptyPrompt.</item>
    /// </list>
    /// </summary>
    /// <param name="prompt">The prompt's gate view.</param>
    /// <param name="concepts">The SPM's concepts (empty texts left out).</param>
    /// <param name="settings">Curve, factor, calibration; a fixed multiplier is returned as is (gamma NaN).</param>
    /// <param name="emptyPrompt">The gate view of "" on the same encoder; needed by every calibration but None.</param>
    /// <param name="probe">The SPM's learned gate, if its file has one.</param>
    /// <param name="probeFits">Whether <paramref name="probe"/> fits this encoder, when the caller already knows (it caches the check); null checks it here.</param>
    /// <param name="spmName">The SPM's name, for messages.</param>
    /// <exception cref="ArgumentException">The calibration needs <paramref name="emptyPrompt"/> and it is null.</exception>
    /// <exception cref="SpmException"><see cref="GateCalibration.Learned"/> without a probe, or with one fitted on another encoder.</exception>
    public static GateReading Read(GateText prompt, IReadOnlyList<GateText> concepts, GateSettings settings, GateText? emptyPrompt,
        ConceptProbe? probe = null, bool? probeFits = null, string? spmName = null)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(concepts);
        ArgumentNullException.ThrowIfNull(settings);
        if (settings.FixedMultiplier is { } m) return new GateReading(float.NaN, m, GateCalibration.None);
        var read = settings.Calibration;
        if (read != GateCalibration.None && emptyPrompt is null)
            throw new ArgumentException($"Gate calibration '{GateCalibrations.NameOf(read)}' needs the empty prompt's gate text (emptyPrompt); pass it, or use calibration 'none'.", nameof(emptyPrompt));
        if (read is GateCalibration.Auto or GateCalibration.Learned)
        {
            bool usable = probe is not null && (probeFits ?? probe.Fits(emptyPrompt!.Embedding));
            string name = spmName is null ? "the SPM" : $"SPM '{spmName}'";
            if (read == GateCalibration.Learned && !usable)
                throw new SpmException(probe is null
                    ? $"{char.ToUpperInvariant(name[0])}{name[1..]} has no learned gate (no 'gate_probe' in its metadata): fit one with 'spm gate fit', or use another gate calibration."
                    : $"{char.ToUpperInvariant(name[0])}{name[1..]}: its learned gate was fitted on another text encoder (the fingerprints differ): refit it with 'spm gate fit' on this model.");
            read = usable ? GateCalibration.Learned : GateCalibration.EmptyPrompt;
        }
        float gamma;
        if (read == GateCalibration.Learned)
        {
            // The probe, floored by the exact word match: a prompt holding every token of one of the SPM's concepts opens the
            // gate whatever the probe says (a weak probe, e.g. for a concept the model seldom draws, must not shut it on
            // the concept's own name). A partial match does not count: "a van" says nothing about "van gogh".
            gamma = probe!.Gamma(prompt.Embedding, prompt.MidWord);
            foreach (var c in concepts)
                if (TokenUnion(prompt.TokenSet, c.TokenSet) >= 1f) gamma = 1f;
        }
        else
        {
            gamma = SpmGamma(prompt, concepts, read == GateCalibration.EmptyPrompt ? emptyPrompt : null);
        }
        float multiplier = Multiplier(gamma, settings);
        if (read == GateCalibration.Learned) multiplier *= probe!.Strength;
        return new GateReading(gamma, multiplier, read);
    }
}

/// <summary>One SPM's gate for a prompt.</summary>
/// <param name="Gamma">The gamma read (NaN for a fixed multiplier).</param>
/// <param name="Multiplier">The membranes' multiplier.</param>
/// <param name="ReadBy">How gamma was read (never <see cref="GateCalibration.Auto"/>: the choice it made); None for a fixed multiplier.</param>
public readonly record struct GateReading(float Gamma, float Multiplier, GateCalibration ReadBy);
