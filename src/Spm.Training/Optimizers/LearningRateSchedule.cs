namespace Spm.Training.Optimizers;

/// <summary>
/// Learning-rate multipliers by step (0-based: the multiplier of the update made at that step), with the
/// formulas of the transformers/diffusers schedule helpers.
/// </summary>
public abstract record LearningRateSchedule
{
    /// <summary>The multiplier of the base learning rate at <paramref name="step"/>.</summary>
    public abstract double Factor(long step);

    /// <summary>The learning rate at <paramref name="step"/>.</summary>
    public double At(double baseRate, long step) => baseRate * Factor(step);

    /// <summary>Parses a CLI name: constant, warmup (linear warm-up then constant), cosine-restarts.</summary>
    public static LearningRateSchedule FromName(string name, int warmupSteps, long totalSteps, int cycles) => name switch
    {
        "constant" => new ConstantSchedule(),
        "warmup" or "constant_with_warmup" => new LinearWarmupSchedule(warmupSteps),
        "cosine-restarts" or "cosine_with_restarts" => new CosineWithHardRestartsSchedule(warmupSteps, totalSteps, cycles),
        _ => throw new ArgumentException($"Unknown learning-rate schedule '{name}' (constant, warmup, cosine-restarts)."),
    };
}

/// <summary>A constant learning rate.</summary>
public sealed record ConstantSchedule : LearningRateSchedule
{
    /// <inheritdoc />
    public override double Factor(long step) => 1.0;
}

/// <summary>Linear warm-up from 0 over <paramref name="WarmupSteps"/> steps, then constant.</summary>
public sealed record LinearWarmupSchedule(int WarmupSteps) : LearningRateSchedule
{
    /// <inheritdoc />
    public override double Factor(long step) => step < WarmupSteps ? (double)step / Math.Max(1, WarmupSteps) : 1.0;
}

/// <summary>
/// Linear warm-up, then cosine decay to 0 restarted <paramref name="Cycles"/> times over the remaining steps
/// (<c>0.5 * (1 + cos(pi * ((cycles * progress) mod 1)))</c>), 0 once <paramref name="TotalSteps"/> are done.
/// </summary>
public sealed record CosineWithHardRestartsSchedule(int WarmupSteps, long TotalSteps, int Cycles) : LearningRateSchedule
{
    /// <inheritdoc />
    public override double Factor(long step)
    {
        if (step < WarmupSteps) return (double)step / Math.Max(1, WarmupSteps);
        double progress = (double)(step - WarmupSteps) / Math.Max(1, TotalSteps - WarmupSteps);
        if (progress >= 1.0) return 0.0;
        return Math.Max(0.0, 0.5 * (1.0 + Math.Cos(Math.PI * ((Cycles * progress) % 1.0))));
    }
}
