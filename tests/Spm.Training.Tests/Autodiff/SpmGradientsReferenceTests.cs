using Spm.Core;
using Spm.Core.SafeTensors;
using Spm.Core.Tensors;
using Spm.Tests.Common;
using Spm.Training.Autodiff;

namespace Spm.Training.Tests.Autodiff;

/// <summary>
/// Membrane mode against PyTorch: the gradients of sum(out_sample * R) with respect to every membrane tensor of the
/// reference SPMs reproduce <c>expected.safetensors</c> (<c>grad.*</c>) within 1e-3 of each tensor's largest value.
/// </summary>
[TestFixture]
public class SpmGradientsReferenceTests
{
    private static string UnetFolder => Path.Combine(TestPaths.TinySd1, "unet");

    [TestCase("all-layers")]
    [TestCase("attn2-rank4")]
    [Category(TestCategories.Slow)]
    public void MatchesPyTorchGradients(string caseName)
    {
        var dir = TestPaths.Reference(caseName);
        float multiplier;
        using (var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "case.json"))))
            multiplier = doc.RootElement.GetProperty("multiplier").GetSingle();
        var (grads, loss) = SpmGradients.Compute(TestPaths.TinySd1, Path.Combine(dir, "spm.safetensors"), multiplier,
            Path.Combine(dir, "inputs.safetensors"), new GradientSessionSettings(IntraOpThreads: 2));

        using var expected = SafeTensorsFile.Open(Path.Combine(dir, "expected.safetensors"));
        var expectedKeys = expected.Tensors.Select(t => t.Name).Where(n => n.StartsWith("grad.", StringComparison.Ordinal)).ToList();
        Assert.That(grads.Keys, Is.EquivalentTo(expectedKeys));
        double worst = 0;
        foreach (var key in expectedKeys)
        {
            var want = expected.ReadFloat(key);
            var got = grads[key];
            Assert.That(got.Shape, Is.EqualTo(want.Shape), key);
            double err = RelError(got, want);
            worst = Math.Max(worst, err);
            Assert.That(err, Is.LessThan(1e-3), $"{key}: max |diff| / max |expected| = {err:E2}");
        }

        // The loss is sum(out_sample * R) with the reference output.
        using var inputs = SafeTensorsFile.Open(Path.Combine(dir, "inputs.safetensors"));
        var r = inputs.ReadFloat("R");
        var outSample = expected.ReadFloat("out_sample");
        double refLoss = 0;
        for (int i = 0; i < r.Length; i++) refLoss += (double)r.Data[i] * outSample.Data[i];
        Assert.That(loss, Is.EqualTo(refLoss).Within(1e-4 * Math.Max(1, Math.Abs(refLoss))));
        TestContext.Out.WriteLine($"{caseName}: {expectedKeys.Count} tensors, worst relative error {worst:E2}, loss {loss} vs {refLoss}");
    }

    [Test]
    public void MissingInputIsANamedFormatError()
    {
        var dir = TestPaths.NewTempDir();
        var inputs = Path.Combine(dir, "inputs.safetensors");
        using (var src = SafeTensorsFile.Open(Path.Combine(TestPaths.Reference("attn2-rank4"), "inputs.safetensors")))
        {
            var keep = new Dictionary<string, FloatTensor>
            {
                ["sample"] = src.ReadFloat("sample"),
                ["timestep"] = src.ReadFloat("timestep"),
                ["encoder_hidden_states"] = src.ReadFloat("encoder_hidden_states"),
            };
            SafeTensorsWriter.WriteFloat(inputs, keep);
        }
        var ex = Assert.Throws<SpmFormatException>(() => SpmGradients.Compute(TestPaths.TinySd1,
            Path.Combine(TestPaths.Reference("attn2-rank4"), "spm.safetensors"), 1f, inputs));
        Assert.That(ex!.Key, Is.EqualTo("R"));
        Assert.That(ex.Message, Does.Contain(inputs));
    }

    private static double RelError(FloatTensor actual, FloatTensor expected)
    {
        double maxDiff = 0, maxRef = 0;
        for (int i = 0; i < actual.Length; i++)
        {
            maxDiff = Math.Max(maxDiff, Math.Abs((double)actual.Data[i] - expected.Data[i]));
            maxRef = Math.Max(maxRef, Math.Abs((double)expected.Data[i]));
        }
        return maxRef == 0 ? maxDiff : maxDiff / maxRef;
    }
}
