using Spm.Core.Randomness;

namespace Spm.Diffusion.Schedulers;

/// <summary>
/// PNDM, equal to diffusers' PNDMScheduler. With skip_prk_steps (the SD 1.x setting): pseudo linear multistep
/// (PLMS) with the second timestep repeated, so the first two UNet calls build a second-order start. Without it:
/// three pseudo Runge-Kutta steps (4 UNet calls each, at t, t-d/2, t-d/2, t-d) warm up the 4-step PLMS history.
/// Arithmetic is float32 in diffusers' order.
/// </summary>
internal sealed class PndmScheduler : SchedulerBase
{
    private int[] _timesteps = [];
    private readonly List<float[]> _ets = []; // the last (up to) 4 model outputs, oldest first
    private float[]? _curSample;
    private float[] _combined = [];
    private int _counter;
    private int _prkCalls; // 12 UNet calls of Runge-Kutta warm-up without skip_prk_steps, else 0
    private float[] _rkAccumulator = [];

    /// <summary>pndm_order: steps of history PLMS needs (and Runge-Kutta steps it takes to build it, plus one).</summary>
    private const int PndmOrder = 4;

    public PndmScheduler(SchedulerConfig config) : base(config)
    {
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
        if (Config.SkipPrkSteps)
        {
            // plms_timesteps = concat(_timesteps[:-1], _timesteps[-2:-1], _timesteps[-1:])[::-1]
            var plms = new List<int>(grid.Length + 1);
            plms.AddRange(grid[..^1]);
            if (grid.Length >= 2) plms.Add(grid[^2]);
            plms.Add(grid[^1]);
            plms.Reverse();
            _timesteps = plms.ToArray();
            _prkCalls = 0;
        }
        else
        {
            if (numInferenceSteps < PndmOrder)
                throw new ArgumentOutOfRangeException(nameof(numInferenceSteps),
                    $"PNDM with Runge-Kutta warm-up (skip_prk_steps = false) needs at least {PndmOrder} steps; got {numInferenceSteps}.");
            // Each of the top three steps a_k -> a_(k-1) costs four calls, at a_k, a_(k-1) + h, a_(k-1) + h, a_(k-1)
            // with h = (N // n) // 2 (diffusers' prk_timesteps); the PLMS calls follow from a_(n-4) down.
            int half = Config.NumTrainTimesteps / numInferenceSteps / 2;
            var top = grid[^PndmOrder..]; // ascending
            var prk = new List<int>();
            for (int k = PndmOrder - 1; k >= 1; k--)
                prk.AddRange([top[k], top[k - 1] + half, top[k - 1] + half, top[k - 1]]);
            _prkCalls = prk.Count;
            _timesteps = prk.Concat(grid[..^(PndmOrder - 1)].Reverse()).ToArray();
        }
        TimestepValues = _timesteps.Select(t => (double)t).ToArray();
        _ets.Clear();
        _curSample = null;
        _counter = 0;
        Array.Clear(_rkAccumulator);
    }

    protected override void StepCore(ReadOnlySpan<float> modelOutput, int stepIndex, Span<float> sample, SeededRandom? noise)
    {
        if (_counter < _prkCalls) StepPrk(modelOutput, stepIndex, sample);
        else StepPlms(modelOutput, stepIndex, sample);
    }

    // diffusers' step_prk: every call restarts from the sample at the start of its Runge-Kutta step; the fourth call
    // of a step uses the weighted mean (1/6, 1/3, 1/3, 1/6) of the step's four outputs.
    private void StepPrk(ReadOnlySpan<float> modelOutput, int stepIndex, Span<float> sample)
    {
        int n = sample.Length;
        int half = Config.NumTrainTimesteps / NumInferenceSteps / 2;
        int prevTimestep = _timesteps[stepIndex] - (_counter % 2 == 1 ? 0 : half);
        int timestep = _timesteps[_counter / 4 * 4];
        if (_combined.Length != n) _combined = new float[n];
        if (_rkAccumulator.Length != n) _rkAccumulator = new float[n];
        const float sixth = (float)(1.0 / 6), third = (float)(1.0 / 3);
        var acc = _rkAccumulator;
        var e = _combined;
        switch (_counter % 4)
        {
            case 0:
                for (int i = 0; i < n; i++) acc[i] = sixth * modelOutput[i];
                _ets.Add(modelOutput.ToArray());
                _curSample = sample.ToArray();
                modelOutput.CopyTo(e);
                break;
            case 1:
            case 2:
                for (int i = 0; i < n; i++) acc[i] += third * modelOutput[i];
                modelOutput.CopyTo(e);
                break;
            default:
                for (int i = 0; i < n; i++) e[i] = acc[i] + sixth * modelOutput[i];
                Array.Clear(acc);
                break;
        }
        _curSample!.CopyTo(sample);
        PrevSample(sample, timestep, prevTimestep, e);
        _counter++;
    }

    private void StepPlms(ReadOnlySpan<float> modelOutput, int stepIndex, Span<float> sample)
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
