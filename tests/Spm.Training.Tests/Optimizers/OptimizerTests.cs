using Spm.Core;
using Spm.Core.SafeTensors;
using Spm.Core.Tensors;
using Spm.Tests.Common;
using Spm.Training.Optimizers;

namespace Spm.Training.Tests.Optimizers;

public class OptimizerTests
{
    [Test]
    public void AdamWMatchesHandDerivedSteps()
    {
        var p = new TrainableTensor("w", [1], [1f]);
        var opt = new AdamW(weightDecay: 0.01);
        p.Grad[0] = 0.5f;
        opt.Step([p], 0.1);
        // Decay: 1 * (1 - 0.1*0.01) = 0.999; first bias-corrected step moves by exactly lr * sign(g) (up to eps).
        Assert.That(p.Value[0], Is.EqualTo(0.899).Within(1e-6));
        p.Grad[0] = -1f;
        opt.Step([p], 0.1);
        double m = 0.9 * 0.05 + 0.1 * -1.0, v = 0.999 * 0.00025 + 0.001 * 1.0;
        double expected = 0.899 * 0.999 - 0.1 / (1 - 0.81) * m / (Math.Sqrt(v) / Math.Sqrt(1 - 0.999 * 0.999) + 1e-8);
        Assert.That(p.Value[0], Is.EqualTo(expected).Within(1e-6));
        Assert.That(p.Value[0], Is.EqualTo(0.934711).Within(1e-5));
        Assert.That(opt.StepCount, Is.EqualTo(2));
    }

    [Test]
    public void SgdMomentumMatchesHandDerivedSteps()
    {
        var p = new TrainableTensor("w", [2], [1f, -2f]);
        var opt = new SgdMomentum(momentum: 0.9);
        p.Grad[0] = 1f; p.Grad[1] = 0f;
        opt.Step([p], 0.1);
        Assert.That(p.Value, Is.EqualTo(new[] { 0.9f, -2f }).Within(1e-6));
        opt.Step([p], 0.1); // buf = 0.9*1 + 1 = 1.9
        Assert.That(p.Value[0], Is.EqualTo(0.9 - 0.19).Within(1e-6));
        var nesterov = new SgdMomentum(momentum: 0.5, nesterov: true);
        var q = new TrainableTensor("q", [1], [0f]);
        q.Grad[0] = 2f;
        nesterov.Step([q], 1.0); // buf = 2, d = 2 + 0.5*2 = 3
        Assert.That(q.Value[0], Is.EqualTo(-3f).Within(1e-6));
    }

    [Test]
    public void CosineWithHardRestartsFollowsTheFormula()
    {
        var s = new CosineWithHardRestartsSchedule(WarmupSteps: 10, TotalSteps: 110, Cycles: 2);
        Assert.That(s.Factor(0), Is.EqualTo(0));
        Assert.That(s.Factor(5), Is.EqualTo(0.5).Within(1e-12));
        Assert.That(s.Factor(10), Is.EqualTo(1).Within(1e-12));
        Assert.That(s.Factor(35), Is.EqualTo(0.5).Within(1e-12)); // progress 0.25 -> half a cycle
        Assert.That(s.Factor(60), Is.EqualTo(1).Within(1e-12));   // restart
        Assert.That(s.Factor(85), Is.EqualTo(0.5).Within(1e-12));
        Assert.That(s.Factor(110), Is.EqualTo(0));
        Assert.That(new LinearWarmupSchedule(4).Factor(1), Is.EqualTo(0.25));
        Assert.That(new LinearWarmupSchedule(4).Factor(9), Is.EqualTo(1));
        Assert.That(LearningRateSchedule.FromName("constant", 0, 10, 1).Factor(7), Is.EqualTo(1));
        Assert.That(() => LearningRateSchedule.FromName("bogus", 0, 10, 1), Throws.ArgumentException.With.Message.Contains("bogus"));
    }

    [Test]
    public void SavedStateResumesBitIdentically()
    {
        var rng = new Spm.Core.Randomness.SeededRandom(1);
        float[] Grad(int n) { var g = new float[n]; rng.FillGaussian(g); return g; }
        var a = new TrainableTensor("a.down", [3, 4], new float[12]);
        var opt = new AdamW();
        var grads = Enumerable.Range(0, 6).Select(_ => Grad(12)).ToArray();
        for (int i = 0; i < 3; i++) { grads[i].CopyTo(a.Grad, 0); opt.Step([a], 1e-2); }

        var dir = TestPaths.NewTempDir();
        var path = Path.Combine(dir, "state.safetensors");
        var tensors = new Dictionary<string, FloatTensor>();
        var meta = new Dictionary<string, string>();
        opt.ExportState(tensors, meta);
        SafeTensorsWriter.WriteFloat(path, tensors, meta);
        var resumedParam = new TrainableTensor("a.down", [3, 4], (float[])a.Value.Clone());
        var resumed = new AdamW();
        using (var f = SafeTensorsFile.Open(path)) resumed.ImportState(f);
        Assert.That(resumed.StepCount, Is.EqualTo(3));

        for (int i = 3; i < 6; i++)
        {
            grads[i].CopyTo(a.Grad, 0); opt.Step([a], 1e-2);
            grads[i].CopyTo(resumedParam.Grad, 0); resumed.Step([resumedParam], 1e-2);
        }
        Assert.That(resumedParam.Value, Is.EqualTo(a.Value));

        var sgd = new SgdMomentum();
        using var f2 = SafeTensorsFile.Open(path);
        Assert.That(() => sgd.ImportState(f2), Throws.TypeOf<SpmFormatException>().With.Message.Contains("adamw"));
    }
}
