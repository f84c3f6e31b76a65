namespace Spm.Diffusion.Schedulers;

/// <summary>
/// The training noise schedule of a diffusers config: betas, cumulative alpha products and the matching
/// Karras-style sigmas, in float32 exactly as diffusers builds them (torch float32 linspace, cumprod and sqrt),
/// so that everything derived from them rounds like diffusers does.
/// </summary>
public sealed class NoiseSchedule
{
    private readonly float[] _betas;
    private readonly float[] _alphasCumprod;
    private readonly float[] _sigmas;

    private NoiseSchedule(float[] betas)
    {
        _betas = betas;
        _alphasCumprod = new float[betas.Length];
        _sigmas = new float[betas.Length];
        float prod = 1f;
        for (int i = 0; i < betas.Length; i++)
        {
            prod *= 1f - betas[i]; // torch.cumprod over float32 alphas: sequential float32 products
            _alphasCumprod[i] = prod;
            _sigmas[i] = MathF.Sqrt((1f - prod) / prod);
        }
    }

    /// <summary>Builds the schedule of <paramref name="config"/> (beta_schedule, beta_start/end, trained_betas).</summary>
    /// <exception cref="ArgumentException">The beta schedule is unknown or the betas are out of (0, 1).</exception>
    public static NoiseSchedule FromConfig(SchedulerConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        int n = config.NumTrainTimesteps;
        if (n < 2) throw new ArgumentException($"num_train_timesteps must be at least 2, got {n}.", nameof(config));
        float[] betas;
        if (config.TrainedBetas is { } trained)
        {
            betas = trained.Select(b => (float)b).ToArray();
            if (betas.Length != n)
                throw new ArgumentException($"trained_betas has {betas.Length} entries but num_train_timesteps is {n}.", nameof(config));
        }
        else
        {
            betas = config.BetaSchedule switch
            {
                "linear" => TorchLinspaceFloat32((float)config.BetaStart, (float)config.BetaEnd, n),
                // scaled_linear: linspace of the square roots (python floats, cast to float32), squared in float32.
                "scaled_linear" => TorchLinspaceFloat32((float)Math.Sqrt(config.BetaStart), (float)Math.Sqrt(config.BetaEnd), n)
                    .Select(b => b * b).ToArray(),
                "squaredcos_cap_v2" => CosineBetas(n),
                _ => throw new ArgumentException(
                    $"Unknown beta_schedule '{config.BetaSchedule}' (expected linear, scaled_linear or squaredcos_cap_v2).", nameof(config)),
            };
        }
        foreach (var b in betas)
            if (!(b > 0f && b < 1f)) throw new ArgumentException($"Every beta must lie in (0, 1); got {b}.", nameof(config));
        return new NoiseSchedule(betas);
    }

    /// <summary>Number of training timesteps.</summary>
    public int Length => _betas.Length;

    /// <summary>beta_t, float32.</summary>
    public IReadOnlyList<float> Betas => _betas;

    /// <summary>alpha_bar_t = prod_{s&lt;=t} (1 - beta_s), float32 cumulative product.</summary>
    public IReadOnlyList<float> AlphasCumprod => _alphasCumprod;

    /// <summary>sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t), float32 (the table Euler/LMS/DPM interpolate).</summary>
    public IReadOnlyList<float> Sigmas => _sigmas;

    internal float[] AlphasCumprodArray => _alphasCumprod;

    internal float[] SigmasArray => _sigmas;

    /// <summary>
    /// Forward diffusion q(x_t | x_0): <c>sqrt(alpha_bar_t) * original + sqrt(1 - alpha_bar_t) * noise</c> (diffusers'
    /// add_noise), for training and image-to-image.
    /// </summary>
    public void AddNoise(ReadOnlySpan<float> original, ReadOnlySpan<float> noise, int timestep, Span<float> destination)
    {
        if ((uint)timestep >= (uint)Length) throw new ArgumentOutOfRangeException(nameof(timestep), $"timestep must be in [0, {Length}).");
        if (noise.Length != original.Length || destination.Length != original.Length)
            throw new ArgumentException("original, noise and destination must have the same length.");
        float ac = _alphasCumprod[timestep];
        float a = MathF.Sqrt(ac), s = MathF.Sqrt(1f - ac);
        for (int i = 0; i < original.Length; i++) destination[i] = a * original[i] + s * noise[i];
    }

    /// <summary>
    /// torch.linspace for float32 on CPU: a float32 step, and values counted from the start for the first half and
    /// from the end for the second half (so both ends are exact).
    /// </summary>
    internal static float[] TorchLinspaceFloat32(float start, float end, int steps)
    {
        var v = new float[steps];
        if (steps == 1) { v[0] = start; return v; }
        float step = (end - start) / (steps - 1);
        int halfway = steps / 2;
        for (int i = 0; i < steps; i++)
            v[i] = i < halfway ? start + step * i : end - step * (steps - i - 1);
        return v;
    }

    // betas_for_alphas_bar with the cosine alpha_bar (Nichol & Dhariwal), in double then cast, capped at 0.999.
    private static float[] CosineBetas(int n)
    {
        static double AlphaBar(double t) => Math.Pow(Math.Cos((t + 0.008) / 1.008 * Math.PI / 2), 2);
        var betas = new float[n];
        for (int i = 0; i < n; i++)
        {
            double t1 = (double)i / n, t2 = (double)(i + 1) / n;
            betas[i] = (float)Math.Min(1 - AlphaBar(t2) / AlphaBar(t1), 0.999);
        }
        return betas;
    }
}
