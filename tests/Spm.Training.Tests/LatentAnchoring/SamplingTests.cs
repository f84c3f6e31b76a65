using System.Numerics.Tensors;
using Spm.Core.Randomness;
using Spm.Training.LatentAnchoring;

namespace Spm.Training.Tests.LatentAnchoring;

public class SamplingTests
{
    [Test]
    public void CandidateSizesFollowTheSpec()
    {
        Assert.That(IterationSampler.CandidateSizes(512), Is.EqualTo(new[] { 256, 320, 384, 448 }));
        Assert.That(IterationSampler.CandidateSizes(256), Is.EqualTo(new[] { 128, 192 }));
    }

    [Test]
    public void ReferenceQueryTimestep()
    {
        Assert.That(IterationSampler.ReferenceQueryTimestep(1, 30), Is.EqualTo(999 - 33));
        Assert.That(IterationSampler.ReferenceQueryTimestep(29, 30), Is.EqualTo(999 - 966));
        Assert.That(IterationSampler.ReferenceQueryTimestep(15, 30), Is.EqualTo(499));
    }

    [Test]
    public void DrawsStayInRangeAndCoverAll()
    {
        var rng = new SeededRandom(3);
        var opts = new LatentAnchoringOptions { Concept = "c" };
        var ks = new HashSet<int>();
        var hs = new HashSet<int>();
        for (int i = 0; i < 5000; i++)
        {
            var d = IterationSampler.Draw(rng, opts, Array.Empty<double>());
            Assert.That(d.Steps, Is.InRange(1, 29));
            ks.Add(d.Steps);
            hs.Add(d.Height);
            Assert.That(d.Width, Is.AnyOf(256, 320, 384, 448));
        }
        Assert.That(ks, Has.Count.EqualTo(29));
        Assert.That(hs, Is.EquivalentTo(new[] { 256, 320, 384, 448 }));
    }

    [TestCase(8, 128, 8)]
    [TestCase(4, 64, 16)]
    [TestCase(4, 128, 16)]
    public void LatentSizeIsPixelsOverTheModelsVaeFactor(int vaeFactor, int resolution, int expectedLatent)
    {
        // Resolution 128 draws 64 px (its only candidate); 64 has no candidate below it and stays at 64 px.
        var opts = new LatentAnchoringOptions { Concept = "c", Resolution = resolution };
        opts.Validate();
        var d = IterationSampler.Draw(new SeededRandom(1), opts, Array.Empty<double>(), vaeFactor);
        Assert.That((d.LatentHeight, d.LatentWidth), Is.EqualTo((expectedLatent, expectedLatent)));
        Assert.That(d.VaeScaleFactor, Is.EqualTo(vaeFactor));
    }

    [Test]
    public void AnchorsHaveTargetNormScaledWithin20Percent()
    {
        var rng = new SeededRandom(11);
        var target = new float[77 * 32];
        rng.FillGaussian(target);
        TensorPrimitives.Multiply(target, 3f, target);
        float tn = TensorPrimitives.Norm(target);
        var sampler = new AnchorSampler(target);
        var a = new float[target.Length];
        double minRatio = double.MaxValue, maxRatio = 0;
        for (int i = 0; i < 500; i++)
        {
            sampler.Sample(rng, a);
            double ratio = TensorPrimitives.Norm(a) / tn;
            minRatio = Math.Min(minRatio, ratio);
            maxRatio = Math.Max(maxRatio, ratio);
            // A random direction in 2464 dimensions is nearly orthogonal to the target.
            Assert.That(Math.Abs(TensorPrimitives.CosineSimilarity(a, target)), Is.LessThan(0.15));
        }
        Assert.That(minRatio, Is.GreaterThanOrEqualTo(0.8 - 1e-5));
        Assert.That(maxRatio, Is.LessThan(1.2));
        Assert.That(maxRatio - minRatio, Is.GreaterThan(0.3), "scales spread over [0.8, 1.2)");
    }

    [Test]
    public void AcceptanceRejectsAlignedProposals()
    {
        // In one dimension a proposal is +-1: cos = +1 is never accepted, cos = -1 always is.
        var sampler = new AnchorSampler(new float[] { 2f });
        var rng = new SeededRandom(5);
        var a = new float[1];
        for (int i = 0; i < 200; i++)
        {
            sampler.Sample(rng, a);
            Assert.That(a[0], Is.LessThan(0), "anchors aligned with the target are always rejected");
        }
        Assert.That(sampler.Rejections, Is.GreaterThan(50));
    }
}
