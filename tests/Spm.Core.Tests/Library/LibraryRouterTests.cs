using Spm.Core.Gating;
using Spm.Core.Library;

namespace Spm.Core.Tests.Library;

public class LibraryRouterTests
{
    private const int Width = 77 * 16;
    private static readonly int[] Specials = [49406, 49407];

    private static GateText RandomText(Random rng, int tokens, float scale = 1f)
    {
        var e = new float[Width];
        for (int i = 0; i < e.Length; i++) e[i] = scale * ((float)rng.NextDouble() * 2f - 1f);
        return new GateText(e, Enumerable.Range(0, tokens).Select(_ => rng.Next(1, 60)).Append(49406), Specials);
    }

    /// <summary>A synthetic library: <paramref name="n"/> SPMs, some with two concepts, one all-zero concept, and prompts near some concepts.</summary>
    private static (string[] Names, List<IReadOnlyList<GateText>> Concepts, GateText Empty, List<GateText> Prompts) Synthetic(int n, int seed)
    {
        var rng = new Random(seed);
        var names = Enumerable.Range(0, n).Select(i => $"spm{i}").ToArray();
        var concepts = new List<IReadOnlyList<GateText>>();
        for (int i = 0; i < n; i++)
            concepts.Add(i % 7 == 3 ? [RandomText(rng, 2), RandomText(rng, 3)] : [RandomText(rng, 2)]);
        if (n > 5) concepts[5] = [new GateText(new float[Width], [7], Specials)];
        var empty = RandomText(rng, 0, 0.5f);
        var prompts = new List<GateText> { RandomText(rng, 4), RandomText(rng, 0), new GateText(new float[Width], [], Specials) };
        // Prompts close to a concept (a high cosine) and ones sharing its tokens.
        foreach (int target in new[] { 0, 10, 24 }.Where(t => t < n))
        {
            var c = concepts[target][0];
            var e = c.Embedding.Select(v => v + 0.3f * ((float)rng.NextDouble() - 0.5f)).ToArray();
            prompts.Add(new GateText(e, c.TokenSet.Append(99), Specials));
        }
        return (names, concepts, empty, prompts);
    }

    [TestCase(GateCalibration.None)]
    [TestCase(GateCalibration.EmptyPrompt)]
    public void BatchedGammasEqualPerSpmGate(GateCalibration calibration)
    {
        var (names, concepts, empty, prompts) = Synthetic(50, 23);
        var router = new LibraryRouter(names, concepts, calibration, empty);
        Assert.That(router.Count, Is.EqualTo(50));
        Assert.That(router.Rows, Is.EqualTo(50 + concepts.Count(c => c.Count == 2)));
        var settings = new GateSettings(Calibration: calibration);
        foreach (var p in prompts)
        {
            var batched = router.Gammas(p);
            for (int i = 0; i < names.Length; i++)
            {
                float expected = FacilitatedTransport.SpmGamma(p, concepts[i], calibration == GateCalibration.EmptyPrompt ? empty : null);
                float read = FacilitatedTransport.Read(p, concepts[i], settings, empty).Gamma;
                Assert.That(read, Is.EqualTo(expected), "the per-SPM reading under these settings");
                Assert.That(batched[i], Is.EqualTo(expected).Within(1e-6f), $"SPM {i} (bit-equal in practice: same Dot per row, same formula)");
            }
        }
    }

    [Test]
    public void RoutingKeepsTheSpmsThePerSpmGateOpens()
    {
        var (names, concepts, empty, prompts) = Synthetic(50, 7);
        var router = new LibraryRouter(names, concepts, GateCalibration.EmptyPrompt, empty);
        var settings = new GateSettings(Calibration: GateCalibration.EmptyPrompt);
        foreach (var p in prompts)
        {
            var perSpm = concepts.Select(c => FacilitatedTransport.SpmGamma(p, c, empty)).ToArray();
            foreach (float threshold in new[] { float.Epsilon, 0.1f, 0.5f, 0.9f })
            {
                var expected = Enumerable.Range(0, 50).Where(i => perSpm[i] >= threshold).OrderByDescending(i => perSpm[i]).ThenBy(i => i).ToList();
                var routed = router.Route(p, threshold, settings: settings);
                Assert.That(routed.Select(r => r.Index), Is.EqualTo(expected), $"threshold {threshold}");
                foreach (var r in routed)
                {
                    Assert.That(r.Name, Is.EqualTo(names[r.Index]));
                    Assert.That(r.Multiplier, Is.EqualTo(FacilitatedTransport.Read(p, concepts[r.Index], settings, empty).Multiplier).Within(1e-6f));
                }
                Assert.That(router.Route(p, threshold, topK: 3).Select(r => r.Index), Is.EqualTo(expected.Take(3)));
            }
        }
        // The prompts built near concepts 0, 10 and 24 open those gates fully (they hold every concept token).
        Assert.That(router.Route(prompts[3], 0.99f).Select(r => r.Index), Does.Contain(0));
    }

    [Test]
    public void ZeroTopKAndEmptyLibrary()
    {
        var (names, concepts, empty, prompts) = Synthetic(10, 1);
        Assert.That(new LibraryRouter(names, concepts, GateCalibration.None).Route(prompts[0], 0f, topK: 0), Is.Empty);
        var none = new LibraryRouter([], [], GateCalibration.None);
        Assert.That(none.Gammas(prompts[0]), Is.Empty);
    }

    [Test]
    public void RejectsWhatItCannotBatch()
    {
        var (names, concepts, empty, prompts) = Synthetic(4, 2);
        Assert.That(() => new LibraryRouter(names, concepts, GateCalibration.Learned, empty), Throws.ArgumentException.With.Message.Contains("learned"));
        Assert.That(() => new LibraryRouter(names, concepts, GateCalibration.EmptyPrompt), Throws.ArgumentException.With.Message.Contains("empty prompt"));
        Assert.That(() => new LibraryRouter(names[..3], concepts, GateCalibration.None), Throws.ArgumentException);
        var router = new LibraryRouter(names, concepts, GateCalibration.None);
        Assert.That(() => router.Gammas(new GateText(new float[8], [], Specials)), Throws.ArgumentException.With.Message.Contains("8 values"));
    }
}
