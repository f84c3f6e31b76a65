namespace Spm.Core.Metrics;

/// <summary>How SSIM treats a multi-channel image.</summary>
public enum SsimColorMode
{
    /// <summary>SSIM of each channel separately, then the mean over channels (the usual choice for RGB, e.g. scikit-image's <c>channel_axis</c>).</summary>
    ChannelMean,

    /// <summary>SSIM of the BT.601 luma Y = 0.299 R + 0.587 G + 0.114 B (needs exactly 3 channels).</summary>
    Luminance,
}

/// <summary>
/// Parameters of SSIM (Wang, Bovik, Sheikh, Simoncelli 2004). The defaults are the paper's: an 11x11 Gaussian
/// window with sigma 1.5, K1 = 0.01, K2 = 0.03, on images whose values span <see cref="DataRange"/> (1 for [0, 1]).
/// Only "valid" window positions are used (the window never leaves the image), as in the authors' reference code.
/// </summary>
/// <param name="WindowSize">Side of the square Gaussian window, odd, at least 1.</param>
/// <param name="Sigma">Standard deviation of the Gaussian window in pixels.</param>
/// <param name="K1">Luminance stabiliser: C1 = (K1 * L)^2.</param>
/// <param name="K2">Contrast stabiliser: C2 = (K2 * L)^2.</param>
/// <param name="DataRange">L, the dynamic range of the pixel values.</param>
/// <param name="ColorMode">Per-channel mean or luminance.</param>
public sealed record SsimOptions(
    int WindowSize = 11,
    double Sigma = 1.5,
    double K1 = 0.01,
    double K2 = 0.03,
    double DataRange = 1.0,
    SsimColorMode ColorMode = SsimColorMode.ChannelMean)
{
    /// <summary>The paper's parameters, per-channel mean.</summary>
    public static SsimOptions Default { get; } = new();
}
