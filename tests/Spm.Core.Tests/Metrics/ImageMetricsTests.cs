using Spm.Core.Metrics;

namespace Spm.Core.Tests.Metrics;

public class ImageMetricsTests
{
    private const int H = 16, W = 13;

    // The same deterministic test images as the independent pure-Python reference (direct 2-D window sums,
    // no separable filtering, variance as E[(x - mu)^2]) whose outputs are pasted below.
    private static float[] ImageA()
    {
        var a = new float[3 * H * W];
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++)
                    a[(c * H + y) * W + x] = (float)(((x * 7 + y * 3 + c * 5) % 11) / 10.0);
        return a;
    }

    private static float[] ImageB()
    {
        var b = new float[3 * H * W];
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++)
                    b[(c * H + y) * W + x] = (float)(((x * x + 2 * y + c) % 9) / 8.0);
        return b;
    }

    private static float[] ImageB2(float[] a)
    {
        var b = new float[a.Length];
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++)
                {
                    int i = (c * H + y) * W + x;
                    b[i] = (float)(0.8 * a[i] + 0.1 + ((x + y + c) % 3) * 0.02);
                }
        return b;
    }

    [Test]
    public void SsimMatchesIndependentReferenceOnDissimilarImages()
    {
        var a = ImageA();
        var b = ImageB();
        int plane = H * W;
        double[] expected = [-0.034872024458363335, -0.13649671498868493, 0.021666564867500886];
        for (int c = 0; c < 3; c++)
            Assert.That(ImageMetrics.SsimPlane(a.AsSpan(c * plane, plane), b.AsSpan(c * plane, plane), H, W),
                Is.EqualTo(expected[c]).Within(1e-9), $"channel {c}");
        Assert.That(ImageMetrics.Ssim(a, b, 3, H, W), Is.EqualTo(-0.04990072485984914).Within(1e-9));
    }

    [Test]
    public void SsimMatchesIndependentReferenceOnSimilarImages()
    {
        var a = ImageA();
        Assert.That(ImageMetrics.Ssim(a, ImageB2(a), 3, H, W), Is.EqualTo(0.973082499945905).Within(1e-9));
    }

    [Test]
    public void LuminanceSsimMatchesReference()
    {
        // The reference computed luma in double; the library in float, hence the looser tolerance.
        var options = SsimOptions.Default with { ColorMode = SsimColorMode.Luminance };
        Assert.That(ImageMetrics.Ssim(ImageA(), ImageB(), 3, H, W, options), Is.EqualTo(-0.17139585347796352).Within(1e-5));
    }

    [Test]
    public void IdenticalImagesGiveSsimOneAndInfinitePsnr()
    {
        var a = ImageA();
        Assert.That(ImageMetrics.Ssim(a, a, 3, H, W), Is.EqualTo(1.0).Within(1e-12));
        Assert.That(ImageMetrics.Psnr(a, a), Is.EqualTo(double.PositiveInfinity));
        Assert.That(ImageMetrics.MeanSquaredError(a, a), Is.EqualTo(0.0));
    }

    [TestCase(0.2f, 0.7f)]
    [TestCase(0.0f, 1.0f)]
    [TestCase(0.5f, 0.5f)]
    public void ConstantImagesGiveTheLuminanceTermInClosedForm(float ca, float cb)
    {
        // No variance anywhere: the contrast-structure term is C2 / C2 = 1 and SSIM = (2 a b + C1) / (a^2 + b^2 + C1).
        var a = Enumerable.Repeat(ca, 20 * 20).ToArray();
        var b = Enumerable.Repeat(cb, 20 * 20).ToArray();
        const double c1 = 0.0001;
        double expected = (2.0 * ca * cb + c1) / ((double)ca * ca + (double)cb * cb + c1);
        Assert.That(ImageMetrics.SsimPlane(a, b, 20, 20), Is.EqualTo(expected).Within(1e-9));
    }

    [Test]
    public void PsnrOfAConstantOffsetIsClosedForm()
    {
        // Values on a 1/64 grid plus 1/8: float arithmetic is exact, MSE = 1/64, PSNR = 10 log10(64).
        var a = Enumerable.Range(0, 300).Select(i => (i % 50) / 64f).ToArray();
        var b = a.Select(v => v + 0.125f).ToArray();
        Assert.That(ImageMetrics.Psnr(a, b), Is.EqualTo(10 * Math.Log10(64)).Within(1e-12));
        // With a 0..255 range the same error is 255^2 times smaller relative to the peak.
        Assert.That(ImageMetrics.Psnr(a, b, 255), Is.EqualTo(10 * Math.Log10(64 * 255.0 * 255.0)).Within(1e-9));
    }

    [Test]
    public void SsimIsSymmetricAndBoundedByOne()
    {
        var a = ImageA();
        var b = ImageB2(a);
        double ab = ImageMetrics.Ssim(a, b, 3, H, W), ba = ImageMetrics.Ssim(b, a, 3, H, W);
        Assert.That(ab, Is.EqualTo(ba).Within(1e-12));
        Assert.That(ab, Is.LessThan(1.0));
    }

    [Test]
    public void HandCheckedOneWindowCase()
    {
        // Window 1 (sigma irrelevant): every pixel is its own window, variances are 0, SSIM is the per-pixel
        // luminance term averaged. Pixels (0, 1) vs (0, 0): terms (C1 / C1) = 1 and C1 / (1 + C1).
        var options = SsimOptions.Default with { WindowSize = 1 };
        const double c1 = 0.0001;
        double expected = (1.0 + c1 / (1 + c1)) / 2;
        Assert.That(ImageMetrics.SsimPlane([0f, 1f], [0f, 0f], 1, 2, options), Is.EqualTo(expected).Within(1e-12));
    }

    [Test]
    public void BadSizesThrow()
    {
        Assert.Throws<ArgumentException>(() => ImageMetrics.Ssim(new float[100], new float[100], 1, 10, 10));
        Assert.Throws<ArgumentException>(() => ImageMetrics.Ssim(new float[3 * 144], new float[3 * 143], 3, 12, 12));
        Assert.Throws<ArgumentException>(() => ImageMetrics.Psnr(new float[4], new float[5]));
        Assert.Throws<ArgumentException>(() => ImageMetrics.Ssim(new float[2 * 144], new float[2 * 144], 2, 12, 12,
            SsimOptions.Default with { ColorMode = SsimColorMode.Luminance }));
    }
}
