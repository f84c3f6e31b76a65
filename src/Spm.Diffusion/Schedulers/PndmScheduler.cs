using Spm.Core.Randomness;

namespace Spm.Diffusion.Schedulers;

/// <summary>
/// PNDM with skip_prk_steps (the SD 1.x default), equal to diffusers' PNDMScheduler: pseudo linear multistep (PLMS)
/// with the second timestep repeated, so the first two UNet calls build a second-order start. Arithmetic is float32
/// in diffusers' order.
/// </summary>
internal sealed class PndmScheduler : SchedulerBase
{
    private int[] _timesteps = [];
    private readonly List<float[]> _ets = []; // the last (up to) 4 model outputs, oldest first
    private float[]? _curSample;
    private float[] _combined = [];
    private int _counter;

    public PndmScheduler(SchedulerConfig config) : base(config)
    {
        if (!config.SkipPrkSteps)
            throw new NotSupportedException("PNDM with skip_prk_steps = false (Runge-Kutta warm-up) is not implemented; use skip_prk_steps = true (the Stable Diffusion setting).");
        if (config.PredictionType == "sample")
            throw new ArgumentException("PNDM supports prediction_type epsilon or v_prediction, not sample.", nameof(config));
    }

    protected override string DefaultSpacing => "leading";

    private float FinalAlphaCumprod => Config.SetAlphaToOne ? 1f : Schedule.AlphasCumprodArray[0];

    protected override void OnSetTimesteps(int numInferenceSteps)
    {
        var grid = DiscreteTimesteps.IntegerGrid(Spacing, Config.NumTrainTimesteps, numInferenceSteps, Config.StepsOffset);
        Array.Reverse(grid); // ascending, like diffusers' _timesteps
        DdimScheduler.CheckRange(grid, Config.NumTrainTimesteps);
        // plms_timesteps = concat(_timesteps[:-1], _timesteps[-2:-1], _timesteps[-1:])[::-1]
        var plms = new List<int>(grid.Length + 1);
        plms.AddRange(grid[..^1]);
        if (grid.Length >= 2) plms.Add(grid[^2]);
        plms.Add(grid[^1]);
        plms.Reverse();
        _timesteps = plms.ToArray();
        TimestepValues = _timesteps.Select(t => (double)t).ToArray();
        _ets.Clear();
        _curSample = null;
        _counter = 0;
    }

    protected override void StepCore(ReadOnlySpan<float> modelOutput, int stepIndex, Span<float> sample, SeededRandom? noise)
    {
        int n = sample.Length;
        int ratio = Config.NumTrainTimesteps / NumInferenceSteps;
        int timestep = _timesteps[stepIndex];
        int prevTimestep = timestep - ratio;

        if (_counter != 1)
        {
            // ets = ets[-3:] then append; the dropped buffer is reused for the new output.
            float[] slot;
            if (_ets.Count == 4)
            {
                slot = _ets[0];
                _ets.RemoveAt(0);
            }
            else
            {
                slot = new float[n];
            }
            modelOutput.CopyTo(slot);
            _ets.Add(slot);
        }
        else
        {
            prevTimestep = timestep;
            timestep += ratio;
        }

        if (_combined.Length != n) _combined = new float[n];
        var e = _combined;
        if (_ets.Count == 1 && _counter == 0)
        {
            modelOutput.CopyTo(e);
            _curSample = sample.ToArray();
        }
        else if (_ets.Count == 1 && _counter == 1)
        {
            var e1 = _ets[^1];
            for (int i = 0; i < n; i++) e[i] = (modelOutput[i] + e1[i]) / 2f;
            _curSample!.CopyTo(sample); // restart the second-order step from the first sample
            _curSample = null;
        }
        else if (_ets.Count == 2)
        {
            var (e1, e2) = (_ets[^1], _ets[^2]);
            for (int i = 0; i < n; i++) e[i] = (3f * e1[i] - e2[i]) / 2f;
        }
        else if (_ets.Count == 3)
        {
            var (e1, e2, e3) = (_ets[^1], _ets[^2], _ets[^3]);
            for (int i = 0; i < n; i++) e[i] = (23f * e1[i] - 16f * e2[i] + 5f * e3[i]) / 12f;
        }
        else
        {
            var (e1, e2, e3, e4) = (_ets[^1], _ets[^2], _ets[^3], _ets[^4]);
            const float inv24 = (float)(1.0 / 24);
            for (int i = 0; i < n; i++) e[i] = inv24 * (55f * e1[i] - 59f * e2[i] + 37f * e3[i] - 9f * e4[i]);
        }

        PrevSample(sample, timestep, prevTimestep, e);
        _counter++;
    }

    // Formula (9) of the PNDM paper, diffusers' _get_prev_sample.
    private void PrevSample(Span<float> sample, int timestep, int prevTimestep, float[] modelOutput)
    {
        var ac = Schedule.AlphasCumprodArray;
        float aT = ac[timestep];
        float aPrev = prevTimestep >= 0 ? ac[prevTimestep] : FinalAlphaCumprod;
        float bT = 1f - aT, bPrev = 1f - aPrev;
        bool v = Config.PredictionType == "v_prediction";
        float sqrtA = MathF.Sqrt(aT), sqrtB = MathF.Sqrt(bT);
        float sampleCoeff = MathF.Sqrt(aPrev / aT);
        float denom = aT * MathF.Sqrt(bPrev) + MathF.Sqrt(aT * bT * aPrev);
        float diff = aPrev - aT;
        for (int i = 0; i < sample.Length; i++)
        {
            float m = modelOutput[i];
            if (v) m = sqrtA * m + sqrtB * sample[i];
            sample[i] = sampleCoeff * sample[i] - diff * m / denom;
        }
    }

    /// <summary>Registry entry "pndm".</summary>
    public sealed class Factory : ISchedulerFactory
    {
        public string Name => "pndm";

        public IScheduler Create(SchedulerConfig config) => new PndmScheduler(config);
    }
}
