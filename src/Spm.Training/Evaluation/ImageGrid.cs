using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using Spm.Core.IO;

namespace Spm.Training.Evaluation;

/// <summary>
/// Lays planar RGB float images ([3, H, W], values in [0, 1]) out in a grid and writes it as a PNG.
/// Used for the base | erased comparison sheets of <c>spm eval</c> and for looking at the tiny-shapes world.
/// </summary>
public static class ImageGrid
{
    /// <summary>
    /// Composes <paramref name="cells"/> (row-major, null for an empty cell) into one planar image of
    /// <paramref name="rows"/> x <paramref name="columns"/> cells of <paramref name="height"/> x <paramref name="width"/>,
    /// separated by <paramref name="gap"/> pixels of <paramref name="gapValue"/>.
    /// </summary>
    /// <returns>The grid and its height and width.</returns>
    public static (float[] Image, int Height, int Width) Compose(
        IReadOnlyList<float[]?> cells, int rows, int columns, int height, int width, int gap = 2, float gapValue = 1f)
    {
        ArgumentNullException.ThrowIfNull(cells);
        if (rows <= 0 || columns <= 0 || height <= 0 || width <= 0 || gap < 0) throw new ArgumentException("Grid dimensions must be positive.");
        if (cells.Count > rows * columns) throw new ArgumentException($"{cells.Count} cells do not fit in {rows}x{columns}.");
        long gh = (long)rows * height + (long)(rows + 1) * gap, gw = (long)columns * width + (long)(columns + 1) * gap;
        if (gh * gw > 64L * 1024 * 1024) throw new ArgumentException($"A {gh}x{gw} grid is too large.");
        int H = (int)gh, W = (int)gw, plane = H * W, cellPlane = height * width;
        var grid = new float[3 * plane];
        Array.Fill(grid, gapValue);
        for (int k = 0; k < cells.Count; k++)
        {
            var cell = cells[k];
            if (cell is null) continue;
            if (cell.Length != 3 * cellPlane) throw new ArgumentException($"Cell {k} has {cell.Length} values, expected {3 * cellPlane}.");
            int top = gap + (k / columns) * (height + gap), left = gap + (k % columns) * (width + gap);
            for (int c = 0; c < 3; c++)
                for (int y = 0; y < height; y++)
                    cell.AsSpan(c * cellPlane + y * width, width).CopyTo(grid.AsSpan(c * plane + (top + y) * W + left, width));
        }
        return (grid, H, W);
    }

    /// <summary>Writes a planar RGB float image as an 8-bit PNG (values clamped to [0, 1], rounded), atomically.</summary>
    public static void SavePng(string path, ReadOnlySpan<float> image, int height, int width)
    {
        ArgumentNullException.ThrowIfNull(path);
        int plane = height * width;
        if (height <= 0 || width <= 0 || image.Length != 3 * plane) throw new ArgumentException($"Expected 3 x {height} x {width} values, got {image.Length}.");
        var pixels = new Rgb24[plane];
        for (int i = 0; i < plane; i++)
            pixels[i] = new Rgb24(ToByte(image[i]), ToByte(image[plane + i]), ToByte(image[2 * plane + i]));
        using var png = Image.LoadPixelData<Rgb24>(pixels, width, height);
        AtomicFile.Write(path, s => png.SaveAsPng(s));
    }

    /// <summary>Reads a PNG (or any format ImageSharp knows) into a planar RGB float image in [0, 1].</summary>
    public static (float[] Image, int Height, int Width) LoadRgb(string path)
    {
        using var img = Image.Load<Rgb24>(path);
        int h = img.Height, w = img.Width, plane = h * w;
        var data = new float[3 * plane];
        img.ProcessPixelRows(rows =>
        {
            for (int y = 0; y < h; y++)
            {
                var row = rows.GetRowSpan(y);
                for (int x = 0; x < w; x++)
                {
                    data[y * w + x] = row[x].R / 255f;
                    data[plane + y * w + x] = row[x].G / 255f;
                    data[2 * plane + y * w + x] = row[x].B / 255f;
                }
            }
        });
        return (data, h, w);
    }

    private static byte ToByte(float v) => (byte)Math.Clamp(MathF.Round(v * 255f), 0f, 255f);
}
