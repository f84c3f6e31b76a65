using Spm.Core.Randomness;

namespace Spm.Diffusion.Schedulers;

/// <summary>
/// Linear multistep (order 4), equal to diffusers' LMSDiscreteScheduler: the coefficient of each stored derivative
/// is the integral over [sigma_i, sigma_{i+1}] of its Lagrange basis polynomial on the last sigmas, integrated
/// numerically like diffusers' scipy quad (here Gauss-Legendre, exact for these polynomials of degree &lt;= 3).
/// </summary>
internal sealed class LmsScheduler : SchedulerBase
{
    /// <summary>Order used by diffusers' pipelines (step's default order=4).</summary>
    public const int Order = 4;

    private float[] _sigmas = [];
    private readonly List<float[]> _derivatives = []; // oldest first, at most Order
    private readonly double[] _coeffs = new double[Order];

    public LmsScheduler(SchedulerConfig config) : base(config) { }

    protected override string DefaultSpacing => "linspace";

    internal IReadOnlyList<float> Sigmas => _sigmas;

    public override double InitNoiseSigma => KDiffusionSchedule.InitNoiseSigma(_sigmas, Spacing);

    protected override void OnSetTimesteps(int numInferenceSteps)
    {
        (TimestepValues, _sigmas) = KDiffusionSchedule.Build(Config, Schedule, Spacing, numInferenceSteps, timestepsAsFloat32: false, allowKarras: true);
        _derivatives.Clear();
    }

    public override void ScaleModelInput(ReadOnlySpan<float> sample, Span<float> destination, int stepIndex)
    {
        base.ScaleModelInput(sample, destination, stepIndex);
        KDiffusionSchedule.Scale(sample, destination, _sigmas[stepIndex]);
    }

    /// <summary>
    /// get_lms_coefficient: integral from sigma[t] to sigma[t+1] of prod_{k != current} (tau - sigma[t-k]) /
    /// (sigma[t-current] - sigma[t-k]).
    /// </summary>
    internal double LmsCoefficient(int order, int t, int current)
    {
        double Basis(double tau)
        {
            double prod = 1.0;
            for (int k = 0; k < order; k++)
            {
                if (k == current) continue;
                prod *= (tau - _sigmas[t - k]) / ((double)_sigmas[t - current] - _sigmas[t - k]);
            }
            return prod;
        }
        return GaussLegendre4(Basis, _sigmas[t], _sigmas[t + 1]);
    }

    // 4-point Gauss-Legendre on [a, b]: exact for polynomials up to degree 7 (the integrands have degree <= 3).
    private static double GaussLegendre4(Func<double, double> f, double a, double b)
    {
        double inner = Math.Sqrt(3.0 / 7 - 2.0 / 7 * Math.Sqrt(6.0 / 5));
        double outer = Math.Sqrt(3.0 / 7 + 2.0 / 7 * Math.Sqrt(6.0 / 5));
        double wInner = (18 + Math.Sqrt(30)) / 36, wOuter = (18 - Math.Sqrt(30)) / 36;
        double mid = (a + b) / 2, half = (b - a) / 2;
        double sum = wInner * (f(mid - half * inner) + f(mid + half * inner)) + wOuter * (f(mid - half * outer) + f(mid + half * outer));
        return half * sum;
    }

    protected override void StepCore(ReadOnlySpan<float> modelOutput, int stepIndex, Span<float> sample, SeededRandom? noise)
    {
        int n = sample.Length;
        float sigma = _sigmas[stepIndex];
        float vOut = -sigma / MathF.Sqrt(sigma * sigma + 1f), vSkip = sigma * sigma + 1f;
        string prediction = Config.PredictionType;

        float[] slot;
        if (_derivatives.Count == Order)
        {
            slot = _derivatives[0]; // reuse the buffer of the derivative that drops out of the window
            _derivatives.RemoveAt(0);
        }
        else
        {
            slot = new float[n];
        }
        for (int i = 0; i < n; i++)
        {
            float x = sample[i];
            float x0 = KDiffusionSchedule.Denoised(prediction, x, modelOutput[i], sigma, vOut, vSkip);
            slot[i] = (x - x0) / sigma;
        }
        _derivatives.Add(slot);

        int order = Math.Min(stepIndex + 1, Order);
        for (int c = 0; c < order; c++) _coeffs[c] = LmsCoefficient(order, stepIndex, c);

        // prev = sample + sum(coeff_c * derivative_c), coefficient 0 with the newest derivative; float32 like torch.
        for (int i = 0; i < n; i++)
        {
            float acc = 0f;
            for (int c = 0; c < order; c++) acc += (float)_coeffs[c] * _derivatives[_derivatives.Count - 1 - c][i];
            sample[i] += acc;
        }
    }

    /// <summary>Registry entry "lms".</summary>
    public sealed class Factory : ISchedulerFactory
    {
        public string Name => "lms";

        public IScheduler Create(SchedulerConfig config) => new LmsScheduler(config);
    }
}
