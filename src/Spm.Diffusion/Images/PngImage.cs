using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats.Png;
using SixLabors.ImageSharp.PixelFormats;
using Spm.Core;
using Spm.Core.IO;

namespace Spm.Diffusion.Images;

/// <summary>
/// PNG encoding with the generation parameters in a <c>parameters</c> text chunk (tEXt for Latin-1 text,
/// iTXt otherwise), the key image tools read. The encoding is deterministic: same pixels and text, same bytes.
/// </summary>
public static class PngImage
{
    /// <summary>The text chunk keyword holding the generation parameters.</summary>
    public const string ParametersKeyword = "parameters";

    /// <summary>Encodes RGB pixels (3 bytes per pixel, row-major) as PNG bytes with an optional parameters chunk.</summary>
    public static byte[] Encode(ReadOnlySpan<byte> rgb, int width, int height, string? parameters)
    {
        if (width < 1 || height < 1 || (long)width * height * 3 != rgb.Length)
            throw new ArgumentException($"{rgb.Length} bytes are not a {width}x{height} RGB image.", nameof(rgb));
        using var image = Image.LoadPixelData<Rgb24>(rgb, width, height);
        image.Metadata.ExifProfile = null;
        var png = image.Metadata.GetPngMetadata();
        png.TextData.Clear();
        if (parameters is not null) png.TextData.Add(new PngTextData(ParametersKeyword, parameters, string.Empty, string.Empty));
        using var ms = new MemoryStream();
        image.Save(ms, new PngEncoder
        {
            ColorType = PngColorType.Rgb,
            BitDepth = PngBitDepth.Bit8,
            CompressionLevel = PngCompressionLevel.DefaultCompression,
            // Keep text uncompressed (tEXt/iTXt) so tools that only read tEXt find it.
            TextCompressionThreshold = int.MaxValue,
            ChunkFilter = PngChunkFilter.ExcludePhysicalChunk | PngChunkFilter.ExcludeGammaChunk,
        });
        return ms.ToArray();
    }

    /// <summary>Writes PNG bytes to <paramref name="path"/> atomically; an existing file is kept unless <paramref name="overwrite"/>.</summary>
    /// <exception cref="IOException">The file exists and <paramref name="overwrite"/> is false.</exception>
    public static void Write(string path, byte[] png, bool overwrite) => AtomicFile.WriteAllBytes(path, png, overwrite);

    /// <summary>Reads the parameters text of a PNG file, or null when it has none.</summary>
    /// <exception cref="SpmFormatException">The file is not a readable PNG.</exception>
    public static string? ReadParameters(string path)
    {
        try
        {
            var info = Image.Identify(path) ?? throw new SpmFormatException(path, null, "not an image.");
            var png = info.Metadata.GetPngMetadata();
            return png.TextData.FirstOrDefault(t => t.Keyword == ParametersKeyword).Value;
        }
        catch (Exception ex) when (ex is UnknownImageFormatException or InvalidImageContentException)
        {
            throw new SpmFormatException(path, null, $"not a readable PNG: {ex.Message}", ex);
        }
    }
}
