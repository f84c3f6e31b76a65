using Spm.Core.Tensors;

namespace Spm.Diffusion.Images;

/// <summary>Turns VAE output into 8-bit pixels.</summary>
public static class ImageConversion
{
    /// <summary>
    /// Image <paramref name="index"/> of a VAE output [B,3,H,W] in [-1,1] as interleaved RGB bytes (row-major):
    /// <c>round(clamp(x/2 + 0.5, 0, 1) · 255)</c>, as diffusers' image post-processing does. NaN maps to 0.
    /// </summary>
    public static byte[] ToRgb24(FloatTensor images, int index)
    {
        ArgumentNullException.ThrowIfNull(images);
        if (images.Rank != 4 || images.Shape[1] != 3)
            throw new ArgumentException($"expected [B,3,H,W] images, got {images.ShapeString}.", nameof(images));
        if ((uint)index >= (uint)images.Shape[0]) throw new ArgumentOutOfRangeException(nameof(index));
        int h = images.Shape[2], w = images.Shape[3], plane = h * w;
        var src = images.Data.AsSpan(index * 3 * plane, 3 * plane);
        var rgb = new byte[3 * plane];
        for (int c = 0; c < 3; c++)
        {
            var p = src.Slice(c * plane, plane);
            for (int i = 0; i < plane; i++) rgb[3 * i + c] = ToByte(p[i]);
        }
        return rgb;
    }

    private static byte ToByte(float x)
    {
        float v = x * 0.5f + 0.5f;
        if (!(v > 0f)) return 0; // also NaN
        if (v >= 1f) return 255;
        return (byte)MathF.Round(v * 255f, MidpointRounding.ToEven);
    }
}
