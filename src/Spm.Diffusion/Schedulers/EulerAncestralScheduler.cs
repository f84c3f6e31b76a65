using Spm.Core.Randomness;

namespace Spm.Diffusion.Schedulers;

/// <summary>
/// Euler ancestral, equal to diffusers' EulerAncestralDiscreteScheduler: an Euler step down to sigma_down, then fresh
/// noise of scale sigma_up drawn from the <see cref="SeededRandom"/> given to Step (one Gaussian per element per step,
/// the last step included, so the generator advances the same way whatever the schedule).
/// </summary>
internal sealed class EulerAncestralScheduler : SchedulerBase
{
    private float[] _sigmas = [];
    private float[] _noise = [];

    public EulerAncestralScheduler(SchedulerConfig config) : base(config)
    {
        // diffusers raises NotImplementedError for sample prediction here; fail at creation rather than mid-run.
        if (config.PredictionType == "sample")
            throw new ArgumentException("Euler ancestral supports prediction_type epsilon or v_prediction, not sample.", nameof(config));
    }

    protected override string DefaultSpacing => "linspace";

    internal IReadOnlyList<float> Sigmas => _sigmas;

    public override double InitNoiseSigma => KDiffusionSchedule.InitNoiseSigma(_sigmas, Spacing);

    protected override void OnSetTimesteps(int numInferenceSteps)
    {
        // diffusers' EulerAncestralDiscreteScheduler has no Karras option.
        (TimestepValues, _sigmas) = KDiffusionSchedule.Build(Config, Schedule, Spacing, numInferenceSteps, timestepsAsFloat32: true, allowKarras: false);
    }

    public override void ScaleModelInput(ReadOnlySpan<float> sample, Span<float> destination, int stepIndex)
    {
        base.ScaleModelInput(sample, destination, stepIndex);
        KDiffusionSchedule.Scale(sample, destination, _sigmas[stepIndex]);
    }

    protected override void StepCore(ReadOnlySpan<float> modelOutput, int stepIndex, Span<float> sample, SeededRandom? noise)
    {
        float sigma = _sigmas[stepIndex];
        float sigmaTo = _sigmas[stepIndex + 1];
        float sigmaUp = MathF.Sqrt(Math.Max(0f, sigmaTo * sigmaTo * (sigma * sigma - sigmaTo * sigmaTo) / (sigma * sigma)));
        float sigmaDown = MathF.Sqrt(Math.Max(0f, sigmaTo * sigmaTo - sigmaUp * sigmaUp));
        float dt = sigmaDown - sigma;
        float vOut = -sigma / MathF.Sqrt(sigma * sigma + 1f), vSkip = sigma * sigma + 1f;
        string prediction = Config.PredictionType;

        if (_noise.Length != sample.Length) _noise = new float[sample.Length];
        DrawNoise(noise, _noise, "Euler ancestral");
        for (int i = 0; i < sample.Length; i++)
        {
            float x = sample[i];
            float x0 = KDiffusionSchedule.Denoised(prediction, x, modelOutput[i], sigma, vOut, vSkip);
            float derivative = (x - x0) / sigma;
            float prev = x + derivative * dt;
            sample[i] = prev + _noise[i] * sigmaUp;
        }
    }

    /// <summary>Registry entry "euler-a".</summary>
    public sealed class Factory : ISchedulerFactory
    {
        public string Name => "euler-a";

        public IScheduler Create(SchedulerConfig config) => new EulerAncestralScheduler(config);
    }
}
