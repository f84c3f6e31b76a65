using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Spm.Core;
using Spm.Shapes.Building;
using Spm.Tests.Common;
using static Spm.Diffusion.Tests.Building.BuildTestSupport;

namespace Spm.Diffusion.Tests.Building;

[TestFixture]
public class TextEncoderBuilderTests
{
    private static string FixtureModel => Path.Combine(TestPaths.TinySd1, "text_encoder", "model.onnx");

    // "a photo of a cat" padded with EOS, and a second, longer prompt.
    private static int[] Ids()
    {
        var ids = Enumerable.Repeat(49407, 2 * 77).ToArray();
        int[] a = [49406, 320, 1125, 539, 320, 2368, 49407];
        int[] b = [49406, 320, 1601, 2866, 525, 320, 1579, 5135, 269, 3305, 49407];
        a.CopyTo(ids, 0);
        b.CopyTo(ids, 77);
        return ids;
    }

    [Test]
    public void TinyEncoder_HasTheFixturesParametersAndIo()
    {
        var ours = ClipTextEncoderBuilder.Create(ClipTextConfig.Tiny, 1).Build();
        var reference = Load(FixtureModel);
        var a = ModuleParams.Of(ours);
        var b = ModuleParams.Of(reference);
        Assert.That(a.Keys.Order(StringComparer.Ordinal), Is.EqualTo(b.Keys.Order(StringComparer.Ordinal)));
        foreach (var (k, t) in a) Assert.That(t.Dims.ToArray(), Is.EqualTo(b[k].Dims.ToArray()), k);
        Assert.That(ours.Graph.Input.Select(i => i.Name + ":" + i.Type.TensorType.ElemType), Is.EqualTo(reference.Graph.Input.Select(i => i.Name + ":" + i.Type.TensorType.ElemType)));
        Assert.That(ours.Graph.Output.Select(o => o.Name), Is.EqualTo(reference.Graph.Output.Select(o => o.Name)));
    }

    [Test]
    public void TinyEncoder_WithTheFixturesWeights_ReproducesBothOutputs()
    {
        var g = ClipTextEncoderBuilder.Create(ClipTextConfig.Tiny, 1);
        var reference = Load(FixtureModel);
        var refParams = ModuleParams.Of(reference);
        foreach (var (key, t) in ModuleParams.Of(g.Build()))
            g.SetInitializer(t.Name, TensorInit.FromData(ReadFloats(refParams[key], "")));

        using var refSession = new InferenceSession(FixtureModel, Options());
        using var ourSession = new InferenceSession(g.Build().ToByteArray(), Options());
        foreach (var output in new[] { "last_hidden_state", "pooler_output" })
        {
            var expected = Run(refSession, output, ("input_ids", Ids(), [2, 77]));
            var actual = Run(ourSession, output, ("input_ids", Ids(), [2, 77]));
            Assert.That(MaxAbsDiff(actual, expected), Is.LessThan(1e-5 * MaxAbs(expected)), output);
        }
        var pooled = Run(ourSession, "pooler_output", ("input_ids", Ids(), [2, 77]));
        var last = Run(ourSession, "last_hidden_state", ("input_ids", Ids(), [2, 77]));
        // pooler_output is the hidden state at the first EOS: position 6 of row 0, position 10 of row 1.
        Assert.That(pooled[..32], Is.EqualTo(last[(6 * 32)..(7 * 32)]));
        Assert.That(pooled[32..], Is.EqualTo(last[((77 + 10) * 32)..((77 + 11) * 32)]));
    }

    [Test]
    public void CausalMask_EarlierTokensIgnoreLaterOnes()
    {
        using var s = new InferenceSession(ClipTextEncoderBuilder.Create(ClipTextConfig.Tiny, 4).Build().ToByteArray(), Options());
        var ids = Ids();
        var changed = (int[])ids.Clone();
        changed[5] = 1929; // "cat" -> "dog"
        var a = Run(s, "last_hidden_state", ("input_ids", ids, [2, 77]));
        var b = Run(s, "last_hidden_state", ("input_ids", changed, [2, 77]));
        Assert.That(b[..(5 * 32)], Is.EqualTo(a[..(5 * 32)]), "positions before the change are unaffected");
        Assert.That(b[(5 * 32)..(6 * 32)], Is.Not.EqualTo(a[(5 * 32)..(6 * 32)]));
    }

    [Test]
    public void Sd15SizedEncoder_HasClipViTLParameterCount()
    {
        // CLIP ViT-L/14 text tower: 123,060,480 parameters.
        Assert.That(ClipTextEncoderBuilder.Create(new ClipTextConfig(), 1).ParameterCount, Is.EqualTo(123_060_480L));
    }

    [Test]
    public void BadSizes_NameTheField()
    {
        var ex = Assert.Throws<SpmFormatException>(() => ClipTextEncoderBuilder.Create(ClipTextConfig.Tiny with { Heads = 5 }, 1))!;
        Assert.That(ex.Key, Is.EqualTo("num_attention_heads"));
    }
}

[TestFixture]
public class VaeDecoderBuilderTests
{
    private static string FixtureModel => Path.Combine(TestPaths.TinySd1, "vae_decoder", "model.onnx");

    [Test]
    public void TinyDecoder_HasTheFixturesStructure()
    {
        var ours = VaeDecoderBuilder.Create(VaeDecoderConfig.Tiny, 1).Build();
        var reference = Load(FixtureModel);
        var a = WeightsByConsumer(ours);
        var b = WeightsByConsumer(reference);
        Assert.That(a.Keys.Order(StringComparer.Ordinal), Is.EqualTo(b.Keys.Order(StringComparer.Ordinal)));
        foreach (var (k, t) in a) Assert.That(t.Dims.ToArray(), Is.EqualTo(b[k].Dims.ToArray()), k);
        Assert.That(ours.Graph.Input.Single().Name, Is.EqualTo("latent_sample"));
        Assert.That(ours.Graph.Output.Single().Name, Is.EqualTo("sample"));
    }

    [Test]
    public void TinyDecoder_WithTheFixturesWeights_ReproducesItsOutput()
    {
        var g = VaeDecoderBuilder.Create(VaeDecoderConfig.Tiny, 1);
        var reference = Load(FixtureModel);
        Assert.That(LoadWeightsByConsumer(g, g.Build(), reference, ""), Is.EqualTo(g.Initializers.Count()));
        var latent = RandomFloats(2 * 4 * 8 * 6, 3);
        using var refSession = new InferenceSession(FixtureModel, Options());
        using var ourSession = new InferenceSession(g.Build().ToByteArray(), Options());
        var expected = Run(refSession, "sample", ("latent_sample", latent, [2, 4, 8, 6]));
        var actual = Run(ourSession, "sample", ("latent_sample", latent, [2, 4, 8, 6]));
        Assert.That(actual, Has.Length.EqualTo(2 * 3 * 64 * 48));
        Assert.That(MaxAbsDiff(actual, expected), Is.LessThan(1e-5 * MaxAbs(expected)));
    }

    [Test]
    public void Sd15SizedDecoder_HasSdsDecoderParameterCount()
    {
        // SD's AutoencoderKL decoder (49,490,179) plus post_quant_conv (20).
        Assert.That(VaeDecoderBuilder.Create(new VaeDecoderConfig(), 1).ParameterCount, Is.EqualTo(49_490_199L));
    }
}
