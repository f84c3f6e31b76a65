using Spm.Core.Randomness;

namespace Spm.Diffusion.Schedulers;

/// <summary>
/// Euler (Karras et al. 2022, Algorithm 2 with s_churn = 0), equal to diffusers' EulerDiscreteScheduler, optionally
/// with Karras sigmas. Float32 arithmetic in diffusers' order.
/// </summary>
internal sealed class EulerScheduler : SchedulerBase
{
    private float[] _sigmas = [];

    public EulerScheduler(SchedulerConfig config) : base(config) { }

    protected override string DefaultSpacing => "linspace";

    /// <summary>Sigmas of the current schedule with the final 0 (length steps + 1).</summary>
    internal IReadOnlyList<float> Sigmas => _sigmas;

    public override double InitNoiseSigma => KDiffusionSchedule.InitNoiseSigma(_sigmas, Spacing);

    protected override void OnSetTimesteps(int numInferenceSteps)
    {
        (TimestepValues, _sigmas) = KDiffusionSchedule.Build(Config, Schedule, Spacing, numInferenceSteps, timestepsAsFloat32: true, allowKarras: true);
    }

    public override void ScaleModelInput(ReadOnlySpan<float> sample, Span<float> destination, int stepIndex)
    {
        base.ScaleModelInput(sample, destination, stepIndex);
        KDiffusionSchedule.Scale(sample, destination, _sigmas[stepIndex]);
    }

    protected override void StepCore(ReadOnlySpan<float> modelOutput, int stepIndex, Span<float> sample, SeededRandom? noise)
    {
        float sigma = _sigmas[stepIndex];
        float dt = _sigmas[stepIndex + 1] - sigma;
        float vOut = -sigma / MathF.Sqrt(sigma * sigma + 1f), vSkip = sigma * sigma + 1f;
        string prediction = Config.PredictionType;
        for (int i = 0; i < sample.Length; i++)
        {
            float x = sample[i];
            float x0 = KDiffusionSchedule.Denoised(prediction, x, modelOutput[i], sigma, vOut, vSkip);
            float derivative = (x - x0) / sigma;
            sample[i] = x + derivative * dt;
        }
    }

    /// <summary>Registry entry "euler".</summary>
    public sealed class Factory : ISchedulerFactory
    {
        public string Name => "euler";

        public IScheduler Create(SchedulerConfig config) => new EulerScheduler(config);
    }
}
