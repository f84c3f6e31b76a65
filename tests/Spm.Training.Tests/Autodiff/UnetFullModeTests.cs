using Microsoft.ML.OnnxRuntime;
using Spm.Core.Randomness;
using Spm.Training.Autodiff;
using Spm.Tests.Common;

namespace Spm.Training.Tests.Autodiff;

/// <summary>
/// Full mode on the fixture UNet: gradients of sum(out_sample * R) for initializers across the network (first conv,
/// time-embedding Gemm, a LayerNorm gain, attention and GEGLU MatMul weights, an up-block conv after the nearest
/// upsampler) against central finite differences on sampled coordinates, in float32.
/// </summary>
[TestFixture]
public class UnetFullModeTests
{
    private static readonly string[] Wrt =
    [
        "conv_in.weight",
        "time_embedding.linear_1.weight",
        "down_blocks.1.attentions.0.transformer_blocks.0.norm1.weight",
        "onnx::MatMul_3644",
        "onnx::MatMul_3664",
        "up_blocks.1.resnets.0.conv1.weight",
        "conv_out.bias",
    ];

    [Test]
    [Category(TestCategories.Slow)]
    public void InitializerGradientsMatchFiniteDifferences()
    {
        var model = UnetFixture.Model;
        var settings = new GradientSessionSettings(UnetFixture.Folder);
        var inputs = UnetFixture.Inputs(seed: 11);
        var shapes = TensorShapes.Probe(model, UnetFixture.ToOrt(inputs), settings);
        var built = GradientGraphBuilder.Build(model, new GradientRequest([LossTerm.WeightedSum("out_sample", "R")], Wrt), shapes);

        var rng = new SeededRandom(5);
        var r = new float[inputs["sample"].Data.Length];
        rng.FillGaussian(r);
        var feeds = new Dictionary<string, (float[] Data, long[] Shape)>(inputs) { ["R"] = (r, inputs["sample"].Shape) };
        var grads = new Dictionary<string, float[]>();
        using (var session = GradientSessionFactory.Create(built.Model, settings))
        {
            var names = Wrt.Select(w => built.GradientOutputs[w]).ToArray();
            using var values = new DisposableOrt(UnetFixture.ToOrt(feeds));
            using var ro = new RunOptions();
            using var res = session.Run(ro, values.Names, values.Values, names);
            for (int i = 0; i < Wrt.Length; i++) grads[Wrt[i]] = res[i].GetTensorDataAsSpan<float>().ToArray();
        }

        // Forward model with the checked initializers as inputs, to perturb them.
        var fwdModel = UnetFixture.WithInitializersAsInputs(model, Wrt);
        var weights = Wrt.ToDictionary(w => w, w => UnetFixture.Initializer(model, w));
        var weightShapes = Wrt.ToDictionary(w => w, w => model.Graph.Initializer.First(i => i.Name == w).Dims.ToArray());
        using var fwd = GradientSessionFactory.Create(fwdModel, settings);
        double Loss()
        {
            var f = new Dictionary<string, (float[] Data, long[] Shape)>(inputs);
            foreach (var w in Wrt) f[w] = (weights[w], weightShapes[w]);
            using var values = new DisposableOrt(UnetFixture.ToOrt(f));
            using var ro = new RunOptions();
            using var res = fwd.Run(ro, values.Names, values.Values, ["out_sample"]);
            var o = res[0].GetTensorDataAsSpan<float>();
            double s = 0;
            for (int i = 0; i < o.Length; i++) s += (double)o[i] * r[i];
            return s;
        }

        var pick = new SeededRandom(9);
        foreach (var w in Wrt)
        {
            var g = grads[w];
            Assert.That(g, Has.Length.EqualTo(weights[w].Length), w);
            double maxAbs = g.Max(v => Math.Abs((double)v));
            Assert.That(maxAbs, Is.GreaterThan(0), $"{w}: gradient is all zeros");
            // The two largest-magnitude coordinates plus two random ones.
            var coords = Enumerable.Range(0, g.Length).OrderByDescending(i => Math.Abs(g[i])).Take(2)
                .Concat([pick.NextInt(0, g.Length), pick.NextInt(0, g.Length)]).Distinct().ToArray();
            foreach (var i in coords)
            {
                float orig = weights[w][i];
                double h = Math.Max(1e-2, Math.Abs(orig) * 0.05);
                weights[w][i] = (float)(orig + h);
                double lp = Loss();
                weights[w][i] = (float)(orig - h);
                double lm = Loss();
                weights[w][i] = orig;
                double fd = (lp - lm) / (2 * h);
                Assert.That(g[i], Is.EqualTo(fd).Within(0.02 * maxAbs), $"d loss / d {w}[{i}]: analytic {g[i]}, finite difference {fd}");
            }
        }
    }

    private sealed class DisposableOrt(Dictionary<string, OrtValue> values) : IDisposable
    {
        public string[] Names { get; } = values.Keys.ToArray();
        public OrtValue[] Values { get; } = values.Values.ToArray();
        public void Dispose() { foreach (var v in Values) v.Dispose(); }
    }
}
