using System.Globalization;
using System.Text;
using Spm.Core.Drawing;

namespace Spm.Core.Atlas;

/// <summary>Where a text label is anchored horizontally (SVG's text-anchor).</summary>
public enum TextAnchor
{
    /// <summary>The text starts at the point.</summary>
    Start,

    /// <summary>The text is centred on the point.</summary>
    Middle,

    /// <summary>The text ends at the point.</summary>
    End,
}

/// <summary>A text of a dendrogram drawing.</summary>
/// <param name="X">Anchor point, drawing units.</param>
/// <param name="Y">Baseline, drawing units.</param>
/// <param name="Text">The text.</param>
/// <param name="Anchor">How the text sits on <paramref name="X"/>.</param>
/// <param name="Size">Font size, drawing units.</param>
/// <param name="Bold">Bold (the title).</param>
public sealed record DendrogramText(double X, double Y, string Text, TextAnchor Anchor, double Size, bool Bold = false);

/// <summary>A polyline of a dendrogram drawing.</summary>
/// <param name="Points">The points, drawing units.</param>
/// <param name="Colour">CSS colour ("#2b6cb0").</param>
/// <param name="Width">Stroke width, drawing units.</param>
public sealed record DendrogramPolyline(IReadOnlyList<(double X, double Y)> Points, string Colour, double Width);

/// <summary>
/// The geometry of a concept atlas's dendrogram, computed once and drawn as SVG (<see cref="ToSvg"/>) or as pixels
/// (<see cref="Rasterize"/>): concepts listed on the left, grouped by finest community (a grey bracket each), and the
/// merges as elbows whose horizontal position is the linkage similarity (further right = merged at a lower
/// similarity), with a similarity axis at the bottom. Units are SVG user units (one per pixel at scale 1).
/// </summary>
public sealed class DendrogramLayout
{
    /// <summary>Height of one concept row.</summary>
    public const double RowHeight = 18;

    /// <summary>Width of the label column; the leaves of the tree sit on its right edge.</summary>
    public const double LabelWidth = 230;

    private const double Top = 40, PlotWidth = 420, GroupGap = 8, LabelSize = 12, TitleSize = 14, AxisSize = 10;
    private const string TreeColour = "#2b6cb0", BracketColour = "#888", AxisColour = "#444", TextColour = "black";

    private DendrogramLayout(double width, double height, IReadOnlyList<DendrogramText> texts, IReadOnlyList<DendrogramPolyline> lines,
        IReadOnlyList<(double X, double Y)> leaves, IReadOnlyList<double> conceptRows)
    {
        Width = width;
        Height = height;
        Texts = texts;
        Lines = lines;
        Leaves = leaves;
        ConceptRows = conceptRows;
    }

    /// <summary>Drawing width.</summary>
    public double Width { get; }

    /// <summary>Drawing height.</summary>
    public double Height { get; }

    /// <summary>Every text, the title first.</summary>
    public IReadOnlyList<DendrogramText> Texts { get; }

    /// <summary>Every line: community brackets, then the tree's elbows in merge order, then the axis.</summary>
    public IReadOnlyList<DendrogramPolyline> Lines { get; }

    /// <summary>Where each finest community's branch starts (indexed by community): x = <see cref="LabelWidth"/>, y = the middle of its rows.</summary>
    public IReadOnlyList<(double X, double Y)> Leaves { get; }

    /// <summary>The vertical centre of each concept's row (indexed by concept).</summary>
    public IReadOnlyList<double> ConceptRows { get; }

    /// <summary>Lays out the dendrogram of <paramref name="atlas"/> under <paramref name="title"/> (default "Concept atlas").</summary>
    public static DendrogramLayout Of(ConceptAtlas atlas, string? title = null)
    {
        ArgumentNullException.ThrowIfNull(atlas);
        var tree = atlas.Hierarchy.Tree;
        var texts = new List<DendrogramText> { new(10, 20, title ?? "Concept atlas", TextAnchor.Start, TitleSize, Bold: true) };
        var lines = new List<DendrogramPolyline>();
        var y = new double[2 * tree.LeafCount - 1];
        var x = new double[y.Length];
        var rows = new double[atlas.Concepts.Count];
        // Rows: concepts in the tree's left-to-right leaf order, a small gap between communities.
        double cursor = Top;
        foreach (int leaf in tree.Leaves(tree.Root))
        {
            double first = cursor;
            for (int i = 0; i < atlas.Concepts.Count; i++)
            {
                if (atlas.Hierarchy.Communities[i] != leaf) continue;
                rows[i] = cursor;
                texts.Add(new DendrogramText(LabelWidth - 8, cursor + 5, atlas.Concepts[i], TextAnchor.End, LabelSize));
                cursor += RowHeight;
            }
            double last = cursor - RowHeight;
            y[leaf] = (first + last) / 2;
            x[leaf] = LabelWidth;
            lines.Add(new DendrogramPolyline([(LabelWidth - 4, first - 4), (LabelWidth - 4, last + 4)], BracketColour, 1));
            cursor += GroupGap;
        }
        var sims = tree.Merges.Select(m => m.Similarity).ToArray();
        double hi = sims.Length == 0 ? 1 : sims.Max(), lo = sims.Length == 0 ? 0 : sims.Min();
        if (hi - lo < 1e-12) { hi += 0.5; lo -= 0.5; }
        double X(double s) => LabelWidth + 20 + (hi - s) / (hi - lo) * (PlotWidth - 40);
        for (int i = 0; i < tree.Merges.Count; i++)
        {
            var m = tree.Merges[i];
            int id = tree.LeafCount + i;
            x[id] = X(m.Similarity);
            y[id] = (y[m.Left] + y[m.Right]) / 2;
            foreach (int c in new[] { m.Left, m.Right })
                lines.Add(new DendrogramPolyline([(x[c], y[c]), (x[id], y[c]), (x[id], y[id])], TreeColour, 1.5));
        }
        // Axis: the linkage similarity.
        double axisY = cursor + 5;
        lines.Add(new DendrogramPolyline([(X(hi), axisY), (X(lo), axisY)], AxisColour, 1));
        foreach (var s in new[] { hi, (hi + lo) / 2, lo })
            texts.Add(new DendrogramText(X(s), axisY + 15, s.ToString("0.000", CultureInfo.InvariantCulture), TextAnchor.Middle, AxisSize));
        texts.Add(new DendrogramText(X(lo) + 5, axisY + 4, "linkage", TextAnchor.Start, AxisSize));
        var leaves = Enumerable.Range(0, tree.LeafCount).Select(l => (x[l], y[l])).ToArray();
        return new DendrogramLayout(LabelWidth + PlotWidth + 20, cursor + 30, texts, lines, leaves, rows);
    }

