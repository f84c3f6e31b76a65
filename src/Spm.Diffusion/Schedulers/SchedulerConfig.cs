namespace Spm.Diffusion.Schedulers;

/// <summary>
/// The diffusers scheduler configuration (scheduler/scheduler_config.json). Property names follow diffusers'
/// keys in PascalCase; defaults are diffusers' defaults for SD 1.x.
/// </summary>
public sealed partial record SchedulerConfig
{
    /// <summary>Number of diffusion steps the model was trained with (num_train_timesteps).</summary>
    public int NumTrainTimesteps { get; init; } = 1000;

    /// <summary>beta_start.</summary>
    public double BetaStart { get; init; } = 0.00085;

    /// <summary>beta_end.</summary>
    public double BetaEnd { get; init; } = 0.012;

    /// <summary>beta_schedule: "scaled_linear", "linear" or "squaredcos_cap_v2".</summary>
    public string BetaSchedule { get; init; } = "scaled_linear";

    /// <summary>trained_betas, when the config gives them explicitly.</summary>
    public IReadOnlyList<double>? TrainedBetas { get; init; }

    /// <summary>prediction_type: "epsilon", "v_prediction" or "sample".</summary>
    public string PredictionType { get; init; } = "epsilon";

    /// <summary>steps_offset.</summary>
    public int StepsOffset { get; init; } = 1;

    /// <summary>
    /// timestep_spacing: "leading", "trailing" or "linspace"; null (the config has no such key, as in SD 1.x
    /// configs) means each scheduler's own diffusers default: leading for PNDM and DDIM, linspace for Euler,
    /// Euler ancestral, LMS and DPM-Solver++.
    /// </summary>
    public string? TimestepSpacing { get; init; }

    /// <summary>set_alpha_to_one (DDIM/PNDM final step).</summary>
    public bool SetAlphaToOne { get; init; }

    /// <summary>clip_sample.</summary>
    public bool ClipSample { get; init; }

    /// <summary>clip_sample_range.</summary>
    public double ClipSampleRange { get; init; } = 1.0;

    /// <summary>skip_prk_steps (PNDM): true = PLMS only (the SD setting, this record's default); false = three
    /// pseudo Runge-Kutta steps first (diffusers' class default, used by <see cref="Load"/> when the key is absent).</summary>
    public bool SkipPrkSteps { get; init; } = true;

    /// <summary>use_karras_sigmas (Euler, DPM-Solver++, LMS).</summary>
    public bool UseKarrasSigmas { get; init; }

    /// <summary>eta for DDIM (0 = deterministic).</summary>
    public double Eta { get; init; }
}
