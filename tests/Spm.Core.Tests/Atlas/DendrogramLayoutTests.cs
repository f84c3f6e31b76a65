using Spm.Core.Atlas;
using Spm.Core.Drawing;
using Spm.Tests.Common;

namespace Spm.Core.Tests.Atlas;

/// <summary>The dendrogram layout drawn as SVG and as pixels (the hand-made atlas: 8 concepts, 4 communities).</summary>
[TestFixture]
public sealed class DendrogramLayoutTests
{
    private string _dir = null!;
    private ConceptAtlas _atlas = null!;

    [SetUp]
    public void SetUp()
    {
        _dir = TestPaths.NewTempDir("spm-dendrogram");
        var path = Path.Combine(_dir, "atlas.json");
        File.WriteAllText(path, HandMadeAtlas.Json);
        _atlas = ConceptAtlas.Load(path);
    }

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, true);

    private static bool Dark(Rgb c) => 0.2126 * c.R + 0.7152 * c.G + 0.0722 * c.B < 128;

    [Test]
    public void Svg_HasEveryLabel_AndOneElbowPerChildOfEveryMerge()
    {
        var svg = _atlas.ToSvg("T");
        Assert.That(svg, Does.StartWith("<svg"));
        foreach (var c in _atlas.Concepts) Assert.That(svg, Does.Contain($">{c}</text>"));
        Assert.That(svg.Split("<polyline").Length - 1, Is.EqualTo(2 * _atlas.Hierarchy.Tree.Merges.Count));
        Assert.That(svg.Split("<line").Length - 1, Is.EqualTo(_atlas.Hierarchy.CommunityCount + 1), "a bracket per community and the axis");
    }

    [Test]
    public void Raster_HasTheLayoutsSize_AndTheLeafColumnIsDarkExactlyAtTheLeafRows()
    {
        var layout = DendrogramLayout.Of(_atlas, "T");
        const int scale = 2;
        var canvas = layout.Rasterize(scale);
        Assert.That(canvas.Width, Is.EqualTo((int)Math.Ceiling(layout.Width * scale)));
        Assert.That(canvas.Height, Is.EqualTo((int)Math.Ceiling(layout.Height * scale)));
        Assert.That(canvas.Pixels.Length, Is.EqualTo(canvas.Width * canvas.Height * 3));

        // Just right of the leaves, before the first merge, only the leaves' horizontal branches cross the column.
        int x = (int)((DendrogramLayout.LabelWidth + 10) * scale);
        var runs = new List<(int From, int To)>();
        // Down to the last concept row (below it the axis numbers may cross the column).
        int bottom = (int)((layout.ConceptRows.Max() + 9) * scale);
        for (int y = 0; y < bottom; y++)
        {
            if (!Dark(canvas[x, y])) continue;
            if (runs.Count > 0 && runs[^1].To == y - 1) runs[^1] = (runs[^1].From, y);
            else runs.Add((y, y));
        }
        var leafRows = layout.Leaves.Select(l => l.Y * scale).OrderBy(v => v).ToArray();
        Assert.That(runs, Has.Count.EqualTo(leafRows.Length), $"dark runs {string.Join(", ", runs)}; leaves at {string.Join(", ", leafRows)}");
        for (int i = 0; i < runs.Count; i++)
        {
            Assert.That((runs[i].From + runs[i].To + 1) / 2.0, Is.EqualTo(leafRows[i]).Within(1.0), $"leaf {i}");
            Assert.That(runs[i].To - runs[i].From + 1, Is.EqualTo(3), "a 1.5-unit stroke is 3 pixels at scale 2");
        }
        foreach (var leaf in layout.Leaves)
            Assert.That(Dark(canvas[(int)(leaf.X * scale) + 1, (int)Math.Round(leaf.Y * scale)]), "the branch starts at the leaf");
    }

    [Test]
    public void Raster_DrawsEveryLabelOnItsRow_AndLeavesTheGapsBetweenRowsWhite()
    {
        var layout = DendrogramLayout.Of(_atlas, "T");
        const int scale = 2;
        var canvas = layout.Rasterize(scale);
        int right = (int)((DendrogramLayout.LabelWidth - 8) * scale);
        int InkIn(double top, double bottom)
        {
            int n = 0;
            for (int y = (int)(top * scale); y < (int)(bottom * scale); y++)
                for (int x = 0; x < right; x++) if (Dark(canvas[x, y])) n++;
            return n;
        }
        for (int i = 0; i < _atlas.Concepts.Count; i++)
        {
            double row = layout.ConceptRows[i];
            int expected = PixelFont.Width(_atlas.Concepts[i]);
            Assert.That(InkIn(row - 4, row + 5), Is.GreaterThan(expected), $"\"{_atlas.Concepts[i]}\" is drawn on its row");
            // The right end of the label touches its anchor: the last glyph's ink ends within a glyph of it.
            bool nearEnd = Enumerable.Range(right - PixelFont.Advance * scale, PixelFont.Advance * scale)
                .Any(x => Enumerable.Range((int)((row - 4) * scale), 9 * scale).Any(y => Dark(canvas[x, y])));
            Assert.That(nearEnd, $"\"{_atlas.Concepts[i]}\" ends at the label column's edge");
        }
        // Rows are 18 units apart and the glyphs about 9 units tall (descenders included): the band between two
        // rows of the same community has no ink.
        var rows = layout.ConceptRows.OrderBy(r => r).ToArray();
        for (int i = 1; i < rows.Length; i++)
            Assert.That(InkIn(rows[i - 1] + 6.5, rows[i] - 5), Is.EqualTo(0), $"gap above row {i}");
    }

    [Test]
    public void PixelFont_CoversPrintableAscii_AndBoxesTheRest()
    {
        for (char c = '!'; c <= '~'; c++)
        {
            int ink = 0;
            for (int r = 0; r < PixelFont.GlyphHeight; r++)
                for (int col = 0; col < PixelFont.GlyphWidth; col++) if (PixelFont.IsInk(c, col, r)) ink++;
            Assert.That(ink, Is.GreaterThan(0), $"'{c}' has ink");
        }
        Assert.That(PixelFont.IsInk(' ', 2, 3), Is.False);
        Assert.That(PixelFont.IsInk('l', 2, 3) && !PixelFont.IsInk('l', 0, 3), "'l' is a vertical stroke in the middle");
        Assert.That(PixelFont.IsInk('\u00e9', 0, 0) && PixelFont.IsInk('\u00e9', 4, 6), "non-ASCII is a box");
        Assert.That(PixelFont.Width("abc"), Is.EqualTo(17));
        Assert.That(Rgb.Parse("#2b6cb0"), Is.EqualTo(new Rgb(0x2b, 0x6c, 0xb0)));
        Assert.That(Rgb.Parse("#888"), Is.EqualTo(new Rgb(0x88, 0x88, 0x88)));
        Assert.Throws<FormatException>(() => Rgb.Parse("blue"));
    }
}
