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

    /// <summary>The multiplier of one SPM for a prompt (the fixed multiplier skips the similarity work).</summary>
    public static float Multiplier(GateText prompt, IReadOnlyList<GateText> concepts, GateSettings settings)
    {
        ArgumentNullException.ThrowIfNull(settings);
        return settings.FixedMultiplier ?? Multiplier(SpmGamma(prompt, concepts), settings);
    }
}
