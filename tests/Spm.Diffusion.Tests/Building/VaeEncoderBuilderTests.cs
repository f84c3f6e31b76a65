using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Spm.Shapes.Building;
using static Spm.Diffusion.Tests.Building.BuildTestSupport;

namespace Spm.Diffusion.Tests.Building;

[TestFixture]
public class VaeEncoderBuilderTests
{
    private static readonly VaeDecoderConfig Config = new() { BlockOutChannels = [8, 16, 16], LayersPerBlock = 1, NormNumGroups = 8 };

    [Test]
    public void WeightTransfer_MatchesWeightsByConsumer_NotByTheirNumberedNames()
    {
        var ae = VaeEncoderBuilder.CreateAutoencoder(Config, 3);
        var encoder = VaeEncoderBuilder.CreateEncoder(Config, 4);
        var decoder = VaeDecoderBuilder.Create(Config, 5);
        int floatsIn(GraphBuilder g) => g.Build().Graph.Initializer.Count(i => i.DataType == 1);
        Assert.That(WeightTransfer.CopyByConsumer(ae, encoder), Is.EqualTo(floatsIn(encoder)));
        Assert.That(WeightTransfer.CopyByConsumer(ae, decoder), Is.EqualTo(floatsIn(decoder)));
        Assert.That(floatsIn(encoder) + floatsIn(decoder), Is.EqualTo(floatsIn(ae)));
        // The decoder's mid-block attention weights are anonymous (onnx::MatMul_N) and numbered differently in the
        // autoencoder, where the encoder's attention comes first: they must arrive from the decoder half.
        var aeModel = ae.Build();
        string WeightOf(Spm.Diffusion.Onnx.Proto.ModelProto m, string node) => m.Graph.Node.Single(n => n.Name == node).Input[1];
        const string query = "/decoder/mid_block/attentions.0/query/MatMul";
        var decModel = decoder.Build();
        Assert.That(WeightOf(decModel, query), Is.Not.EqualTo(WeightOf(aeModel, query)), "the names differ, so copying by name would be wrong");
        var expected = aeModel.Graph.Initializer.Single(i => i.Name == WeightOf(aeModel, query)).RawData;
        Assert.That(decModel.Graph.Initializer.Single(i => i.Name == WeightOf(decModel, query)).RawData, Is.EqualTo(expected));
    }

    [Test]
    public void WeightTransfer_FromALoadedDecoder_FillsTheAutoencodersDecoderHalfOnly()
    {
        // What --base-model does: a shipped pipeline's decoder (a ModelProto read from disk) into a fresh autoencoder,
        // whose encoder half keeps its seeded weights and is the only part trained.
        var ae = VaeEncoderBuilder.CreateAutoencoder(Config, 3);
        var before = ae.Build().Graph.Initializer.Where(i => i.DataType == 1).ToDictionary(i => i.Name, i => i.RawData);
        var shipped = Spm.Diffusion.Onnx.Proto.ModelProto.Parser.ParseFrom(VaeDecoderBuilder.Create(Config, 42).Build().ToByteArray());
        var copied = WeightTransfer.CopyByConsumer(shipped, ae, partial: true);
        int decoderFloats = shipped.Graph.Initializer.Count(i => i.DataType == 1);
        Assert.That(copied, Has.Count.EqualTo(decoderFloats));
        Assert.That(copied.All(n => ae.Build().Graph.Node.Any(node => node.Name.StartsWith("/decoder/", StringComparison.Ordinal) && node.Input.Contains(n))
            || n.Contains("post_quant", StringComparison.Ordinal)), "only decoder weights are copied");
        var after = ae.Build().Graph.Initializer.Where(i => i.DataType == 1).ToDictionary(i => i.Name, i => i.RawData);
        foreach (var (name, data) in after.Where(kv => !copied.Contains(kv.Key)))
            Assert.That(data.Equals(before[name]), name);
        // Seeded differently, so the random (conv) weights of the decoder half changed (norm scales are ones in both).
        Assert.That(copied.Count(n => !after[n].Equals(before[n])), Is.GreaterThan(decoderFloats / 3));
        // Not partial: the encoder's weights have no counterpart in a decoder.
        Assert.Throws<Spm.Core.SpmException>(() => WeightTransfer.CopyByConsumer(shipped, VaeEncoderBuilder.CreateAutoencoder(Config, 3), partial: false));
    }

    [Test]
    public void Autoencoder_DownsamplesByTwoPerLevel_AndItsDecoderHalfEqualsTheStandaloneDecoder()
    {
        var ae = VaeEncoderBuilder.CreateAutoencoder(Config, 5);
        var decoder = VaeDecoderBuilder.Create(Config, 99);
        WeightTransfer.CopyByConsumer(ae, decoder);

        var image = RandomFloats(2 * 3 * 32 * 32, 7);
        using var aeSession = new InferenceSession(ae.Build().ToByteArray(), Options());
        using var inputs = OrtValue.CreateTensorValueFromMemory(image, [2, 3, 32, 32]);
        using var r = aeSession.Run(new RunOptions(), [VaeEncoderBuilder.ImageInput], [inputs], [VaeEncoderBuilder.LatentOutput, VaeEncoderBuilder.ReconstructionOutput]);
        Assert.That(r[0].GetTensorTypeAndShape().Shape, Is.EqualTo(new long[] { 2, 4, 8, 8 }));
        Assert.That(r[1].GetTensorTypeAndShape().Shape, Is.EqualTo(new long[] { 2, 3, 32, 32 }));
        var latent = r[0].GetTensorDataAsSpan<float>().ToArray();
        var reconstruction = r[1].GetTensorDataAsSpan<float>().ToArray();

        using var decSession = new InferenceSession(decoder.Build().ToByteArray(), Options());
        var decoded = Run(decSession, "sample", ("latent_sample", latent, [2, 4, 8, 8]));
        Assert.That(MaxAbsDiff(decoded, reconstruction), Is.LessThan(1e-5 * Math.Max(1, MaxAbs(reconstruction))));
    }

