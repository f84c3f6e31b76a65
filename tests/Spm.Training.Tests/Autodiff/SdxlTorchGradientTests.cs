using Spm.Core.SafeTensors;
using Spm.Tests.Common;
using Spm.Training.Autodiff;

namespace Spm.Training.Tests.Autodiff;

/// <summary>
/// Membrane gradients on the PyTorch-exported SDXL UNet against PyTorch autograd (issue 21): the <c>spm grad</c> path
/// (<see cref="SpmGradients"/>, the gradient graph built from the export) gives d sum(out_sample * R) / d tensor for
/// every membrane tensor (rank 2, alpha 4, every attention and feed-forward linear of every transformer layer) within
/// 1e-4 of each tensor's largest value. Reference: <c>tests/fixtures/tiny-sdxl-torch/membranes</c>.
/// </summary>
[TestFixture]
public class SdxlTorchGradientTests
{
    [Test]
    [Category(TestCategories.Slow)]
    public void MembraneGradients_MatchPyTorchAutograd()
    {
        float multiplier;
        using (var c = TinySdxlTorch.Case("membranes")) multiplier = c.RootElement.GetProperty("multiplier").GetSingle();
        var (grads, loss) = SpmGradients.Compute(TinySdxlTorch.Folder, TinySdxlTorch.FixtureFile("membranes", "spm.safetensors"), multiplier,
            TinySdxlTorch.FixtureFile("membranes", "inputs.safetensors"), new GradientSessionSettings(IntraOpThreads: 2));

        var expected = TinySdxlTorch.ReadAll("membranes", "expected.safetensors");
        var keys = expected.Keys.Where(k => k.StartsWith("grad.", StringComparison.Ordinal)).ToList();
        Assert.That(grads.Keys, Is.EquivalentTo(keys));
        double worst = 0;
        string worstKey = "";
        foreach (var key in keys)
        {
            Assert.That(grads[key].Shape, Is.EqualTo(expected[key].Shape), key);
            double err = TinySdxlTorch.RelError(grads[key].Data, expected[key].Data);
            if (err > worst) (worst, worstKey) = (err, key);
            Assert.That(err, Is.LessThan(1e-4), $"{key}: max |diff| / max |expected| = {err:E2}");
        }

        var inputs = TinySdxlTorch.ReadAll("membranes", "inputs.safetensors");
        var r = inputs["R"].Data;
        var outSample = expected["out_sample"].Data;
        double refLoss = 0;
        for (int i = 0; i < r.Length; i++) refLoss += (double)r[i] * outSample[i];
        Assert.That(loss, Is.EqualTo(refLoss).Within(1e-4 * Math.Max(1, Math.Abs(refLoss))));
        TestContext.Out.WriteLine($"{keys.Count} gradient tensors, worst relative error {worst:E2} ({worstKey}); loss {loss} vs {refLoss}");
    }
}
