using Spm.Core.Atlas;

namespace Spm.Core.Tests.Atlas;

[TestFixture]
public sealed class SimilarityBlendTests
{
    private static readonly double[,] A = { { 1, 0.5, -0.2 }, { 0.5, 1, 0.1 }, { -0.2, 0.1, 1 } };
    private static readonly double[,] B = { { 1, 0.1, 0.7 }, { 0.1, 1, 0.3 }, { 0.7, 0.3, 1 } };

    [Test]
    public void TheBlend_IsTheWeightedMean_WithTheWeightsNormalised()
    {
        var blended = SimilarityGraph.Blend([(A, 3), (B, 1)]);
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++)
                Assert.That(blended[i, j], Is.EqualTo(0.75 * A[i, j] + 0.25 * B[i, j]).Within(1e-15), $"[{i}, {j}]");
        // A weight of zero leaves the other matrix exactly as it was.
        Assert.That(SimilarityGraph.Blend([(A, 0), (B, 2)]), Is.EqualTo(B));
    }

    [Test]
    public void BadBlends_AreRefusedWithTheReason()
    {
        Assert.That(() => SimilarityGraph.Blend([]), Throws.ArgumentException.With.Message.StartsWith("No similarity matrix to blend."));
        Assert.That(() => SimilarityGraph.Blend([(A, 1), (new double[2, 2], 1)]),
            Throws.ArgumentException.With.Message.StartsWith("Similarity matrices differ in size (2x2 against 3x3)."));
        Assert.That(() => SimilarityGraph.Blend([(A, -1), (B, 1)]), Throws.ArgumentException.With.Message.StartsWith("A blend weight must be finite and >= 0, got -1."));
        Assert.That(() => SimilarityGraph.Blend([(A, double.NaN)]), Throws.ArgumentException.With.Message.StartsWith("A blend weight must be finite and >= 0, got NaN."));
        Assert.That(() => SimilarityGraph.Blend([(A, 0), (B, 0)]), Throws.ArgumentException.With.Message.StartsWith("The blend weights sum to zero."));
    }
}
