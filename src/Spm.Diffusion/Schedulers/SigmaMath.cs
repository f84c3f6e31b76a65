namespace Spm.Diffusion.Schedulers;

/// <summary>Sigma-space helpers shared by the k-diffusion style schedulers (Euler, LMS, DPM-Solver++).</summary>
internal static class SigmaMath
{
    /// <summary>
    /// Karras et al. (2022) noise levels: <c>(max^(1/rho) + ramp * (min^(1/rho) - max^(1/rho)))^rho</c> with rho = 7 and
    /// ramp = linspace(0, 1, n), in double.
    /// </summary>
    public static double[] Karras(double sigmaMin, double sigmaMax, int n)
    {
        const double rho = 7.0;
        var ramp = NumPy.Linspace(0, 1, n);
        double minInvRho = Math.Pow(sigmaMin, 1 / rho), maxInvRho = Math.Pow(sigmaMax, 1 / rho);
        var sigmas = new double[n];
        for (int i = 0; i < n; i++) sigmas[i] = Math.Pow(maxInvRho + ramp[i] * (minInvRho - maxInvRho), rho);
        return sigmas;
    }

    /// <summary>
    /// diffusers' _sigma_to_t: the fractional training timestep whose log-sigma matches, interpolating linearly in
    /// log-sigma between the two bracketing table entries (table log-sigmas are float32, as np.log of a float32 array).
    /// </summary>
    public static double SigmaToT(double sigma, float[] logSigmas)
    {
        double logSigma = Math.Log(Math.Max(sigma, 1e-10));
        // low = last index whose log-sigma is <= log(sigma) (argmax of the cumulative count; 0 if none), capped at n-2.
        int count = 0, low = 0, best = 0;
        for (int i = 0; i < logSigmas.Length; i++)
        {
            if (logSigma - logSigmas[i] >= 0) count++;
            if (count > best) { best = count; low = i; }
        }
        low = Math.Min(low, logSigmas.Length - 2);
        int high = low + 1;
        double lo = logSigmas[low], hi = logSigmas[high];
        double w = Math.Clamp((lo - logSigma) / (lo - hi), 0, 1);
        return (1 - w) * low + w * high;
    }

    /// <summary>np.log of the float32 sigma table, kept in float32.</summary>
    public static float[] LogTable(float[] sigmas)
    {
        var logs = new float[sigmas.Length];
        for (int i = 0; i < sigmas.Length; i++) logs[i] = MathF.Log(sigmas[i]);
        return logs;
    }
}
