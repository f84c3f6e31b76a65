using Spm.Core.Randomness;

namespace Spm.Training.LatentAnchoring;

/// <summary>The random choices of one training iteration.</summary>
/// <param name="Steps">k: how many of the DDIM steps to run before querying (1..steps-1).</param>
/// <param name="Height">Image height in pixels.</param>
/// <param name="Width">Image width in pixels.</param>
/// <param name="QueryTimestep">The timestep (1000-step grid) of the erasure and anchoring predictions.</param>
/// <param name="VaeScaleFactor">Pixels per latent cell of the model's VAE (8 for SD; 4 for the built-in tiny-shapes model).</param>
public readonly record struct IterationDraw(int Steps, int Height, int Width, int QueryTimestep, int VaeScaleFactor = 8)
{
    /// <summary>Latent height (pixels / VAE scale factor).</summary>
    public int LatentHeight => Height / VaeScaleFactor;

    /// <summary>Latent width (pixels / VAE scale factor).</summary>
    public int LatentWidth => Width / VaeScaleFactor;
}

/// <summary>Draws k, the image size and the query timestep of an iteration exactly as spec section 2 describes.</summary>
public static class IterationSampler
{
    /// <summary>Sizes the reference draws from: res/2, res/2+64, ..., res-64 (the nominal size itself is never drawn).</summary>
    public static int[] CandidateSizes(int resolution)
    {
        var sizes = new List<int>();
        for (int s = resolution / 2; s <= resolution - 64; s += 64) sizes.Add(s);
        if (sizes.Count == 0) sizes.Add(resolution);
        return sizes.ToArray();
    }

    /// <summary>Draws the choices of one iteration.</summary>
    /// <param name="rng">The trainer's generator (advanced).</param>
    /// <param name="options">Training options.</param>
    /// <param name="ddimTimesteps">The DDIM schedule's timesteps, in denoising order (for <see cref="QueryTimestepMode.Exact"/>).</param>
    /// <param name="vaeScaleFactor">Pixels per latent cell of the model (the latent size is pixels / this).</param>
    public static IterationDraw Draw(SeededRandom rng, LatentAnchoringOptions options, IReadOnlyList<double> ddimTimesteps, int vaeScaleFactor = 8)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(vaeScaleFactor, 1);
        int k = rng.NextInt(1, options.SamplingSteps);
        int h = options.Resolution, w = options.Resolution;
        if (options.DynamicResolution)
        {
            var sizes = CandidateSizes(options.Resolution);
            h = sizes[rng.NextInt(0, sizes.Length)];
            w = sizes[rng.NextInt(0, sizes.Length)];
        }
        return new IterationDraw(k, h, w, QueryTimestep(k, options, ddimTimesteps), vaeScaleFactor);
    }

    /// <summary>The query timestep for <paramref name="k"/> steps under the options' <see cref="QueryTimestepMode"/>.</summary>
    public static int QueryTimestep(int k, LatentAnchoringOptions options, IReadOnlyList<double> ddimTimesteps)
        => options.QueryTimestep == QueryTimestepMode.Reference
            ? ReferenceQueryTimestep(k, options.SamplingSteps)
            : (int)Math.Round(ddimTimesteps[Math.Min(k, ddimTimesteps.Count - 1)]);

    /// <summary><c>999 - floor(k * 1000 / steps)</c>: the reference code's query timestep.</summary>
    public static int ReferenceQueryTimestep(int k, int steps) => 999 - (int)Math.Floor(k * 1000.0 / steps);
}
