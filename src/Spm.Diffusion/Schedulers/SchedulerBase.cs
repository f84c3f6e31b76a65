using Spm.Core.Randomness;

namespace Spm.Diffusion.Schedulers;

/// <summary>
/// Shared plumbing: config validation, the training schedule, step-order and length checks. Concrete schedulers
/// fill <see cref="TimestepValues"/> in <see cref="OnSetTimesteps"/> and implement <see cref="StepCore"/>.
/// </summary>
internal abstract class SchedulerBase : IScheduler
{
    private int _stepsTaken;

    protected SchedulerBase(SchedulerConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        Config = config;
        if (config.PredictionType is not ("epsilon" or "v_prediction" or "sample"))
            throw new ArgumentException($"Unknown prediction_type '{config.PredictionType}' (expected epsilon, v_prediction or sample).", nameof(config));
        if (config.TimestepSpacing is not (null or "leading" or "trailing" or "linspace"))
            throw new ArgumentException($"Unknown timestep_spacing '{config.TimestepSpacing}' (expected leading, trailing or linspace).", nameof(config));
        Schedule = NoiseSchedule.FromConfig(config);
    }

    public SchedulerConfig Config { get; }

    /// <summary>The float32 training schedule.</summary>
    public NoiseSchedule Schedule { get; }

    public IReadOnlyList<double> Timesteps => TimestepValues;

    protected double[] TimestepValues { get; set; } = [];

    public virtual double InitNoiseSigma => 1.0;

    /// <summary>The step count passed to the last <see cref="SetTimesteps"/>.</summary>
    public int NumInferenceSteps { get; private set; }

    /// <summary>The diffusers class default used when the config has no timestep_spacing.</summary>
    protected abstract string DefaultSpacing { get; }

    /// <summary>timestep_spacing from the config, or this scheduler's diffusers default.</summary>
    protected string Spacing => Config.TimestepSpacing ?? DefaultSpacing;

    public void SetTimesteps(int numInferenceSteps)
    {
        if (numInferenceSteps < 1 || numInferenceSteps > Config.NumTrainTimesteps)
            throw new ArgumentOutOfRangeException(nameof(numInferenceSteps),
                $"The step count must be between 1 and num_train_timesteps ({Config.NumTrainTimesteps}); got {numInferenceSteps}.");
        NumInferenceSteps = numInferenceSteps;
        _stepsTaken = 0;
        OnSetTimesteps(numInferenceSteps);
    }

    public virtual void ScaleModelInput(ReadOnlySpan<float> sample, Span<float> destination, int stepIndex)
    {
        CheckIndex(stepIndex);
        CheckLength(sample.Length, destination.Length, nameof(destination));
        sample.CopyTo(destination);
    }

    public void Step(ReadOnlySpan<float> modelOutput, int stepIndex, Span<float> sample, SeededRandom? noise)
    {
        CheckIndex(stepIndex);
        CheckLength(sample.Length, modelOutput.Length, nameof(modelOutput));
        // Multistep history (PNDM, LMS, DPM-Solver++) is only meaningful when steps arrive in order.
        if (stepIndex != _stepsTaken)
            throw new InvalidOperationException($"Scheduler steps must be taken in order: expected step {_stepsTaken}, got {stepIndex}.");
        StepCore(modelOutput, stepIndex, sample, noise);
        _stepsTaken++;
    }

    protected abstract void OnSetTimesteps(int numInferenceSteps);

    protected abstract void StepCore(ReadOnlySpan<float> modelOutput, int stepIndex, Span<float> sample, SeededRandom? noise);

    /// <summary>Fills <paramref name="buffer"/> with Gaussian noise, failing clearly when no generator was given.</summary>
    protected static void DrawNoise(SeededRandom? noise, Span<float> buffer, string who)
    {
        if (noise is null)
            throw new ArgumentNullException(nameof(noise), $"{who} is stochastic: pass a SeededRandom to Step.");
        noise.FillGaussian(buffer);
    }

    private void CheckIndex(int stepIndex)
    {
        if (TimestepValues.Length == 0) throw new InvalidOperationException("Call SetTimesteps before stepping.");
        if ((uint)stepIndex >= (uint)TimestepValues.Length)
            throw new ArgumentOutOfRangeException(nameof(stepIndex), $"Step index must be in [0, {TimestepValues.Length}); got {stepIndex}.");
    }

    private static void CheckLength(int expected, int actual, string name)
    {
        if (expected != actual) throw new ArgumentException($"{name} has {actual} elements but the sample has {expected}.", name);
    }
}