    /// <summary>The drawing as an SVG document.</summary>
    public string ToSvg()
    {
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.Append(inv, $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{Width}\" height=\"{Height:0}\" viewBox=\"0 0 {Width} {Height:0}\" font-family=\"sans-serif\" font-size=\"{LabelSize}\">\n");
        sb.Append("<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");
        foreach (var t in Texts)
        {
            string anchor = t.Anchor switch { TextAnchor.Middle => " text-anchor=\"middle\"", TextAnchor.End => " text-anchor=\"end\"", _ => "" };
            string size = t.Size == LabelSize ? "" : string.Create(inv, $" font-size=\"{t.Size}\"");
            sb.Append(inv, $"<text x=\"{t.X:0.#}\" y=\"{t.Y:0.#}\"{anchor}{size}{(t.Bold ? " font-weight=\"bold\"" : "")}>{Escape(t.Text)}</text>\n");
        }
        foreach (var l in Lines)
        {
            if (l.Points.Count == 2)
                sb.Append(inv, $"<line x1=\"{l.Points[0].X:0.#}\" y1=\"{l.Points[0].Y:0.#}\" x2=\"{l.Points[1].X:0.#}\" y2=\"{l.Points[1].Y:0.#}\" stroke=\"{l.Colour}\"{(l.Width == 1 ? "" : string.Create(inv, $" stroke-width=\"{l.Width}\""))}/>\n");
            else
                sb.Append(inv, $"<polyline points=\"{string.Join(" ", l.Points.Select(p => string.Create(inv, $"{p.X:0.#},{p.Y:0.#}")))}\" fill=\"none\" stroke=\"{l.Colour}\" stroke-width=\"{l.Width}\"/>\n");
        }
        sb.Append("</svg>\n");
        return sb.ToString();
    }

    /// <summary>
    /// The drawing as pixels: <paramref name="scale"/> pixels per drawing unit (the canvas is
    /// ceil(<see cref="Width"/> · scale) × ceil(<see cref="Height"/> · scale)), lines at their stroke widths, text in
    /// <see cref="PixelFont"/> at the whole-number glyph scale nearest to its size (at least 1).
    /// </summary>
    public RgbCanvas Rasterize(int scale = 2)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(scale, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(scale, 16);
        var canvas = new RgbCanvas((int)Math.Ceiling(Width * scale), (int)Math.Ceiling(Height * scale));
        foreach (var l in Lines)
        {
            var colour = Rgb.Parse(l.Colour);
            for (int i = 1; i < l.Points.Count; i++)
                canvas.Line(l.Points[i - 1].X * scale, l.Points[i - 1].Y * scale, l.Points[i].X * scale, l.Points[i].Y * scale, l.Width * scale, colour);
        }
        var ink = Rgb.Parse(TextColour);
        foreach (var t in Texts)
        {
            // The font's 7-pixel capitals stand for a 12-unit font's capitals (about 8.5 units): one font pixel per
            // 12/7 units would blur, so the glyph scale is the nearest whole number.
            int glyph = Math.Max(1, (int)Math.Round(t.Size * scale / LabelSize));
            int width = PixelFont.Width(t.Text) * glyph;
            double x = t.X * scale;
            int left = (int)Math.Round(t.Anchor switch { TextAnchor.Middle => x - width / 2.0, TextAnchor.End => x - width, _ => x });
            // The bitmap font is wider than the SVG's sans-serif: a text that would run off the right edge (the axis
            // label) is moved left to end at it.
            left = Math.Max(0, Math.Min(left, canvas.Width - width - 2));
            canvas.Text(left, (int)Math.Round(t.Y * scale), t.Text, glyph, ink, t.Bold);
        }
        return canvas;
    }

    private static string Escape(string s) => s.Replace("&", "&amp;").Replace("<", "&lt;").Replace(">", "&gt;").Replace("\"", "&quot;");
}
