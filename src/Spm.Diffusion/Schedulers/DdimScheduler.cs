using Spm.Core.Randomness;

namespace Spm.Diffusion.Schedulers;

/// <summary>
/// DDIM (Song et al. 2021), equal to diffusers' DDIMScheduler: deterministic for eta = 0, with
/// <c>eta * sqrt(variance)</c> fresh Gaussian noise per step otherwise. Arithmetic is float32 in diffusers' order.
/// </summary>
internal sealed class DdimScheduler : SchedulerBase
{
    private int[] _timesteps = [];
    private float[]? _noise;

    public DdimScheduler(SchedulerConfig config) : base(config)
    {
        if (config.Eta < 0 || double.IsNaN(config.Eta)) throw new ArgumentException($"DDIM eta must be >= 0; got {config.Eta}.", nameof(config));
    }

    protected override string DefaultSpacing => "leading";

    private float FinalAlphaCumprod => Config.SetAlphaToOne ? 1f : Schedule.AlphasCumprodArray[0];

    protected override void OnSetTimesteps(int numInferenceSteps)
    {
        _timesteps = DiscreteTimesteps.IntegerGrid(Spacing, Config.NumTrainTimesteps, numInferenceSteps, Config.StepsOffset);
        TimestepValues = _timesteps.Select(t => (double)t).ToArray();
        CheckRange(_timesteps, Config.NumTrainTimesteps);
    }

    internal static void CheckRange(int[] timesteps, int trainSteps)
    {
        foreach (int t in timesteps)
            if ((uint)t >= (uint)trainSteps)
                throw new ArgumentException($"Timestep {t} falls outside [0, {trainSteps}): check steps_offset and timestep_spacing.");
    }

    protected override void StepCore(ReadOnlySpan<float> modelOutput, int stepIndex, Span<float> sample, SeededRandom? noise)
    {
        int t = _timesteps[stepIndex];
        int prevT = t - Config.NumTrainTimesteps / NumInferenceSteps;
        var ac = Schedule.AlphasCumprodArray;
        float aT = ac[t];
        float aPrev = prevT >= 0 ? ac[prevT] : FinalAlphaCumprod;
        float bT = 1f - aT;
        float bPrev = 1f - aPrev;
        float sqrtA = MathF.Sqrt(aT), sqrtB = MathF.Sqrt(bT);

        float variance = bPrev / bT * (1f - aT / aPrev);
        float std = (float)Config.Eta * MathF.Sqrt(variance);
        float dirCoeff = MathF.Sqrt(1f - aPrev - std * std);
        float sqrtAPrev = MathF.Sqrt(aPrev);
        bool clip = Config.ClipSample;
        float range = (float)Config.ClipSampleRange;
        string prediction = Config.PredictionType;

        for (int i = 0; i < sample.Length; i++)
        {
            float x = sample[i], m = modelOutput[i];
            float x0, eps;
            switch (prediction)
            {
                case "epsilon": x0 = (x - sqrtB * m) / sqrtA; eps = m; break;
                case "sample": x0 = m; eps = (x - sqrtA * x0) / sqrtB; break;
                default: x0 = sqrtA * x - sqrtB * m; eps = sqrtA * m + sqrtB * x; break; // v_prediction
            }
            if (clip) x0 = Math.Clamp(x0, -range, range);
            sample[i] = sqrtAPrev * x0 + dirCoeff * eps;
        }

        if (Config.Eta > 0)
        {
            _noise ??= new float[sample.Length];
            if (_noise.Length != sample.Length) _noise = new float[sample.Length];
            DrawNoise(noise, _noise, "DDIM with eta > 0");
            for (int i = 0; i < sample.Length; i++) sample[i] += std * _noise[i];
        }
    }

    /// <summary>Registry entry "ddim".</summary>
    public sealed class Factory : ISchedulerFactory
    {
        public string Name => "ddim";

        public IScheduler Create(SchedulerConfig config) => new DdimScheduler(config);
    }
}
