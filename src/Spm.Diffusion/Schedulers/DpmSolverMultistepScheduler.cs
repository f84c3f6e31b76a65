using Spm.Core.Randomness;

namespace Spm.Diffusion.Schedulers;

/// <summary>
/// DPM-Solver++ 2M (Lu et al. 2022), equal to diffusers' DPMSolverMultistepScheduler with algorithm_type
/// dpmsolver++, solver_order 2, solver_type midpoint, lower_order_final and final_sigmas_type zero (so the first and
/// the last step are first order), optionally with Karras sigmas. Float32 arithmetic in diffusers' order.
/// </summary>
internal sealed class DpmSolverMultistepScheduler : SchedulerBase
{
    private float[] _sigmas = [];
    private float[] _prevX0 = [];
    private float[] _x0 = [];
    private int _lowerOrderNums;

    public DpmSolverMultistepScheduler(SchedulerConfig config) : base(config) { }

    protected override string DefaultSpacing => "linspace";

    internal IReadOnlyList<float> Sigmas => _sigmas;

    protected override void OnSetTimesteps(int numInferenceSteps)
    {
        int trainSteps = Config.NumTrainTimesteps;
        int last = trainSteps; // lambda_min_clipped = -inf clips nothing
        double[] timesteps = Spacing switch
        {
            "linspace" => NumPy.Linspace(0, last - 1, numInferenceSteps + 1).Select(NumPy.Round).Reverse().Take(numInferenceSteps).ToArray(),
            "leading" => Enumerable.Range(0, numInferenceSteps + 1).Select(k => (double)k * (last / (numInferenceSteps + 1)))
                .Reverse().Take(numInferenceSteps).Select(t => t + Config.StepsOffset).ToArray(),
            _ => NumPy.Arange(last, 0, -(double)trainSteps / numInferenceSteps).Select(t => NumPy.Round(t) - 1).ToArray(),
        };

        var table = Schedule.SigmasArray;
        double[] sigmas;
        if (Config.UseKarrasSigmas)
        {
            // Karras between the full table's extremes; timesteps are the rounded matching training steps.
            sigmas = SigmaMath.Karras(table[0], table[^1], numInferenceSteps);
            var logTable = SigmaMath.LogTable(table);
            timesteps = sigmas.Select(s => NumPy.Round(SigmaMath.SigmaToT(s, logTable))).ToArray();
        }
        else
        {
            sigmas = timesteps.Select(t => NumPy.InterpOnIndexGrid(t, table)).ToArray();
        }
        foreach (var t in timesteps)
            if (t < 0 || t >= trainSteps)
                throw new ArgumentException($"Timestep {t} falls outside [0, {trainSteps}): check steps_offset and timestep_spacing.");

        _sigmas = new float[sigmas.Length + 1];
        for (int i = 0; i < sigmas.Length; i++) _sigmas[i] = (float)sigmas[i];
        _sigmas[^1] = 0f;
        TimestepValues = timesteps;
        _lowerOrderNums = 0;
    }

    private static (float Alpha, float Sigma) AlphaSigma(float sigma)
    {
        float alpha = 1f / MathF.Sqrt(sigma * sigma + 1f);
        return (alpha, sigma * alpha);
    }

    protected override void StepCore(ReadOnlySpan<float> modelOutput, int stepIndex, Span<float> sample, SeededRandom? noise)
    {
        int n = sample.Length;
        if (_x0.Length != n) { _x0 = new float[n]; _prevX0 = new float[n]; }
        (_prevX0, _x0) = (_x0, _prevX0); // model_outputs shift: the previous x0 moves to slot -2

        // convert_model_output: the data prediction x0 at the current sigma.
        var (alphaS0, sigmaS0) = AlphaSigma(_sigmas[stepIndex]);
        string prediction = Config.PredictionType;
        for (int i = 0; i < n; i++)
        {
            float x = sample[i], m = modelOutput[i];
            _x0[i] = prediction switch
            {
                "epsilon" => (x - sigmaS0 * m) / alphaS0,
                "v_prediction" => alphaS0 * x - sigmaS0 * m,
                _ => m,
            };
        }

        var (alphaT, sigmaT) = AlphaSigma(_sigmas[stepIndex + 1]);
        float lambdaT = MathF.Log(alphaT) - MathF.Log(sigmaT);
        float lambdaS0 = MathF.Log(alphaS0) - MathF.Log(sigmaS0);
        float h = lambdaT - lambdaS0;
        float ratio = sigmaT / sigmaS0;
        float c0 = alphaT * (MathF.Exp(-h) - 1f);

        bool lowerOrderFinal = stepIndex == TimestepValues.Length - 1; // final_sigmas_type zero => first order at the end
        if (_lowerOrderNums < 1 || lowerOrderFinal)
        {
            for (int i = 0; i < n; i++) sample[i] = ratio * sample[i] - c0 * _x0[i];
        }
        else
        {
            var (alphaS1, sigmaS1) = AlphaSigma(_sigmas[stepIndex - 1]);
            float lambdaS1 = MathF.Log(alphaS1) - MathF.Log(sigmaS1);
            float h0 = lambdaS0 - lambdaS1;
            float r0 = h0 / h;
            float invR0 = 1f / r0;
            float c1 = 0.5f * c0;
            for (int i = 0; i < n; i++)
            {
                float d1 = invR0 * (_x0[i] - _prevX0[i]);
                sample[i] = ratio * sample[i] - c0 * _x0[i] - c1 * d1;
            }
        }
        if (_lowerOrderNums < 2) _lowerOrderNums++;
    }

    /// <summary>Registry entry "dpmpp-2m".</summary>
    public sealed class Factory : ISchedulerFactory
    {
        public string Name => "dpmpp-2m";

        public IScheduler Create(SchedulerConfig config) => new DpmSolverMultistepScheduler(config);
    }
}
