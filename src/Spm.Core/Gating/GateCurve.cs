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

/// <summary>How an SPM's gamma is read from a prompt.</summary>
public enum GateCalibration
{
    /// <summary>
    /// The SPM's learned gate when its file carries one fitted on this text encoder (<see cref="Learned"/>), else
    /// <see cref="EmptyPrompt"/> (default). The choice and the figures behind it: <c>docs/gate.md</c>.
    /// </summary>
    Auto,

    /// <summary>The spec's raw gamma: max(clipcos over the 77 padded positions, tokenuni). Its floor for unrelated prompts is high.</summary>
    None,

    /// <summary>
    /// The cosine measured above the concept's own floor: <c>clamp((cos(p, c) − cos("", c)) / (1 − cos("", c)), 0, 1)</c>,
    /// where <c>cos("", c)</c> is the empty prompt's cosine to the concept — how much any text shares with it through
    /// padding alone. Unrelated prompts fall to about 0, the concept itself stays at 1, and tokenuni is unchanged; a
    /// plural, a typo or a synonym the encoder does not place near the concept scores 0 (a word match).
    /// </summary>
    EmptyPrompt,

    /// <summary>
    /// The SPM's <see cref="ConceptProbe"/> (its file's <c>gate_probe</c>): gamma comes from the probability, read from the
    /// prompt's hidden states token by token, that the model draws the concept (<see cref="ConceptProbe.Gamma"/>: shut below
    /// the probe's closed level, fully open above its open level), and 1 whenever the prompt holds every token of one of the
    /// SPM's concepts; the membrane's multiplier is then scaled by the probe's <see cref="ConceptProbe.Strength"/>. Required: an SPM without a probe, or with one fitted on
    /// another text encoder, is an error.
    /// </summary>
    Learned,
}

/// <summary>Names of <see cref="GateCalibration"/> values as the CLI takes them.</summary>
public static class GateCalibrations
{
    /// <summary>The accepted names: <c>auto</c>, <c>learned</c>, <c>empty</c>, <c>none</c>.</summary>
    public static IReadOnlyList<string> Names { get; } = ["auto", "learned", "empty", "none"];

    /// <summary>Parses a name of <see cref="Names"/> (case-insensitive).</summary>
    public static bool TryParse(string? text, out GateCalibration calibration)
    {
        switch (text?.Trim().ToLowerInvariant())
        {
            case "auto": calibration = GateCalibration.Auto; return true;
            case "learned": calibration = GateCalibration.Learned; return true;
            case "empty": calibration = GateCalibration.EmptyPrompt; return true;
            case "none": calibration = GateCalibration.None; return true;
            default: calibration = default; return false;
        }
    }

    /// <summary>The CLI name of a calibration.</summary>
    public static string NameOf(GateCalibration calibration) => calibration switch
    {
        GateCalibration.Auto => "auto",
        GateCalibration.Learned => "learned",
        GateCalibration.EmptyPrompt => "empty",
        _ => "none",
    };
}

/// <summary>How one SPM's multiplier is decided for a prompt.</summary>
/// <param name="Curve">The gate curve f (default <see cref="GateCurve.Square"/>).</param>
/// <param name="FacilitateFactor">Scales gamma before the curve (default 1).</param>
/// <param name="FixedMultiplier">When set, the multiplier is this value whatever the prompt (the gate is bypassed).</param>
/// <param name="Calibration">How gamma is read (default <see cref="GateCalibration.Auto"/>: the learned gate where the SPM has one).</param>
public sealed record GateSettings(GateCurve Curve = GateCurve.Square, float FacilitateFactor = 1f, float? FixedMultiplier = null,
    GateCalibration Calibration = GateCalibration.Auto)
{
    /// <summary>The default: square curve, factor 1, gated, calibration <see cref="GateCalibration.Auto"/>.</summary>
    public static GateSettings Default { get; } = new();
}