    [Test]
    public void LatentNoise_IsAddedToTheLatentTheDecoderReads_AndLeavesTheWeightsAsTheyAre()
    {
        var plain = VaeEncoderBuilder.CreateAutoencoder(Config, 5);
        var noisy = VaeEncoderBuilder.CreateAutoencoder(Config, 5, latentNoise: true);
        Assert.That(noisy.Build().Graph.Input.Select(i => i.Name), Is.EqualTo(new[] { VaeEncoderBuilder.ImageInput, VaeEncoderBuilder.LatentNoiseInput }));
        var decoder = VaeDecoderBuilder.Create(Config, 99);
        WeightTransfer.CopyByConsumer(noisy, decoder);

        var image = RandomFloats(2 * 3 * 32 * 32, 7);
        var noise = RandomFloats(2 * 4 * 8 * 8, 8);
        using var plainSession = new InferenceSession(plain.Build().ToByteArray(), Options());
        using var noisySession = new InferenceSession(noisy.Build().ToByteArray(), Options());
        using var decSession = new InferenceSession(decoder.Build().ToByteArray(), Options());
        var latent = Run(plainSession, VaeEncoderBuilder.LatentOutput, (VaeEncoderBuilder.ImageInput, image, [2, 3, 32, 32]));
        var zero = Run(noisySession, VaeEncoderBuilder.ReconstructionOutput, (VaeEncoderBuilder.ImageInput, image, [2, 3, 32, 32]), (VaeEncoderBuilder.LatentNoiseInput, new float[noise.Length], [2, 4, 8, 8]));
        Assert.That(zero, Is.EqualTo(Run(plainSession, VaeEncoderBuilder.ReconstructionOutput, (VaeEncoderBuilder.ImageInput, image, [2, 3, 32, 32]))), "zero noise: the plain autoencoder");
        // With noise, the reconstruction is the decoder's output for latent + noise.
        var shifted = latent.Zip(noise, (z, e) => z + e).ToArray();
        var withNoise = Run(noisySession, VaeEncoderBuilder.ReconstructionOutput, (VaeEncoderBuilder.ImageInput, image, [2, 3, 32, 32]), (VaeEncoderBuilder.LatentNoiseInput, noise, [2, 4, 8, 8]));
        var expected = Run(decSession, "sample", ("latent_sample", shifted, [2, 4, 8, 8]));
        Assert.That(MaxAbsDiff(withNoise, expected), Is.LessThan(1e-5 * Math.Max(1, MaxAbs(expected))));
        Assert.That(MaxAbsDiff(withNoise, zero), Is.GreaterThan(1e-3));
    }

    [Test]
    public void ColourTransform_OutputsTheReconstructionInTheGivenColourBasis()
    {
        var ae = VaeEncoderBuilder.CreateAutoencoder(Config, 5, colourTransform: true);
        var model = ae.Build();
        Assert.That(model.Graph.Output.Select(o => o.Name), Does.Contain(VaeEncoderBuilder.ColourOutput));
        Assert.That(model.Graph.Initializer.Select(i => i.Name), Does.Not.Contain(VaeEncoderBuilder.ColourTransformInput), "an input, so it is never trained");
        float[] m = [0.2f, 0.5f, 0.3f, 1, -1, 0, 0.5f, 0.5f, -1];
        var image = RandomFloats(2 * 3 * 32 * 32, 7);
        using var session = new InferenceSession(model.ToByteArray(), Options());
        var inputs = new (string, Array, int[])[] { (VaeEncoderBuilder.ImageInput, image, [2, 3, 32, 32]), (VaeEncoderBuilder.ColourTransformInput, m, [3, 3, 1, 1]) };
        var rgb = Run(session, VaeEncoderBuilder.ReconstructionOutput, inputs);
        var colour = Run(session, VaeEncoderBuilder.ColourOutput, inputs);
        int pixels = 32 * 32;
        var expected = new float[colour.Length];
        for (int n = 0; n < 2; n++)
            for (int o = 0; o < 3; o++)
                for (int p = 0; p < pixels; p++)
                    for (int i = 0; i < 3; i++)
                        expected[(n * 3 + o) * pixels + p] += m[3 * o + i] * rgb[(n * 3 + i) * pixels + p];
        Assert.That(MaxAbsDiff(colour, expected), Is.LessThan(1e-5 * Math.Max(1, MaxAbs(expected))));
    }
}
