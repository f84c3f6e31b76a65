using Spm.Core.Tensors;
using Spm.Diffusion.Pipelines;
using Spm.Diffusion.Pipelines.Families;

namespace Spm.Diffusion.Tests.Pipelines;

/// <summary>The UNet's guidance directions (the concept atlas's <c>--edges guidance</c>) on the tiny SD 1.x fixture.</summary>
[TestFixture]
public class GuidanceDirectionsTests
{
    [Test]
    public void Direction_IsTheConditionalMinusTheEmptyPrediction_PerTimestepAndLatent()
    {
        var pipeline = PipelineFixture.Pipeline;
        var options = new GuidanceDirectionOptions(Latents: 2, Timesteps: [999, 500], Seed: 7);
        var d = GuidanceDirections.Compute(pipeline, ["a photo of a cat", "a red house"], options);

        int c = pipeline.UNet.InChannels, side = pipeline.Folder.UNetSampleSize, perLatent = c * side * side;
        Assert.That(d, Has.Length.EqualTo(2));
        Assert.That(d[0], Has.Length.EqualTo(2 * 2 * perLatent));

        // The reference, one latent and one timestep at a time: the second latent is image seed 8's noise, at t = 500.
        var latent = new FloatTensor(1, c, side, side);
        LatentNoise.Fill(8, latent.Data);
        var sizes = SizeConditioning.Default(side * pipeline.Folder.VaeScaleFactor, side * pipeline.Folder.VaeScaleFactor);
        float[] Eps(string prompt) => pipeline.UNet.Predict(latent, 500, pipeline.Conditioning.BuildRows([pipeline.Encode(prompt)], sizes)).Data;
        var cond = Eps("a red house");
        var empty = Eps("");
        var slice = d[1].AsSpan(1 * 2 * perLatent + perLatent, perLatent);
        for (int i = 0; i < perLatent; i += 97)
            Assert.That(slice[i], Is.EqualTo(cond[i] - empty[i]).Within(2e-4f), $"element {i}");
    }

    [Test]
    public void EmptyPrompt_HasNoDirection_AndRepeatsAreIdentical()
    {
        var pipeline = PipelineFixture.Pipeline;
        var d = GuidanceDirections.Compute(pipeline, ["", "a dog", "a dog"], new GuidanceDirectionOptions(Latents: 1));
        Assert.That(d[0].All(v => v == 0f), Is.True, "E(\"\") minus itself");
        Assert.That(d[1], Is.EqualTo(d[2]));
        Assert.That(d[1].Any(v => v != 0f), Is.True);
    }

    [Test]
    public void BadOptions_AreRefused_WithTheReason()
    {
        var pipeline = PipelineFixture.Pipeline;
        Assert.That(() => GuidanceDirections.Compute(pipeline, ["a"], new GuidanceDirectionOptions(Latents: 0)),
            Throws.InstanceOf<ArgumentOutOfRangeException>());
        Assert.That(() => GuidanceDirections.Compute(pipeline, ["a"], new GuidanceDirectionOptions(Timesteps: [1000])),
            Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("0..999"));
    }

    [Test]
    public void Cancelled_StopsBeforeTheUNet()
    {
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        Assert.That(() => GuidanceDirections.Compute(PipelineFixture.Pipeline, ["a"], null, null, cts.Token),
            Throws.InstanceOf<OperationCanceledException>());
    }
}
