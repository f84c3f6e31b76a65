namespace Spm.Diffusion.Schedulers;

/// <summary>
/// Timesteps and sigmas of the sigma-space schedulers that share EulerDiscreteScheduler's set_timesteps
/// (Euler, Euler ancestral, LMS): the grid, sigmas interpolated on the float32 table in double, optional Karras
/// sigmas with their fractional timesteps, a final 0, and the float32 cast at the end.
/// </summary>
internal static class KDiffusionSchedule
{
    /// <summary>The timesteps and sigmas (with the final 0) for <paramref name="n"/> inference steps.</summary>
    /// <param name="config">The scheduler configuration.</param>
    /// <param name="schedule">The training noise schedule (its float32 sigma table).</param>
    /// <param name="spacing">The timestep spacing (linspace, leading or trailing).</param>
    /// <param name="n">Number of inference steps.</param>
    /// <param name="timestepsAsFloat32">Euler keeps float32 timesteps (and interpolates at them); LMS keeps float64.</param>
    /// <param name="allowKarras">Whether this scheduler honours use_karras_sigmas.</param>
    public static (double[] Timesteps, float[] Sigmas) Build(SchedulerConfig config, NoiseSchedule schedule, string spacing,
        int n, bool timestepsAsFloat32, bool allowKarras)
    {
        var timesteps = DiscreteTimesteps.Grid(spacing, config.NumTrainTimesteps, n, config.StepsOffset);
        if (timestepsAsFloat32)
            for (int i = 0; i < n; i++) timesteps[i] = (float)timesteps[i];
        var table = schedule.SigmasArray;
        var sigmas = timesteps.Select(t => NumPy.InterpOnIndexGrid(t, table)).ToArray();
        if (allowKarras && config.UseKarrasSigmas)
        {
            var logTable = SigmaMath.LogTable(table);
            sigmas = SigmaMath.Karras(sigmas[^1], sigmas[0], n);
            timesteps = sigmas.Select(s => SigmaMath.SigmaToT(s, logTable)).ToArray();
            if (timestepsAsFloat32)
                for (int i = 0; i < n; i++) timesteps[i] = (float)timesteps[i];
        }
        var result = new float[n + 1];
        for (int i = 0; i < n; i++) result[i] = (float)sigmas[i];
        result[n] = 0f;
        return (timesteps, result);
    }

    /// <summary>init_noise_sigma: sigma_max for linspace/trailing spacing, sqrt(sigma_max^2 + 1) for leading (float32).</summary>
    public static double InitNoiseSigma(float[] sigmas, string spacing)
    {
        if (sigmas.Length == 0) return 1.0;
        float max = sigmas.Max();
        return spacing is "linspace" or "trailing" ? max : MathF.Sqrt(max * max + 1f);
    }

    /// <summary>scale_model_input: sample / sqrt(sigma^2 + 1), float32.</summary>
    public static void Scale(ReadOnlySpan<float> sample, Span<float> destination, float sigma)
    {
        float denom = MathF.Sqrt(sigma * sigma + 1f);
        for (int i = 0; i < sample.Length; i++) destination[i] = sample[i] / denom;
    }

    /// <summary>The denoised estimate x0 for epsilon, v_prediction or sample outputs at noise level sigma (float32).</summary>
    public static float Denoised(string prediction, float x, float m, float sigma, float vOut, float vSkip) => prediction switch
    {
        "epsilon" => x - sigma * m,
        "v_prediction" => m * vOut + x / vSkip,
        _ => m,
    };
}
