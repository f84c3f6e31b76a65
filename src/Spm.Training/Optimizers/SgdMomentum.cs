namespace Spm.Training.Optimizers;

/// <summary>
/// SGD with momentum, PyTorch semantics: <c>g += wd*p</c>; <c>buf = g</c> on the first step, then
/// <c>buf = mu*buf + (1 - dampening)*g</c>; the update uses <c>g + mu*buf</c> (Nesterov) or <c>buf</c>.
/// </summary>
public sealed class SgdMomentum : Optimizer
{
    /// <summary>Creates the optimizer.</summary>
    public SgdMomentum(double momentum = 0.9, double dampening = 0, double weightDecay = 0, bool nesterov = false)
    {
        if (momentum < 0) throw new ArgumentOutOfRangeException(nameof(momentum));
        if (weightDecay < 0) throw new ArgumentOutOfRangeException(nameof(weightDecay));
        if (nesterov && (momentum <= 0 || dampening != 0)) throw new ArgumentException("Nesterov momentum needs momentum > 0 and zero dampening.");
        Momentum = momentum;
        Dampening = dampening;
        WeightDecay = weightDecay;
        Nesterov = nesterov;
    }

    /// <summary>Momentum factor.</summary>
    public double Momentum { get; }

    /// <summary>Dampening of the momentum update.</summary>
    public double Dampening { get; }

    /// <summary>L2 weight decay added to the gradient.</summary>
    public double WeightDecay { get; }

    /// <summary>Nesterov momentum.</summary>
    public bool Nesterov { get; }

    /// <inheritdoc />
    public override string Kind => "sgd";

    /// <inheritdoc />
    protected override void Update(TrainableTensor parameter, double learningRate, long step)
    {
        var p = parameter.Value;
        var g = parameter.Grad;
        float lr = (float)learningRate, wd = (float)WeightDecay, mu = (float)Momentum, damp = (float)(1 - Dampening);
        bool first = !HasBuffer(parameter, "momentum");
        float[]? buf = Momentum > 0 ? Buffer(parameter, "momentum") : null;
        for (int i = 0; i < p.Length; i++)
        {
            float d = g[i] + wd * p[i];
            if (buf is not null)
            {
                buf[i] = first ? d : mu * buf[i] + damp * d;
                d = Nesterov ? d + mu * buf[i] : buf[i];
            }
            p[i] -= lr * d;
        }
    }
}
