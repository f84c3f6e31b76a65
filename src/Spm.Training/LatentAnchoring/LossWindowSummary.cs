namespace Spm.Training.LatentAnchoring;

/// <summary>
/// A run's losses over its first and last <see cref="Window"/> iterations, the reading of the trainer's acceptance test
/// ("the erasure loss's last-10-step average is at most half its first-10-step average, while the anchoring loss stays
/// below the erasure loss"), next to the two draw-independent readings: the relative erasure loss (each iteration's loss
/// over the frozen model's at the same draw) and the fixed probe (when it was on).
/// </summary>
/// <param name="Window">Iterations per window.</param>
/// <param name="Iterations">Iterations in the history.</param>
/// <param name="FirstErasure">Mean raw erasure loss of the first window.</param>
/// <param name="LastErasure">Mean raw erasure loss of the last window.</param>
/// <param name="FirstRelative">Mean relative erasure loss (loss / frozen loss) of the first window.</param>
/// <param name="LastRelative">Mean relative erasure loss of the last window.</param>
/// <param name="FirstProbe">Mean probe erasure loss of the first window (NaN without the probe).</param>
/// <param name="LastProbe">Mean probe erasure loss of the last window (NaN without the probe).</param>
/// <param name="FirstProbeRelative">Mean probe relative loss of the first window (NaN without the probe).</param>
/// <param name="LastProbeRelative">Mean probe relative loss of the last window (NaN without the probe).</param>
/// <param name="AnchorBelowErasure">Iterations whose anchoring loss is below their erasure loss.</param>
public sealed record LossWindowSummary(
    int Window,
    int Iterations,
    double FirstErasure,
    double LastErasure,
    double FirstRelative,
    double LastRelative,
    double FirstProbe,
    double LastProbe,
    double FirstProbeRelative,
    double LastProbeRelative,
    int AnchorBelowErasure)
{
    /// <summary>Last window's mean raw erasure loss over the first's (acceptance asks for at most 0.5).</summary>
    public double ErasureRatio => LastErasure / FirstErasure;

    /// <summary>Last window's mean probe erasure loss over the first's (NaN without the probe).</summary>
    public double ProbeRatio => LastProbe / FirstProbe;

    /// <summary>Summarises <paramref name="history"/> (at least one iteration; windows shrink to fit short runs).</summary>
    public static LossWindowSummary From(IReadOnlyList<TrainingProgress> history, int window = 10)
    {
        ArgumentNullException.ThrowIfNull(history);
        if (history.Count == 0) throw new ArgumentException("The history is empty.", nameof(history));
        ArgumentOutOfRangeException.ThrowIfLessThan(window, 1);
        int w = Math.Min(window, history.Count);
        var first = history.Take(w).ToList();
        var last = history.Skip(history.Count - w).ToList();
        static double Mean(List<TrainingProgress> rows, Func<TrainingProgress, double> f) => rows.Average(f);
        return new LossWindowSummary(
            w,
            history.Count,
            Mean(first, p => p.ErasureLoss),
            Mean(last, p => p.ErasureLoss),
            Mean(first, p => p.RelativeErasureLoss),
            Mean(last, p => p.RelativeErasureLoss),
            Mean(first, p => p.Probe?.MeanLoss ?? double.NaN),
            Mean(last, p => p.Probe?.MeanLoss ?? double.NaN),
            Mean(first, p => p.Probe?.MeanRelative ?? double.NaN),
            Mean(last, p => p.Probe?.MeanRelative ?? double.NaN),
            history.Count(p => p.AnchorLoss < p.ErasureLoss));
    }
}
