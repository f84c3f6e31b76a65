using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Spm.Diffusion.Runtime;
using Spm.Shapes.Building;

namespace Spm.Diffusion.Tests.Runtime;

/// <summary>
/// Sessions of one <see cref="OnnxSessionGroup"/> with a shared pre-packed weight store (what lets <c>spm bench injection</c>
/// hold an SDXL-sized UNet and its injected twin in one process) compute exactly what sessions of their own compute,
/// also when the group holds two models of the same shapes with different weights.
/// </summary>
public class SharedPrepackedWeightsTests
{
    [Test]
    public void SharedStore_GivesTheSameOutputsAsSeparateSessions_ForModelsWithDifferentWeights()
    {
        byte[] a = UNetBuilder.Create(UNetPresets.TinySd1, 1).Build().ToByteArray();
        byte[] b = UNetBuilder.Create(UNetPresets.TinySd1, 2).Build().ToByteArray();
        var options = new OnnxRuntimeOptions { IntraOpThreads = 1 };

        float[] Out(InferenceSession s)
        {
            var rng = new Spm.Core.Randomness.SeededRandom(3);
            var sample = new float[4 * 8 * 8]; rng.FillGaussian(sample);
            var hidden = new float[5 * 32]; rng.FillGaussian(hidden);
            using var x = OrtValue.CreateTensorValueFromMemory(sample, [1, 4, 8, 8]);
            using var t = OrtValue.CreateTensorValueFromMemory(new float[] { 400 }, [1]);
            using var h = OrtValue.CreateTensorValueFromMemory(hidden, [1, 5, 32]);
            using var o = s.Run(new RunOptions(), ["sample", "timestep", "encoder_hidden_states"], [x, t, h], ["out_sample"]);
            return o[0].GetTensorDataAsSpan<float>().ToArray();
        }

        float[] aAlone, bAlone;
        using (var s = new OnnxSessionGroup(options).Open(OnnxModelSource.FromBytes(a, null, "a"))) aAlone = Out(s);
        using (var s = new OnnxSessionGroup(options).Open(OnnxModelSource.FromBytes(b, null, "b"))) bAlone = Out(s);
        Assert.That(aAlone, Is.Not.EqualTo(bAlone), "the two models differ");

        using var store = new PrePackedWeightsContainer();
        var group = new OnnxSessionGroup(options) { SharedPrepackedWeights = store };
        using var a1 = group.Open(OnnxModelSource.FromBytes(a, null, "a1"));
        using var b1 = group.Open(OnnxModelSource.FromBytes(b, null, "b1"));
        using var a2 = group.Open(OnnxModelSource.FromBytes(a, null, "a2"));
        Assert.That(Out(a1), Is.EqualTo(aAlone));
        Assert.That(Out(b1), Is.EqualTo(bAlone));
        Assert.That(Out(a2), Is.EqualTo(aAlone));
    }
}
