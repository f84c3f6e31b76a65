namespace Spm.Core.Gating;

/// <summary>How an SPM's gamma becomes its membranes' multiplier.</summary>
public enum GateCurve
{
    /// <summary><c>f(gamma) = gamma²</c> (default): the single-SPM behaviour of the reference code, which scales both down and up by gamma.</summary>
    Square,
    /// <summary><c>f(gamma) = gamma</c>.</summary>
    Linear,
}

/// <summary>Evaluates <see cref="GateCurve"/> values.</summary>
public static class GateCurves
{
    /// <summary>Applies <paramref name="curve"/> to <paramref name="gamma"/>.</summary>
    public static float Apply(GateCurve curve, float gamma) => curve switch
    {
        GateCurve.Square => gamma * gamma,
        GateCurve.Linear => gamma,
        _ => throw new ArgumentOutOfRangeException(nameof(curve), curve, null),
    };

    /// <summary>Parses <c>square</c> or <c>linear</c> (case-insensitive), as the CLI's <c>--gate-curve</c> takes them.</summary>
    public static bool TryParse(string? text, out GateCurve curve)
    {
        switch (text?.Trim().ToLowerInvariant())
        {
            case "square": curve = GateCurve.Square; return true;
            case "linear": curve = GateCurve.Linear; return true;
            default: curve = default; return false;
        }
    }
}

/// <summary>How the clipcos term of gamma is read.</summary>
public enum GateCalibration
{
    /// <summary>The spec's raw cosine over the 77 padded positions (default; its floor for unrelated prompts is high).</summary>
    None,

    /// <summary>
    /// The cosine measured above the concept's own floor: <c>clamp((cos(p, c) − cos("", c)) / (1 − cos("", c)), 0, 1)</c>,
    /// where <c>cos("", c)</c> is the empty prompt's cosine to the concept — how much any text shares with it through
    /// padding alone. Unrelated prompts fall to about 0, the concept itself stays at 1, and tokenuni is unchanged.
    /// </summary>
    EmptyPrompt,
}

/// <summary>How one SPM's multiplier is decided for a prompt.</summary>
/// <param name="Curve">The gate curve f (default <see cref="GateCurve.Square"/>).</param>
/// <param name="FacilitateFactor">Scales gamma before the curve (default 1).</param>
/// <param name="FixedMultiplier">When set, the multiplier is this value whatever the prompt (the gate is bypassed).</param>
/// <param name="Calibration">How the clipcos term is read (default: the spec's raw cosine).</param>
public sealed record GateSettings(GateCurve Curve = GateCurve.Square, float FacilitateFactor = 1f, float? FixedMultiplier = null,
    GateCalibration Calibration = GateCalibration.None)
{
    /// <summary>The default: square curve, factor 1, gated.</summary>
    public static GateSettings Default { get; } = new();
}
