using Microsoft.ML.OnnxRuntime;
using Spm.Core;
using Spm.Core.Randomness;
using Spm.Shapes.Building;
using Spm.Shapes.Model;
using Spm.Training.Autodiff;
using Spm.Training.Optimizers;
using DataType = Spm.Diffusion.Onnx.Proto.TensorProto.Types.DataType;

namespace Spm.Training.Tests.ModelTraining;

[TestFixture]
public class GraphTrainerTests
{
    // y = x W + b with W [3, 2], b [2]; the target comes from a known W*, b*.
    private static readonly float[] TrueW = [0.5f, -1f, 2f, 0.25f, -0.75f, 1.5f];
    private static readonly float[] TrueB = [0.3f, -0.2f];

    private static GraphBuilder Linear()
    {
        var g = new GraphBuilder("linear", 1);
        var x = g.Input("x", DataType.Float, "batch", 3);
        var w = g.Parameter("w", [3, 2], TensorInit.Zeros);
        var b = g.Parameter("b", [2], TensorInit.Zeros);
        var y = g.Node("MatMul", [x, w]);
        g.NodeNamed("Add", [y, b], "y");
        g.Output("y", DataType.Float, "batch", 2);
        return g;
    }

    private static (float[] X, float[] Y) Batch(SeededRandom rng, int n)
    {
        var x = new float[n * 3];
        rng.FillGaussian(x);
        var y = new float[n * 2];
        for (int i = 0; i < n; i++)
            for (int o = 0; o < 2; o++)
            {
                float s = TrueB[o];
                for (int k = 0; k < 3; k++) s += x[i * 3 + k] * TrueW[k * 2 + o];
                y[i * 2 + o] = s;
            }
        return (x, y);
    }

    [Test]
    public void FirstStepGradients_AreTheClosedFormOnes()
    {
        var g = Linear();
        var (x, y) = Batch(new SeededRandom(1), 4);
        using var xv = OrtValue.CreateTensorValueFromMemory(x, [4, 3]);
        using var yv = OrtValue.CreateTensorValueFromMemory(y, [4, 2]);
        using var trainer = GraphTrainer.Create(g.Build(), ["w", "b"], [LossTerm.MeanSquaredError("y", "target")],
            new Dictionary<string, OrtValue> { ["x"] = xv }, new SgdMomentum(momentum: 0));
        var (loss, _) = trainer.Backward(new Dictionary<string, OrtValue> { ["x"] = xv, ["target"] = yv });

        // With W = 0, b = 0: residual r = -y; loss = mean(r²) over 8 values; dL/dW = 2/8 Xᵀ r; dL/db = 2/8 Σ r.
        double expectedLoss = y.Sum(v => (double)v * v) / 8;
        Assert.That(loss, Is.EqualTo(expectedLoss).Within(1e-5 * expectedLoss));
        var gw = trainer.Parameters.Single(p => p.Name == "w").Grad;
        var gb = trainer.Parameters.Single(p => p.Name == "b").Grad;
        for (int k = 0; k < 3; k++)
            for (int o = 0; o < 2; o++)
            {
                double s = 0;
                for (int i = 0; i < 4; i++) s += x[i * 3 + k] * -y[i * 2 + o];
                Assert.That(gw[k * 2 + o], Is.EqualTo(2.0 / 8 * s).Within(1e-5), $"dW[{k},{o}]");
            }
        for (int o = 0; o < 2; o++)
            Assert.That(gb[o], Is.EqualTo(2.0 / 8 * Enumerable.Range(0, 4).Sum(i => -y[i * 2 + o])).Within(1e-5), $"db[{o}]");
    }

    [Test]
    public void Training_RecoversTheTrueWeights_AndCopiesThemIntoABuilder()
    {
        var g = Linear();
        var rng = new SeededRandom(2);
        var (x, y) = Batch(rng, 16);
        using var xv = OrtValue.CreateTensorValueFromMemory(x, [16, 3]);
        using var yv = OrtValue.CreateTensorValueFromMemory(y, [16, 2]);
        using var trainer = GraphTrainer.Create(g.Build(), ["w", "b"], [LossTerm.MeanSquaredError("y", "target")],
            new Dictionary<string, OrtValue> { ["x"] = xv }, new AdamW(weightDecay: 0));
        var feeds = new Dictionary<string, OrtValue> { ["x"] = xv, ["target"] = yv };
        double first = 0, last = 0;
        for (int step = 0; step < 400; step++)
        {
            var (nx, ny) = Batch(rng, 16);
            nx.CopyTo(x, 0);
            ny.CopyTo(y, 0);
            var (loss, _) = trainer.Step(feeds, 0.05 * (step < 300 ? 1 : 0.1));
            if (step == 0) first = loss;
            last = loss;
        }
        Assert.That(last, Is.LessThan(1e-4 * first));
        Assert.That(trainer.Parameters.Single(p => p.Name == "w").Value, Is.EqualTo(TrueW).Within(0.01));
        Assert.That(trainer.CopyTo(g), Is.EqualTo(2));
        var b = g.Build().Graph.Initializer.Single(i => i.Name == "b");
        var values = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(b.RawData.Span).ToArray();
        Assert.That(values, Is.EqualTo(TrueB).Within(0.01));
    }

    [Test]
    public void GradientClipping_BoundsTheUpdate()
    {
        var g = Linear();
        var (x, y) = Batch(new SeededRandom(3), 4);
        for (int i = 0; i < y.Length; i++) y[i] *= 1000;
        using var xv = OrtValue.CreateTensorValueFromMemory(x, [4, 3]);
        using var yv = OrtValue.CreateTensorValueFromMemory(y, [4, 2]);
        using var trainer = GraphTrainer.Create(g.Build(), ["w", "b"], [LossTerm.MeanSquaredError("y", "target")],
            new Dictionary<string, OrtValue> { ["x"] = xv }, new SgdMomentum(momentum: 0));
        var (_, norm) = trainer.Step(new Dictionary<string, OrtValue> { ["x"] = xv, ["target"] = yv }, 1.0, maxGradientNorm: 1.0);
        Assert.That(norm, Is.GreaterThan(100));
        double moved = trainer.Parameters.Sum(p => p.Value.Sum(v => (double)v * v));
        Assert.That(Math.Sqrt(moved), Is.EqualTo(1.0).Within(1e-4), "one SGD step of lr 1 moves the weights by exactly the clipped norm");
    }

    [Test]
    public void UnknownOrNonFloatParameters_AreRefusedByName()
    {
        var g = Linear();
        using var xv = OrtValue.CreateTensorValueFromMemory(new float[6], [2, 3]);
        var feeds = new Dictionary<string, OrtValue> { ["x"] = xv };
        var ex = Assert.Throws<SpmException>(() => GraphTrainer.Create(g.Build(), ["nope"], [LossTerm.Sum("y")], feeds, new AdamW()));
        Assert.That(ex!.Message, Does.Contain("'nope'").And.Contain("not an initializer"));
    }
}
