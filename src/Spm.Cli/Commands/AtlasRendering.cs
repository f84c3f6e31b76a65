using System.Globalization;
using System.Text;
using Spectre.Console;
using Spm.Core.Atlas;

namespace Spm.Cli.Commands;

/// <summary>Text output of <c>spm atlas</c>: the sweep table.</summary>
internal static class AtlasRendering
{
    /// <summary>The sweep as a Markdown table: exact-recovery rates per level and of the tree, inversions, time.</summary>
    public static string SweepTable(HsbmSweepConfig config, IReadOnlyList<HsbmSweepPoint> points)
    {
        var inv = CultureInfo.InvariantCulture;
        int d = config.Depth;
        var sb = new StringBuilder();
        sb.Append(inv, $"HSBM depth {d}, {1 << d} bottom communities of {config.BlockSize} nodes (n = {config.BlockSize << d}), p_k = SNR · c_k · log(n)/n with c = ({string.Join(", ", config.Shape.Select(c => c.ToString(inv)))}), {config.GraphsPerPoint} graphs per point; exact-recovery rate (BU = bottom-up, {config.Linkage.ToString().ToLowerInvariant()} linkage; TD = top-down).\n\n");
        sb.Append("| SNR | p (root split → same community) |");
        for (int l = 1; l <= d; l++) sb.Append(inv, $" level {l} BU | level {l} TD |");
        sb.Append(" tree BU | tree TD | TD inversions (graphs) | bottom agreement BU / TD | seconds BU / TD |\n|---|---|");
        for (int l = 0; l < 2 * d + 5; l++) sb.Append("---|");
        sb.Append('\n');
        foreach (var p in points)
        {
            double g = p.Graphs;
            string Rate(int c) => (c / g).ToString("0.00", inv);
            sb.Append(inv, $"| {p.Snr.ToString(inv)} | {string.Join(", ", p.Probabilities.Select(x => x.ToString("0.0000", inv)))} |");
            for (int l = 0; l < d; l++) sb.Append(inv, $" {Rate(p.BottomUp.LevelRecovered[l])} | {Rate(p.TopDown.LevelRecovered[l])} |");
            sb.Append(inv, $" **{Rate(p.BottomUp.TreeRecovered)}** | **{Rate(p.TopDown.TreeRecovered)}** | {p.TopDown.Inversions} ({p.TopDown.GraphsWithInversions}) | {p.BottomUp.MeanBottomAgreement:0.000} / {p.TopDown.MeanBottomAgreement:0.000} | {p.BottomUp.Seconds:0.0} / {p.TopDown.Seconds:0.0} |\n");
        }
        return sb.ToString();
    }
}
