using Spm.Core.Randomness;

namespace Spm.Diffusion.Pipelines;

/// <summary>
/// The documented initial noise: image <c>i</c> of a request with seed <c>S</c> uses a fresh
/// <see cref="SeededRandom"/> (xoshiro256** seeded through SplitMix64, Box–Muller Gaussians) created from
/// <c>S + i</c> (mod 2^64); its first C·h·w Gaussian samples fill the latents in [C,h,w] row-major order, and the
/// scheduler's InitNoiseSigma multiplies them. The same generator then feeds the scheduler's stochastic steps
/// (Euler ancestral, DDIM with eta &gt; 0). So an image depends only on its seed, never on batching or threads.
/// </summary>
public static class LatentNoise
{
    /// <summary>The seed of image <paramref name="index"/> of a request seeded with <paramref name="seed"/>.</summary>
    public static ulong ImageSeed(ulong seed, int index) => unchecked(seed + (ulong)index);

    /// <summary>Creates the generator of one image and fills <paramref name="latents"/> with its unit-variance noise.</summary>
    public static SeededRandom Fill(ulong imageSeed, Span<float> latents)
    {
        var rng = new SeededRandom(imageSeed);
        rng.FillGaussian(latents);
        return rng;
    }
}
