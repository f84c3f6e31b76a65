namespace Spm.Diffusion.Tests.Schedulers;

/// <summary>
/// Independent transcription of the published formulas the schedulers implement (DDPM betas, DDIM eq. 12, PNDM
/// eq. 9 + PLMS, Karras sigmas, Euler / ancestral Euler, LMS with analytic Lagrange integrals, DPM-Solver++ 2M), in
/// double. The only concession to diffusers is where it stores numbers: betas and alpha_bar live in float32 tensors,
/// and sigma schedules are cast to float32 (so the reference rounds those tables the same way).
/// </summary>
internal static class Ref
{
    public const int N = 1000;

    /// <summary>SD 1.x: scaled_linear betas 0.00085..0.012 (sqrt-linear, squared), cast to float32.</summary>
    public static float[] ScaledLinearBetas(double start = 0.00085, double end = 0.012, int n = N)
    {
        var b = new float[n];
        double s = Math.Sqrt(start), e = Math.Sqrt(end);
        for (int i = 0; i < n; i++)
        {
            double r = s + (e - s) * i / (n - 1);
            b[i] = (float)((float)r * (float)r);
        }
        return b;
    }

    public static float[] LinearBetas(double start, double end, int n = N)
    {
        var b = new float[n];
        for (int i = 0; i < n; i++) b[i] = (float)(start + (end - start) * i / (n - 1));
        return b;
    }

    /// <summary>Improved-DDPM cosine schedule: beta_i = min(1 - abar((i+1)/n)/abar(i/n), 0.999), abar(t) = cos^2((t+s)/(1+s) pi/2).</summary>
    public static float[] CosineBetas(int n = N)
    {
        var b = new float[n];
        for (int i = 0; i < n; i++)
        {
            double a1 = Math.Cos(((double)i / n + 0.008) / 1.008 * Math.PI / 2), a2 = Math.Cos(((double)(i + 1) / n + 0.008) / 1.008 * Math.PI / 2);
            b[i] = (float)Math.Min(1 - a2 * a2 / (a1 * a1), 0.999);
        }
        return b;
    }

    /// <summary>alpha_bar_t = prod (1 - beta), accumulated in float32 like torch.cumprod on a float32 tensor.</summary>
    public static float[] AlphaBar(float[] betas)
    {
        var a = new float[betas.Length];
        float p = 1f;
        for (int i = 0; i < betas.Length; i++) { p *= 1f - betas[i]; a[i] = p; }
        return a;
    }

    public static double[] SigmaTable(float[] alphaBar) => alphaBar.Select(a => Math.Sqrt((1.0 - a) / a)).ToArray();

    public static double Interp(double t, double[] table)
    {
        int lo = Math.Clamp((int)Math.Floor(t), 0, table.Length - 1);
        if (lo == table.Length - 1) return table[lo];
        double f = t - lo;
        return table[lo] * (1 - f) + table[lo + 1] * f;
    }

    /// <summary>Inverse of the sigma table by linear interpolation in log sigma.</summary>
    public static double SigmaToT(double sigma, double[] table)
    {
        double ls = Math.Log(sigma);
        if (ls <= Math.Log(table[0])) return 0;
        for (int i = 0; i < table.Length - 1; i++)
        {
            double a = Math.Log(table[i]), b = Math.Log(table[i + 1]);
            if (ls >= a && ls <= b) return i + (ls - a) / (b - a);
        }
        return table.Length - 1;
    }

    public static double[] Karras(double min, double max, int n, double rho = 7)
    {
        var s = new double[n];
        for (int i = 0; i < n; i++)
        {
            double ramp = n == 1 ? 0 : (double)i / (n - 1);
            s[i] = Math.Pow(Math.Pow(max, 1 / rho) + ramp * (Math.Pow(min, 1 / rho) - Math.Pow(max, 1 / rho)), rho);
        }
        return s;
    }

    /// <summary>Relative-or-absolute closeness: |a - e| &lt;= tol * max(1, |e|).</summary>
    public static bool Close(double actual, double expected, double tol) =>
        Math.Abs(actual - expected) <= tol * Math.Max(1.0, Math.Abs(expected));

    /// <summary>Index and values of the worst mismatch, for messages.</summary>
    public static string Worst(ReadOnlySpan<float> actual, double[] expected)
    {
        int worst = 0;
        double err = -1;
        for (int i = 0; i < expected.Length; i++)
        {
            double e = Math.Abs(actual[i] - expected[i]) / Math.Max(1.0, Math.Abs(expected[i]));
            if (e > err) { err = e; worst = i; }
        }
        return $"worst at {worst}: actual {actual[worst]:R}, expected {expected[worst]:R}, scaled error {err:E2}";
    }

    public static void AssertClose(ReadOnlySpan<float> actual, double[] expected, double tol, string what)
    {
        Assert.That(actual.Length, Is.EqualTo(expected.Length), what);
        for (int i = 0; i < expected.Length; i++)
            if (!Close(actual[i], expected[i], tol))
                Assert.Fail($"{what}: {Worst(actual, expected)}");
    }

    /// <summary>
    /// Like <see cref="AssertClose(ReadOnlySpan{float}, double[], double, string)"/> but the tolerance also scales with
    /// the step's input magnitude: float32 arithmetic (as in diffusers) on an input of size |x| carries ~|x| * 6e-8
    /// rounding, which cancellation (x + derivative * dt at large sigma) leaves in a much smaller result.
    /// </summary>
    public static void AssertClose(ReadOnlySpan<float> actual, double[] expected, double[] input, double tol, string what)
    {
        Assert.That(actual.Length, Is.EqualTo(expected.Length), what);
        for (int i = 0; i < expected.Length; i++)
        {
            double scale = Math.Max(1.0, Math.Max(Math.Abs(expected[i]), Math.Abs(input[i])));
            if (Math.Abs(actual[i] - expected[i]) > tol * scale)
                Assert.Fail($"{what}: at {i} actual {actual[i]:R}, expected {expected[i]:R}, input {input[i]:R}");
        }
    }

    /// <summary>Integral over [a, b] of the Lagrange basis polynomial L_j on nodes (exact, by expanding the polynomial).</summary>
    public static double LagrangeIntegral(double[] nodes, int j, double a, double b)
    {
        // Build prod_{k != j} (tau - x_k) / (x_j - x_k) as coefficients c[0] + c[1] tau + ...
        var c = new List<double> { 1.0 };
        for (int k = 0; k < nodes.Length; k++)
        {
            if (k == j) continue;
            double d = nodes[j] - nodes[k];
            var next = new double[c.Count + 1];
            for (int p = 0; p < c.Count; p++)
            {
                next[p + 1] += c[p] / d;
                next[p] -= c[p] * nodes[k] / d;
            }
            c = next.ToList();
        }
        double integral = 0;
        for (int p = 0; p < c.Count; p++) integral += c[p] * (Math.Pow(b, p + 1) - Math.Pow(a, p + 1)) / (p + 1);
        return integral;
    }
}
