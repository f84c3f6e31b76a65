using Spm.Core;
using Spm.Core.Randomness;
using Spm.Core.Tensors;
using Spm.Diffusion.Membranes;
using Spm.Diffusion.Onnx;
using Spm.Diffusion.Pipelines;
using Spm.Tests.Common;
using Spm.Training.Autodiff;

namespace Spm.Training.Tests.Autodiff;

/// <summary>
/// The gradients a gradient attack follows: through the text encoder (by token embeddings) and through the injected UNet
/// (by conditioning and by gate), each against central finite differences of the forward graphs in ONNX Runtime.
/// </summary>
[TestFixture]
public class ConditioningGradientTests
{
    private static readonly GradientSessionSettings Settings = new(IntraOpThreads: 2);

    private static double Dot(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double s = 0;
        for (int i = 0; i < a.Length; i++) s += (double)a[i] * b[i];
        return s;
    }

    [Test]
    public void TextEncoder_FedItsOwnTableRows_ReproducesTheExportedEncoder()
    {
        using var pipeline = StableDiffusionPipeline.Load(TestPaths.TinySd1);
        using var grads = TextEncoderGradients.Create(OnnxModel.Load(TestPaths.TinySd1, "text_encoder"), Settings);
        var (ids, expected) = pipeline.EncodePrompt("a photo of a red circle");
        var hidden = grads.Forward(ids, grads.Embed(ids, 1));
        Assert.That(grads.EmbeddingTableName, Is.EqualTo("tok.weight"));
        Assert.That(hidden.Shape, Is.EqualTo(expected.Shape));
        Assert.That(hidden.Data, Is.EqualTo(expected.Data).Within(1e-5f));
    }

    [Test]
    public void TextEncoder_VectorJacobianProduct_MatchesCentralDifferences()
    {
        using var pipeline = StableDiffusionPipeline.Load(TestPaths.TinySd1);
        using var grads = TextEncoderGradients.Create(OnnxModel.Load(TestPaths.TinySd1, "text_encoder"), Settings);
        var rng = new SeededRandom(5);
        var ids = pipeline.Tokenizer.Encode("three free words and a circle").Concat(pipeline.Tokenizer.Encode("a blue square")).ToArray();
        var embeds = grads.Embed(ids, 2);
        var hidden = grads.Forward(ids, embeds);
        var cot = new FloatTensor(hidden.Shape, new float[hidden.Length]);
        rng.FillGaussian(cot.Data);
        var g = grads.Backward(ids, embeds, cot);
        Assert.That(g.Shape, Is.EqualTo(embeds.Shape));

        double F(FloatTensor e) => Dot(grads.Forward(ids, e).Data, cot.Data);
        int d = grads.Width, len = ids.Length / 2;
        for (int trial = 0; trial < 4; trial++)
        {
            // A random direction on a few positions of both rows (the free tokens of an attack sit near the start).
            var v = new float[embeds.Length];
            foreach (var row in new[] { 0, 1 })
                for (int pos = 1; pos <= 3; pos++)
                    for (int k = 0; k < d; k++) v[(row * len + pos) * d + k] = (float)rng.NextGaussian();
            const float h = 1e-2f;
            var plus = new FloatTensor(embeds.Shape, embeds.Data.Select((x, i) => x + h * v[i]).ToArray());
            var minus = new FloatTensor(embeds.Shape, embeds.Data.Select((x, i) => x - h * v[i]).ToArray());
            double fd = (F(plus) - F(minus)) / (2 * h);
            double analytic = Dot(g.Data, v);
            Assert.That(analytic, Is.EqualTo(fd).Within(1e-2 * Math.Abs(fd) + 1e-3), $"direction {trial}");
        }
    }

    [Test]
    public void TextEncoder_WithoutATokenLookup_IsANamedFormatError()
    {
        var unet = Path.Combine(TestPaths.TinySd1, "unet");
        Assert.That(() => TextEncoderGradients.Create(OnnxModel.Load(unet), Settings),
            Throws.TypeOf<SpmFormatException>().With.Message.Contains("model.onnx").And.Message.Contains("token-id input"));
    }

    [Test]
    [Category(TestCategories.Slow)]
    public void UNet_LossGradients_ByConditioningAndByGate_MatchCentralDifferences()
    {
        var spm = Path.Combine(TestPaths.Reference("attn2-rank4"), "spm.safetensors");
        var loaded = LoadedSpms.Load(TestPaths.TinySd1, [spm]);
        using var pipeline = StableDiffusionPipeline.Load(TestPaths.TinySd1);
        int channels = pipeline.UNet.InChannels, size = 8;
        var (ids, e0) = pipeline.EncodePrompt("a red circle");
        var (_, e1) = pipeline.EncodePrompt("a blue square");
        int tokens = e0.Shape[1], width = e0.Shape[2];
        using var session = ConditioningGradientSession.Create(OnnxModel.Load(TestPaths.TinySd1, "unet"), loaded.Layout, channels, size, tokens, width, Settings);

        var rng = new SeededRandom(9);
        var latents = new FloatTensor(2, channels, size, size);
        rng.FillGaussian(latents.Data);
        var target = new FloatTensor(latents.Shape, new float[latents.Length]);
        rng.FillGaussian(target.Data);
        var hidden = new FloatTensor(2, tokens, width);
        e0.Data.CopyTo(hidden.Data, 0);
        e1.Data.CopyTo(hidden.Data, e0.Length);
        double[] t = [400, 400];
        float[] multipliers = [0.8f, 1.3f];
        var r = session.Run(latents, t, hidden, target, multipliers);
        Assert.That(r.HiddenGradient.Shape, Is.EqualTo(hidden.Shape));
        var dm = r.MultiplierGradients(loaded.Layout);
        Assert.That(dm, Has.Length.EqualTo(2));

        double Loss(FloatTensor hs, float[] m) => session.Run(latents, t, hs, target, m).Loss;
        const float h = 1e-2f;
        var v = new float[hidden.Length];
        rng.FillGaussian(v);
        var plus = new FloatTensor(hidden.Shape, hidden.Data.Select((x, i) => x + h * v[i]).ToArray());
        var minus = new FloatTensor(hidden.Shape, hidden.Data.Select((x, i) => x - h * v[i]).ToArray());
        double fd = (Loss(plus, multipliers) - Loss(minus, multipliers)) / (2 * h);
        Assert.That(Dot(r.HiddenGradient.Data, v), Is.EqualTo(fd).Within(2e-2 * Math.Abs(fd) + 1e-5), "conditioning");
        for (int row = 0; row < 2; row++)
        {
            var mp = (float[])multipliers.Clone();
            var mm = (float[])multipliers.Clone();
            mp[row] += h;
            mm[row] -= h;
            double fdm = (Loss(hidden, mp) - Loss(hidden, mm)) / (2 * h);
            Assert.That(dm[row], Is.EqualTo(fdm).Within(2e-2 * Math.Abs(fdm) + 1e-5), $"multiplier of row {row}");
        }
        Assert.That(dm.Any(x => Math.Abs(x) > 1e-6), Is.True, "the membrane must move the loss");
    }
}
