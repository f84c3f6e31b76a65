using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Spm.Core.IO;
using Spm.Training.Evaluation;

namespace Spm.Shapes.Evaluation;

/// <summary>Renders an <see cref="EvalReport"/> as a text table, as JSON, and writes its comparison grids as PNGs.</summary>
public static class EvalReportWriter
{
    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
        // IRA / CRA are NaN when no prompt names the attribute.
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.CamelCase) },
    };

    /// <summary>
    /// A fixed-width table (invariant culture): case, concept, variant, detection rate of the concept on its
    /// prompts, preservation accuracy on the other prompts, mean SSIM and PSNR against the base images.
    /// </summary>
    public static string ToTable(EvalReport report)
    {
        ArgumentNullException.ThrowIfNull(report);
        var header = new[] { "case", "concept", "variant", "detected", "preserved acc.", "SSIM", "PSNR dB" };
        var lines = report.Rows.Select(r => new[]
        {
            r.Case,
            r.Concept,
            r.Variant,
            Percent(r.DetectionRate) + $" of {r.TargetImages}",
            Percent(r.PreservationAccuracy) + $" of {r.PreservationImages}",
            r.MeanSsim is { } s ? s.ToString("F3", CultureInfo.InvariantCulture) : "-",
            r.MeanPsnr is { } p ? p.ToString("F1", CultureInfo.InvariantCulture) : "-",
        }).ToList();
        var widths = Enumerable.Range(0, header.Length).Select(i => lines.Select(l => l[i].Length).Append(header[i].Length).Max()).ToArray();
        var sb = new StringBuilder();
        void Line(string[] cells)
        {
            for (int i = 0; i < cells.Length; i++)
            {
                if (i > 0) sb.Append("  ");
                // Text columns left-aligned, numbers right-aligned.
                sb.Append(i < 3 ? cells[i].PadRight(widths[i]) : cells[i].PadLeft(widths[i]));
            }
            sb.Append('\n');
        }
        Line(header);
        Line(widths.Select(w => new string('-', w)).ToArray());
        string? lastCase = null;
        foreach (var (row, cells) in report.Rows.Zip(lines))
        {
            if (lastCase is not null && row.Case != lastCase) sb.Append('\n');
            lastCase = row.Case;
            Line(cells);
        }
        return sb.ToString();
    }

    /// <summary>The report as indented JSON (options and rows; grids are referenced by file name only).</summary>
    public static string ToJson(EvalReport report)
    {
        ArgumentNullException.ThrowIfNull(report);
        var doc = new
        {
            options = report.Options,
            rows = report.Rows,
            grids = report.Grids.Select(g => new { @case = g.Case, file = GridFileName(g), columns = g.Columns, prompts = g.Prompts }),
        };
        return JsonSerializer.Serialize(doc, Json);
    }

    private static readonly JsonSerializerOptions JsonLine = new(Json) { WriteIndented = false };

    /// <summary>
    /// The report's per-image records (<see cref="EvalReport.Images"/>) as JSON Lines, one image per line, in the order
    /// the evaluation read them: filter them to find which prompts and seeds a rate's misses come from.
    /// </summary>
    public static string ToJsonLines(EvalReport report)
    {
        ArgumentNullException.ThrowIfNull(report);
        var sb = new StringBuilder();
        foreach (var image in report.Images) sb.Append(JsonSerializer.Serialize(image, JsonLine)).Append('\n');
        return sb.ToString();
    }

    /// <summary>Writes the JSON report atomically.</summary>
    public static void WriteJson(EvalReport report, string path) => AtomicFile.WriteAllText(path, ToJson(report) + "\n");

    /// <summary>Writes every comparison grid into <paramref name="folder"/> as <c>grid-&lt;case&gt;.png</c>; returns the paths.</summary>
    public static IReadOnlyList<string> WriteGrids(EvalReport report, string folder)
    {
        ArgumentNullException.ThrowIfNull(report);
        ArgumentNullException.ThrowIfNull(folder);
        Directory.CreateDirectory(folder);
        var paths = new List<string>();
        foreach (var grid in report.Grids)
        {
            var path = Path.Combine(folder, GridFileName(grid));
            ImageGrid.SavePng(path, grid.Image, grid.Height, grid.Width);
            paths.Add(path);
        }
        return paths;
    }

    /// <summary>The file name of a case's grid: "grid-" and the case label reduced to letters, digits and dashes.</summary>
    public static string GridFileName(EvalGrid grid)
    {
        ArgumentNullException.ThrowIfNull(grid);
        var sb = new StringBuilder("grid-");
        foreach (char ch in grid.Case.ToLowerInvariant())
            sb.Append(char.IsAsciiLetterOrDigit(ch) ? ch : '-');
        var name = sb.ToString();
        while (name.Contains("--")) name = name.Replace("--", "-");
        return name.TrimEnd('-') + ".png";
    }

    /// <summary>
    /// The table in Markdown, in UnlearnCanvas's terms: per (case, concept, variant) UA (1 − detection on target prompts),
    /// IRA and CRA on the preservation prompts, and SSIM / PSNR of the preservation images against the base model's.
    /// </summary>
    public static string ToMarkdown(EvalReport report)
    {
        ArgumentNullException.ThrowIfNull(report);
        static string Pct(double v) => double.IsNaN(v) ? "-" : (100 * v).ToString("F1", CultureInfo.InvariantCulture) + " %";
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"Prompts: {report.Options.Wording.ToString().ToLowerInvariant()} wording, {report.Options.ImagesPerSet} per set, seed {report.Options.Seed}.\n\n");
        sb.Append("| case | concept | variant | UA | IRA | CRA | SSIM | PSNR dB |\n| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |\n");
        foreach (var r in report.Rows)
            sb.Append(CultureInfo.InvariantCulture,
                $"| {r.Case} | {r.Concept} | {r.Variant} | {Pct(r.UnlearningAccuracy)} | {Pct(r.InDomainRetainAccuracy)} | {Pct(r.CrossDomainRetainAccuracy)} | {(r.MeanSsim is { } s ? s.ToString("F3", CultureInfo.InvariantCulture) : "")} | {(r.MeanPsnr is { } p ? p.ToString("F1", CultureInfo.InvariantCulture) : "")} |\n");
        return sb.ToString();
    }

    private static string Percent(double v) => (100 * v).ToString("F1", CultureInfo.InvariantCulture) + "%";

    /// <summary>The fidelity result as a small fixed-width table (percentages; "-" for attributes no caption named).</summary>
    public static string FidelityTable(FidelityResult r)
    {
        ArgumentNullException.ThrowIfNull(r);
        static string Pct(double v) => double.IsNaN(v) ? "-" : (100 * v).ToString("F1", CultureInfo.InvariantCulture) + "%";
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"fidelity on {r.Images} images (attribute read as the caption names it)\n");
        foreach (var (name, value) in new[] { ("shape", r.ShapeAccuracy), ("colour", r.ColorAccuracy), ("pattern", r.PatternAccuracy), ("background", r.BackgroundAccuracy), ("object found", r.FoundObjectRate) })
            sb.Append(CultureInfo.InvariantCulture, $"  {name,-12} {Pct(value),7}\n");
        // What the misses are: every named value read right less often than always, with what it was read as most.
        var misses = new StringBuilder();
        foreach (var c in r.Confusion)
            foreach (var label in c.Labels)
            {
                int named = c.Named(label);
                if (named == 0 || c.MostCommonMisreading(label) is not { } miss) continue;
                misses.Append(CultureInfo.InvariantCulture, $"  {c.Attribute,-12} {label,-11} {Pct(c.Accuracy(label)),7} of {named,3}  (read as {miss.Label}: {miss.Count})\n");
            }
        if (misses.Length > 0) sb.Append("misread (objects found; named value, share read right, most common misreading)\n").Append(misses);
        return sb.ToString();
    }
}
