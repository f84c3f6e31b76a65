using Spm.Core.Randomness;

namespace Spm.Shapes.World;

/// <summary>
/// Degradations used to check that the evaluator copes with imperfect (generated) pictures: additive Gaussian
/// noise and Gaussian blur on planar float images.
/// </summary>
public static class ImageCorruption
{
    /// <summary>Adds N(0, sigma^2) to every value, then clamps to [0, 1].</summary>
    public static void AddGaussianNoise(Span<float> image, float sigma, SeededRandom rng)
    {
        ArgumentNullException.ThrowIfNull(rng);
        if (sigma < 0) throw new ArgumentOutOfRangeException(nameof(sigma));
        if (sigma == 0) return;
        for (int i = 0; i < image.Length; i++)
            image[i] = Math.Clamp(image[i] + sigma * (float)rng.NextGaussian(), 0f, 1f);
    }

    /// <summary>
    /// Separable Gaussian blur of each of <paramref name="channels"/> planes of <paramref name="height"/> x
    /// <paramref name="width"/>, in place. The kernel reaches 3 sigma; borders repeat the edge pixel.
    /// </summary>
    public static void GaussianBlur(Span<float> image, int channels, int height, int width, float sigma)
    {
        if (sigma < 0) throw new ArgumentOutOfRangeException(nameof(sigma));
        if (image.Length != channels * height * width) throw new ArgumentException("Image length does not match its dimensions.");
        if (sigma == 0) return;
        int radius = Math.Max(1, (int)MathF.Ceiling(3 * sigma));
        var kernel = new float[2 * radius + 1];
        float sum = 0;
        for (int i = -radius; i <= radius; i++) sum += kernel[i + radius] = MathF.Exp(-i * i / (2 * sigma * sigma));
        for (int i = 0; i < kernel.Length; i++) kernel[i] /= sum;

        var temp = new float[height * width];
        for (int c = 0; c < channels; c++)
        {
            var plane = image.Slice(c * height * width, height * width);
            for (int y = 0; y < height; y++)
                for (int x = 0; x < width; x++)
                {
                    float acc = 0;
                    for (int k = -radius; k <= radius; k++) acc += kernel[k + radius] * plane[y * width + Math.Clamp(x + k, 0, width - 1)];
                    temp[y * width + x] = acc;
                }
            for (int y = 0; y < height; y++)
                for (int x = 0; x < width; x++)
                {
                    float acc = 0;
                    for (int k = -radius; k <= radius; k++) acc += kernel[k + radius] * temp[Math.Clamp(y + k, 0, height - 1) * width + x];
                    plane[y * width + x] = acc;
                }
        }
    }
}
