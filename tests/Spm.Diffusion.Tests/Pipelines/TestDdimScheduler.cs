using Spm.Core.Randomness;
using Spm.Diffusion.Schedulers;

namespace Spm.Diffusion.Tests.Pipelines;

/// <summary>
/// A minimal deterministic DDIM (eta 0, epsilon prediction, leading spacing) written here from the published
/// formulas, so pipeline tests control the sampler independently of the production schedulers. The
/// <see cref="Noisy"/> variant also adds seeded noise at each step, to test that stochastic samplers get their
/// generator per image.
/// </summary>
internal sealed class TestDdimScheduler : IScheduler
{
    private readonly double[] _alphasCumprod;
    private readonly bool _noisy;
    private double[] _timesteps = [];
    private int _stepRatio;

    public TestDdimScheduler(SchedulerConfig config, bool noisy = false)
    {
        Config = config;
        _noisy = noisy;
        int n = config.NumTrainTimesteps;
        _alphasCumprod = new double[n];
        double sqrtStart = Math.Sqrt(config.BetaStart), sqrtEnd = Math.Sqrt(config.BetaEnd), prod = 1;
        for (int i = 0; i < n; i++)
        {
            double sb = sqrtStart + (sqrtEnd - sqrtStart) * i / (n - 1);
            prod *= 1 - sb * sb;
            _alphasCumprod[i] = prod;
        }
    }

    public SchedulerConfig Config { get; }
    public IReadOnlyList<double> Timesteps => _timesteps;
    public double InitNoiseSigma => 1.0;

    public void SetTimesteps(int numInferenceSteps)
    {
        _stepRatio = Config.NumTrainTimesteps / numInferenceSteps;
        _timesteps = Enumerable.Range(0, numInferenceSteps).Reverse().Select(i => (double)(i * _stepRatio + Config.StepsOffset)).ToArray();
    }

    public void ScaleModelInput(ReadOnlySpan<float> sample, Span<float> destination, int stepIndex) => sample.CopyTo(destination);

    public void Step(ReadOnlySpan<float> modelOutput, int stepIndex, Span<float> sample, SeededRandom? noise)
    {
        int t = (int)_timesteps[stepIndex];
        int prev = t - _stepRatio;
        double at = _alphasCumprod[t], ap = prev >= 0 ? _alphasCumprod[prev] : _alphasCumprod[0];
        for (int i = 0; i < sample.Length; i++)
        {
            double x0 = (sample[i] - Math.Sqrt(1 - at) * modelOutput[i]) / Math.Sqrt(at);
            double v = Math.Sqrt(ap) * x0 + Math.Sqrt(1 - ap) * modelOutput[i];
            if (_noisy) v += 0.01 * noise!.NextGaussian();
            sample[i] = (float)v;
        }
    }
}

internal sealed class TestDdimFactory(bool noisy = false) : ISchedulerFactory
{
    public string Name => noisy ? "test-ddim-noisy" : "test-ddim";
    public IScheduler Create(SchedulerConfig config) => new TestDdimScheduler(config, noisy);
}
