using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Spm.Core.Randomness;
using Spm.Training.Autodiff;
using Spm.Training.LatentAnchoring;
using Spm.Training.Tests.Autodiff;
using Spm.Tests.Common;

namespace Spm.Training.Tests.LatentAnchoring;

/// <summary>
/// The training graph's shape probe runs at a small latent size (the deepest UNet level 2x2) instead of the training
/// size, which made the probe most of a gradient-graph build: the graph built must be the very same.
/// </summary>
[TestFixture]
public class ProbeSizeTests
{
    private static readonly string[] Wrt = ["conv_in.weight", "onnx::MatMul_3644", "up_blocks.1.resnets.0.conv1.weight"];

    [Test]
    [Category(TestCategories.Slow)]
    public void ASmallProbe_BuildsTheSameGradientGraphAsAProbeAtTheTrainingSize()
    {
        var withLoss = MembraneTrainingGraph.AddRowLoss(UnetFixture.Model);
        var settings = new GradientSessionSettings(UnetFixture.Folder);
        var inputs = UnetFixture.Inputs(seed: 3, batch: 2, h: 32, w: 32);
        var rng = new SeededRandom(9);
        var target = new float[2 * 4 * 32 * 32];
        rng.FillGaussian(target);
        inputs[MembraneTrainingGraph.TargetInput] = (target, [2, 4, 32, 32]);
        inputs[MembraneTrainingGraph.RowWeightsInput] = ([1f, 0.5f], [2]);
        var feeds = UnetFixture.ToOrt(inputs);
        var owned = new List<OrtValue>();
        try
        {
            // The fixture UNet halves its latent once: the probe keeps its deepest level at 2x2, so 4x4 latents.
            var probe = MembraneTrainingGraph.ProbeFeeds(withLoss, feeds, Wrt, owned);
            Assert.That(probe["sample"].GetTensorTypeAndShape().Shape, Is.EqualTo(new long[] { 2, 4, 4, 4 }));
            Assert.That(probe[MembraneTrainingGraph.TargetInput].GetTensorTypeAndShape().Shape, Is.EqualTo(new long[] { 2, 4, 4, 4 }));
            Assert.That(probe["encoder_hidden_states"].GetTensorTypeAndShape().Shape, Is.EqualTo(new long[] { 2, 77, 32 }), "inputs without the latent's size keep theirs");
            Assert.That(probe.ContainsKey(MembraneTrainingGraph.RowWeightsInput), Is.False, "the forward graph does not read the row weights");
            Assert.That(probe["sample"].GetTensorDataAsSpan<float>()[3], Is.EqualTo(inputs["sample"].Data[3]), "the crop is the top-left corner of each plane");
            Assert.That(probe["sample"].GetTensorDataAsSpan<float>()[5], Is.EqualTo(inputs["sample"].Data[33]));
            Assert.That(probe["sample"].GetTensorDataAsSpan<float>()[16], Is.EqualTo(inputs["sample"].Data[32 * 32]), "the next plane");

            var small = MembraneTrainingGraph.BuildGradient(withLoss, Wrt, feeds, settings);
            var full = MembraneTrainingGraph.BuildGradient(withLoss, Wrt, feeds, settings, smallProbe: false);
            Assert.That(small.Model.ToByteArray(), Is.EqualTo(full.Model.ToByteArray()));
        }
        finally
        {
            foreach (var v in owned) v.Dispose();
            foreach (var v in feeds.Values) v.Dispose();
        }
    }
}
