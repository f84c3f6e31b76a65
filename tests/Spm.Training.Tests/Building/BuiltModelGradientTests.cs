using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Spm.Core.Randomness;
using Spm.Shapes.Building;
using Spm.Tests.Common;
using Spm.Training.Autodiff;

namespace Spm.Training.Tests.Building;

/// <summary>
/// Full-mode training needs gradients with respect to every weight of the networks the model builder
/// writes: the gradient graph must build (every op on the path has a rule), run, and be right.
/// </summary>
[TestFixture]
public class BuiltModelGradientTests
{
    private static float[] Random(int n, ulong seed)
    {
        var a = new float[n];
        new SeededRandom(seed).FillGaussian(a);
        return a;
    }

    private static Dictionary<string, OrtValue> Feeds() => new()
    {
        ["sample"] = OrtValue.CreateTensorValueFromMemory(Random(2 * 4 * 8 * 8, 1), [2, 4, 8, 8]),
        ["timestep"] = OrtValue.CreateTensorValueFromMemory(new float[] { 10f, 900f }, [2]),
        ["encoder_hidden_states"] = OrtValue.CreateTensorValueFromMemory(Random(2 * 77 * 32, 2), [2, 77, 32]),
    };

    private static float SumOfOutput(GraphBuilder g, Dictionary<string, OrtValue> feeds)
    {
        using var s = new InferenceSession(g.Build().ToByteArray());
        using var r = s.Run(new RunOptions(), feeds.Keys.ToArray(), feeds.Values.ToArray(), ["out_sample"]);
        double sum = 0;
        foreach (var v in r[0].GetTensorDataAsSpan<float>()) sum += v;
        return (float)sum;
    }

    [Test]
    [Category(TestCategories.Slow)]
    public void TinyUNet_FullModeGradients_AreExactForTheOutputBias_AndMatchFiniteDifferences()
    {
        var g = UNetBuilder.Create(UNetPresets.TinySd1, 1);
        var model = g.Build();
        var feeds = Feeds();
        var wrt = model.Graph.Initializer.Where(i => i.DataType == 1).Select(i => i.Name).ToList();
        var graph = GradientGraphBuilder.Build(model, new GradientRequest([LossTerm.Sum("out_sample")], wrt), TensorShapes.Probe(model, feeds));
        Assert.That(graph.GradientOutputs, Has.Count.EqualTo(wrt.Count));

        var toK = model.Graph.Node.Single(n => n.Name == "/down_blocks.1/attentions.0/transformer_blocks.0/attn2/to_k/MatMul").Input[1];
        string[] outputs = [graph.GradientOutputs["conv_out.bias"], graph.GradientOutputs[toK], graph.GradientOutputs["time_embedding.linear_1.weight"]];
        using var session = new InferenceSession(graph.Model.ToByteArray());
        using var result = session.Run(new RunOptions(), feeds.Keys.ToArray(), feeds.Values.ToArray(), outputs);

        // d sum(out) / d conv_out.bias[c] = B·H·W exactly.
        Assert.That(result[0].GetTensorDataAsSpan<float>().ToArray(), Is.All.EqualTo(2f * 8 * 8));

        // A cross-attention key weight and a time-embedding weight against central differences.
        foreach (var (name, index, grad) in new[] { (toK, 5, result[1]), ("time_embedding.linear_1.weight", 7, result[2]) })
        {
            float analytic = grad.GetTensorDataAsSpan<float>()[index];
            var values = BuildTestData.Values(model, name);
            const float h = 1e-2f;
            float Perturbed(float delta)
            {
                var copy = (float[])values.Clone();
                copy[index] += delta;
                g.SetInitializer(name, TensorInit.FromData(copy));
                return SumOfOutput(g, feeds);
            }
            float numeric = (Perturbed(h) - Perturbed(-h)) / (2 * h);
            g.SetInitializer(name, TensorInit.FromData(values));
            Assert.That(Math.Abs(analytic), Is.GreaterThan(1e-4), name);
            Assert.That(numeric, Is.EqualTo(analytic).Within(0.05 * Math.Abs(analytic) + 1e-3), name);
        }
    }

    [Test]
    public void TinyTextEncoderAndVae_FullModeGradientGraphsBuild()
    {
        var text = ClipTextEncoderBuilder.Create(ClipTextConfig.Tiny, 1).Build();
        var ids = Enumerable.Repeat(49407, 2 * 77).ToArray();
        ids[0] = ids[77] = 49406;
        var textFeeds = new Dictionary<string, OrtValue> { ["input_ids"] = OrtValue.CreateTensorValueFromMemory(ids, [2, 77]) };
        var tg = GradientGraphBuilder.Build(text, new GradientRequest([LossTerm.Sum("last_hidden_state")],
            text.Graph.Initializer.Where(i => i.DataType == 1).Select(i => i.Name).ToList()), TensorShapes.Probe(text, textFeeds));
        Assert.That(tg.GradientOutputs.Keys, Does.Contain("tok.weight"));

        var vae = VaeDecoderBuilder.Create(VaeDecoderConfig.Tiny, 1).Build();
        var vaeFeeds = new Dictionary<string, OrtValue> { ["latent_sample"] = OrtValue.CreateTensorValueFromMemory(Random(2 * 4 * 4 * 4, 3), [2, 4, 4, 4]) };
        var vg = GradientGraphBuilder.Build(vae, new GradientRequest([LossTerm.Sum("sample")],
            vae.Graph.Initializer.Where(i => i.DataType == 1).Select(i => i.Name).ToList()), TensorShapes.Probe(vae, vaeFeeds));
        using var s = new InferenceSession(vg.Model.ToByteArray());
        using var r = s.Run(new RunOptions(), vaeFeeds.Keys.ToArray(), vaeFeeds.Values.ToArray(), [vg.GradientOutputs["decoder.conv_out.bias"]]);
        Assert.That(r[0].GetTensorDataAsSpan<float>().ToArray(), Is.All.EqualTo(2f * 32 * 32), "d sum(sample) / d conv_out.bias = B·H·W");
    }
}

internal static class BuildTestData
{
    public static float[] Values(Spm.Diffusion.Onnx.Proto.ModelProto m, string name)
    {
        var t = m.Graph.Initializer.Single(i => i.Name == name);
        var bytes = t.RawData.ToByteArray();
        var f = new float[bytes.Length / 4];
        Buffer.BlockCopy(bytes, 0, f, 0, bytes.Length);
        return f;
    }
}
