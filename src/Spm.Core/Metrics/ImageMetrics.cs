namespace Spm.Core.Metrics;

/// <summary>
/// Full-reference image quality metrics on planar float images (channel-major: [C, H, W] flattened, values
/// nominally in [0, <see cref="SsimOptions.DataRange"/>]). Pure math: no image library involved.
/// </summary>
public static class ImageMetrics
{
    /// <summary>Mean squared error over every value of two equally long arrays.</summary>
    /// <exception cref="ArgumentException">The lengths differ or are zero.</exception>
    public static double MeanSquaredError(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        CheckSameLength(a, b);
        double sum = 0;
        for (int i = 0; i < a.Length; i++)
        {
            double d = (double)a[i] - b[i];
            sum += d * d;
        }
        return sum / a.Length;
    }

    /// <summary>
    /// Peak signal-to-noise ratio in decibels, 10 log10(L^2 / MSE) with the MSE taken over all channels;
    /// <see cref="double.PositiveInfinity"/> for identical images.
    /// </summary>
    /// <param name="a">First image (any layout, same as <paramref name="b"/>).</param>
    /// <param name="b">Second image.</param>
    /// <param name="dataRange">L, the peak value range (1 for images in [0, 1]).</param>
    public static double Psnr(ReadOnlySpan<float> a, ReadOnlySpan<float> b, double dataRange = 1.0)
    {
        if (!(dataRange > 0)) throw new ArgumentOutOfRangeException(nameof(dataRange), "Data range must be positive.");
        double mse = MeanSquaredError(a, b);
        return mse == 0 ? double.PositiveInfinity : 10.0 * Math.Log10(dataRange * dataRange / mse);
    }

    /// <summary>
    /// Mean SSIM of two planar images of <paramref name="channels"/> x <paramref name="height"/> x
    /// <paramref name="width"/>: per channel then averaged, or on luma, as <see cref="SsimOptions.ColorMode"/> says.
    /// 1 for identical images.
    /// </summary>
    /// <exception cref="ArgumentException">Sizes do not match the arrays, or the image is smaller than the window.</exception>
    public static double Ssim(ReadOnlySpan<float> a, ReadOnlySpan<float> b, int channels, int height, int width, SsimOptions? options = null)
    {
        options ??= SsimOptions.Default;
        if (channels <= 0 || height <= 0 || width <= 0) throw new ArgumentException("Image dimensions must be positive.");
        long plane = (long)height * width;
        if (a.Length != plane * channels || b.Length != plane * channels)
            throw new ArgumentException($"Expected {channels}x{height}x{width} = {plane * channels} values, got {a.Length} and {b.Length}.");
        if (options.ColorMode == SsimColorMode.Luminance)
        {
            if (channels != 3) throw new ArgumentException("Luminance SSIM needs 3 channels (RGB).");
            var ya = new float[plane];
            var yb = new float[plane];
            ToLuma(a, ya);
            ToLuma(b, yb);
            return SsimPlane(ya, yb, height, width, options);
        }
        double sum = 0;
        for (int c = 0; c < channels; c++)
        {
            var range = new Range((int)(c * plane), (int)((c + 1) * plane));
            sum += SsimPlane(a[range], b[range], height, width, options);
        }
        return sum / channels;
    }

    /// <summary>Mean SSIM of two single-channel images of <paramref name="height"/> x <paramref name="width"/>.</summary>
    /// <exception cref="ArgumentException">Sizes do not match, or the image is smaller than the window.</exception>
    public static double SsimPlane(ReadOnlySpan<float> a, ReadOnlySpan<float> b, int height, int width, SsimOptions? options = null)
    {
        options ??= SsimOptions.Default;
        int win = options.WindowSize;
        if (win < 1 || win % 2 == 0) throw new ArgumentException("SSIM window size must be odd and positive.");
        if (!(options.Sigma > 0) || !(options.DataRange > 0)) throw new ArgumentException("SSIM sigma and data range must be positive.");
        if (a.Length != (long)height * width || b.Length != a.Length)
            throw new ArgumentException($"Expected {height}x{width} values, got {a.Length} and {b.Length}.");
        if (height < win || width < win)
            throw new ArgumentException($"Image {height}x{width} is smaller than the {win}x{win} SSIM window.");

        var kernel = GaussianKernel(win, options.Sigma);
        int oh = height - win + 1, ow = width - win + 1;
        // The five local statistics (means, second moments) by a separable "valid" Gaussian filter, in double
        // so that var = E[x^2] - E[x]^2 does not lose the small variances of flat regions to cancellation.
        var rows = new double[5 * height * ow];
        int rowPlane = height * ow;
        for (int y = 0; y < height; y++)
        {
            int baseIn = y * width;
            for (int x = 0; x < ow; x++)
            {
                double sa = 0, sb = 0, saa = 0, sbb = 0, sab = 0;
                for (int k = 0; k < win; k++)
                {
                    double w = kernel[k];
                    double va = a[baseIn + x + k], vb = b[baseIn + x + k];
                    sa += w * va;
                    sb += w * vb;
                    saa += w * va * va;
                    sbb += w * vb * vb;
                    sab += w * va * vb;
                }
                int o = y * ow + x;
                rows[o] = sa;
                rows[rowPlane + o] = sb;
                rows[2 * rowPlane + o] = saa;
                rows[3 * rowPlane + o] = sbb;
                rows[4 * rowPlane + o] = sab;
            }
        }

        double c1 = options.K1 * options.DataRange; c1 *= c1;
        double c2 = options.K2 * options.DataRange; c2 *= c2;
        double total = 0;
        for (int y = 0; y < oh; y++)
        {
            for (int x = 0; x < ow; x++)
            {
                double ma = 0, mb = 0, eaa = 0, ebb = 0, eab = 0;
                for (int k = 0; k < win; k++)
                {
                    double w = kernel[k];
                    int o = (y + k) * ow + x;
                    ma += w * rows[o];
                    mb += w * rows[rowPlane + o];
                    eaa += w * rows[2 * rowPlane + o];
                    ebb += w * rows[3 * rowPlane + o];
                    eab += w * rows[4 * rowPlane + o];
                }
                double va = eaa - ma * ma, vb = ebb - mb * mb, cov = eab - ma * mb;
                total += (2 * ma * mb + c1) * (2 * cov + c2) / ((ma * ma + mb * mb + c1) * (va + vb + c2));
            }
        }
        return total / ((double)oh * ow);
    }

    /// <summary>A normalised 1-D Gaussian of odd length <paramref name="size"/> (the 2-D window is its outer product).</summary>
    internal static double[] GaussianKernel(int size, double sigma)
    {
        var k = new double[size];
        int half = size / 2;
        double sum = 0;
        for (int i = 0; i < size; i++)
        {
            double d = i - half;
            k[i] = Math.Exp(-d * d / (2 * sigma * sigma));
            sum += k[i];
        }
        for (int i = 0; i < size; i++) k[i] /= sum;
        return k;
    }

    private static void ToLuma(ReadOnlySpan<float> rgb, Span<float> y)
    {
        int n = y.Length;
        for (int i = 0; i < n; i++) y[i] = 0.299f * rgb[i] + 0.587f * rgb[n + i] + 0.114f * rgb[2 * n + i];
    }

    private static void CheckSameLength(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        if (a.Length == 0 || a.Length != b.Length)
            throw new ArgumentException($"Images must have the same non-zero number of values, got {a.Length} and {b.Length}.");
    }
}
