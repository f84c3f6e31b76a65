namespace Spm.Training.Optimizers;

/// <summary>
/// AdamW with PyTorch's semantics (Loshchilov and Hutter): decoupled weight decay <c>p -= lr*wd*p</c>, then the
/// bias-corrected Adam update <c>p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps)</c>. Defaults are the spec's.
/// </summary>
public sealed class AdamW : Optimizer
{
    /// <summary>Creates the optimizer.</summary>
    public AdamW(double beta1 = 0.9, double beta2 = 0.999, double epsilon = 1e-8, double weightDecay = 0.01)
    {
        if (beta1 is < 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(beta1));
        if (beta2 is < 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(beta2));
        if (!(epsilon > 0)) throw new ArgumentOutOfRangeException(nameof(epsilon));
        if (weightDecay < 0) throw new ArgumentOutOfRangeException(nameof(weightDecay));
        Beta1 = beta1;
        Beta2 = beta2;
        Epsilon = epsilon;
        WeightDecay = weightDecay;
    }

    /// <summary>First-moment decay.</summary>
    public double Beta1 { get; }

    /// <summary>Second-moment decay.</summary>
    public double Beta2 { get; }

    /// <summary>Denominator epsilon.</summary>
    public double Epsilon { get; }

    /// <summary>Decoupled weight decay.</summary>
    public double WeightDecay { get; }

    /// <inheritdoc />
    public override string Kind => "adamw";

    /// <inheritdoc />
    protected override void Update(TrainableTensor parameter, double learningRate, long step)
    {
        var m = Buffer(parameter, "exp_avg");
        var v = Buffer(parameter, "exp_avg_sq");
        var p = parameter.Value;
        var g = parameter.Grad;
        float decay = (float)(1.0 - learningRate * WeightDecay);
        float b1 = (float)Beta1, b2 = (float)Beta2;
        double bc1 = 1.0 - Math.Pow(Beta1, step);
        double bc2 = 1.0 - Math.Pow(Beta2, step);
        float stepSize = (float)(learningRate / bc1);
        float bc2Sqrt = (float)Math.Sqrt(bc2);
        float eps = (float)Epsilon;
        for (int i = 0; i < p.Length; i++)
        {
            p[i] *= decay;
            m[i] = b1 * m[i] + (1 - b1) * g[i];
            v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
            float denom = MathF.Sqrt(v[i]) / bc2Sqrt + eps;
            p[i] -= stepSize * m[i] / denom;
        }
    }
}
