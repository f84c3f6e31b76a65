using System.Globalization;

namespace Spm.Core.Drawing;

/// <summary>An RGB colour, 8 bits a channel.</summary>
/// <param name="R">Red.</param>
/// <param name="G">Green.</param>
/// <param name="B">Blue.</param>
public readonly record struct Rgb(byte R, byte G, byte B)
{
    /// <summary>White.</summary>
    public static Rgb White { get; } = new(255, 255, 255);

    /// <summary>Black.</summary>
    public static Rgb Black { get; } = new(0, 0, 0);

    /// <summary>Reads a CSS hex colour ("#2b6cb0", "#888") or the names white and black.</summary>
    /// <exception cref="FormatException">Anything else.</exception>
    public static Rgb Parse(string css)
    {
        ArgumentNullException.ThrowIfNull(css);
        var s = css.Trim().ToLowerInvariant();
        if (s == "white") return White;
        if (s == "black") return Black;
        if (s.StartsWith('#') && s.Length == 4) s = new string(['#', s[1], s[1], s[2], s[2], s[3], s[3]]);
        if (s.StartsWith('#') && s.Length == 7 && int.TryParse(s.AsSpan(1), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out int v))
            return new Rgb((byte)(v >> 16), (byte)(v >> 8), (byte)v);
        throw new FormatException($"'{css}' is not a colour (expected #rgb, #rrggbb, white or black).");
    }
}

/// <summary>
/// A white RGB raster to draw lines, rectangles and <see cref="PixelFont"/> text into, with pixel coordinates
/// (x to the right, y down; pixel (i, j) covers [i, i + 1) × [j, j + 1)). Drawing outside the canvas is clipped.
/// </summary>
public sealed class RgbCanvas
{
    private readonly byte[] _pixels;

    /// <summary>Creates a canvas filled with <paramref name="background"/> (white when null).</summary>
    public RgbCanvas(int width, int height, Rgb? background = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(width, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(height, 1);
        if ((long)width * height * 3 > Array.MaxLength) throw new ArgumentException($"A {width}x{height} canvas is too large.");
        Width = width;
        Height = height;
        _pixels = new byte[width * height * 3];
        var bg = background ?? Rgb.White;
        for (int i = 0; i < _pixels.Length; i += 3) (_pixels[i], _pixels[i + 1], _pixels[i + 2]) = (bg.R, bg.G, bg.B);
    }

    /// <summary>Width in pixels.</summary>
    public int Width { get; }

    /// <summary>Height in pixels.</summary>
    public int Height { get; }

    /// <summary>The pixels, row-major, 3 bytes (R, G, B) a pixel: what a PNG encoder takes.</summary>
    public ReadOnlySpan<byte> Pixels => _pixels;

    /// <summary>The colour at (<paramref name="x"/>, <paramref name="y"/>).</summary>
    public Rgb this[int x, int y]
    {
        get
        {
            ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)x, (uint)Width, nameof(x));
            ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)y, (uint)Height, nameof(y));
            int i = (y * Width + x) * 3;
            return new Rgb(_pixels[i], _pixels[i + 1], _pixels[i + 2]);
        }
    }

    /// <summary>Sets one pixel (ignored outside the canvas).</summary>
    public void Set(int x, int y, Rgb colour)
    {
        if ((uint)x >= (uint)Width || (uint)y >= (uint)Height) return;
        int i = (y * Width + x) * 3;
        (_pixels[i], _pixels[i + 1], _pixels[i + 2]) = (colour.R, colour.G, colour.B);
    }

    /// <summary>Fills the pixels whose centres lie in [x0, x1) × [y0, y1); a rectangle thinner than a pixel still gets one.</summary>
    public void FillRect(double x0, double y0, double x1, double y1, Rgb colour)
    {
        if (x1 < x0) (x0, x1) = (x1, x0);
        if (y1 < y0) (y0, y1) = (y1, y0);
        var (i0, i1) = PixelSpan(x0, x1);
        var (j0, j1) = PixelSpan(y0, y1);
        for (int j = Math.Max(0, j0); j < Math.Min(Height, j1); j++)
            for (int i = Math.Max(0, i0); i < Math.Min(Width, i1); i++) Set(i, j, colour);
    }

    /// <summary>
    /// A straight line of the given width between two points. Horizontal and vertical lines (all a dendrogram has) are
    /// filled rectangles extended by half the width at both ends, so the elbows of a polyline join without gaps;
    /// other lines are stamped with squares along their length.
    /// </summary>
    public void Line(double x0, double y0, double x1, double y1, double width, Rgb colour)
    {
        if (!(width > 0)) throw new ArgumentOutOfRangeException(nameof(width), width, "A line needs a positive width.");
        double h = width / 2;
        if (y0 == y1 || x0 == x1)
        {
            FillRect(Math.Min(x0, x1) - h, Math.Min(y0, y1) - h, Math.Max(x0, x1) + h, Math.Max(y0, y1) + h, colour);
            return;
        }
        double length = Math.Sqrt((x1 - x0) * (x1 - x0) + (y1 - y0) * (y1 - y0));
        int steps = (int)Math.Ceiling(length * 2);
        for (int s = 0; s <= steps; s++)
        {
            double t = s / (double)steps, x = x0 + t * (x1 - x0), y = y0 + t * (y1 - y0);
            FillRect(x - h, y - h, x + h, y + h, colour);
        }
    }

    /// <summary>
    /// Draws <paramref name="text"/> in <see cref="PixelFont"/>, each font pixel a <paramref name="scale"/>-pixel square,
    /// its left edge at <paramref name="left"/> and the baseline under pixel row <paramref name="baseline"/> − 1.
    /// Bold draws every glyph a second time one pixel to the right.
    /// </summary>
    public void Text(int left, int baseline, string text, int scale, Rgb colour, bool bold = false)
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentOutOfRangeException.ThrowIfLessThan(scale, 1);
        int top = baseline - (PixelFont.BaselineRow + 1) * scale;
        for (int k = 0; k < text.Length; k++)
        {
            int gx = left + k * PixelFont.Advance * scale;
            var glyph = PixelFont.Glyph(text[k]);
            for (int row = 0; row < PixelFont.GlyphHeight; row++)
                for (int col = 0; col < PixelFont.GlyphWidth; col++)
                {
                    if ((glyph[row] & (1 << (PixelFont.GlyphWidth - 1 - col))) == 0) continue;
                    for (int dy = 0; dy < scale; dy++)
                        for (int dx = 0; dx < scale + (bold ? 1 : 0); dx++)
                            Set(gx + col * scale + dx, top + row * scale + dy, colour);
                }
        }
    }

    // The pixels whose centres i + 0.5 lie in [a, b); at least the one nearest the middle when none does.
    private static (int From, int To) PixelSpan(double a, double b)
    {
        int from = (int)Math.Ceiling(a - 0.5), to = (int)Math.Ceiling(b - 0.5);
        if (to <= from)
        {
            from = (int)Math.Floor((a + b) / 2);
            to = from + 1;
        }
        return (from, to);
    }
}
