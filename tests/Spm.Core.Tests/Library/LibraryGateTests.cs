using Spm.Core.Gating;
using Spm.Core.Library;

namespace Spm.Core.Tests.Library;

/// <summary>The batched gate of a whole library (cosine rows and stacked linear probes) against the per-SPM <see cref="FacilitatedTransport.Read"/>.</summary>
public class LibraryGateTests
{
    private const int D = 16, L = 77, Width = L * D;
    private static readonly int[] Specials = [49406, 49407];

    private static GateText RandomText(Random rng, int tokens, float scale = 1f)
    {
        var e = new float[Width];
        for (int i = 0; i < e.Length; i++) e[i] = scale * ((float)rng.NextDouble() * 2f - 1f);
        // Some positions sit inside a word (a probe that skips them reads the rest).
        var midWord = Enumerable.Range(0, L).Select(i => i >= 1 && i <= tokens && rng.Next(4) == 0).ToArray();
        return new GateText(e, Enumerable.Range(0, tokens).Select(_ => rng.Next(1, 60)).Append(49406), Specials, midWord);
    }

    private static float[] RandomFloats(Random rng, int n, float scale) => Enumerable.Range(0, n).Select(_ => scale * ((float)rng.NextDouble() * 2f - 1f)).ToArray();

    /// <summary>
    /// 60 SPMs: every third with a linear probe fitted on this encoder (some with strength 1.5), one in ten with a
    /// hidden-layer probe, one with a probe of another encoder (Auto falls back to the cosine gate), the rest cosine.
    /// </summary>
    private static (string[] Names, List<IReadOnlyList<GateText>> Concepts, ConceptProbe?[] Probes, GateText Empty, List<GateText> Prompts) Synthetic(int seed)
    {
        const int n = 60;
        var rng = new Random(seed);
        var empty = RandomText(rng, 0, 0.5f);
        var signature = ConceptProbe.EncoderSignature(empty.Embedding, D);
        var names = Enumerable.Range(0, n).Select(i => $"concept{i}").ToArray();
        var concepts = new List<IReadOnlyList<GateText>>();
        var probes = new ConceptProbe?[n];
        for (int i = 0; i < n; i++)
        {
            concepts.Add(i % 7 == 3 ? [RandomText(rng, 2), RandomText(rng, 3)] : [RandomText(rng, 2)]);
            if (i % 20 == 19)
                probes[i] = new ConceptProbe(names[i], RandomFloats(rng, 2 * D, 0.6f), -2f, 0.7f, signature, lookAhead: 1, skipMidWord: true);
            else if (i % 10 == 9)
                probes[i] = new ConceptProbe(names[i], RandomFloats(rng, 4, 1f), -5f, 0.7f, signature, hidden: new ProbeHiddenLayer(RandomFloats(rng, 4 * D, 0.5f), RandomFloats(rng, 4, 0.2f)));
            else if (i % 3 == 0)
                probes[i] = new ConceptProbe(names[i], RandomFloats(rng, D, 0.6f), -3f - 6f * (float)rng.NextDouble(), 0.5f + (float)rng.NextDouble(), signature,
                    strength: i % 2 == 0 ? 1.5f : 1f, readLast: i % 6 == 0 ? 3 : 0); // some read only the last positions
        }
        probes[7] = new ConceptProbe(names[7], RandomFloats(rng, D, 0.6f), 0f, 1f, RandomFloats(rng, D, 5f)); // another encoder
        var prompts = new List<GateText> { RandomText(rng, 4), RandomText(rng, 0), new GateText(new float[Width], [], Specials) };
        foreach (int target in new[] { 0, 3, 10, 24, 29 })
        {
            var c = concepts[target][0];
            var e = c.Embedding.Select(v => v + 0.3f * ((float)rng.NextDouble() - 0.5f)).ToArray();
            prompts.Add(new GateText(e, c.TokenSet.Append(99), Specials));
        }
        for (int k = 0; k < 8; k++) prompts.Add(RandomText(rng, 3, 2f));
        return (names, concepts, probes, empty, prompts);
    }

    [TestCase(GateCalibration.Auto)]
    [TestCase(GateCalibration.EmptyPrompt)]
    [TestCase(GateCalibration.None)]
    public void BatchedReadingsEqualThePerSpmRead_BitForBit(GateCalibration calibration)
    {
        var (names, concepts, probes, empty, prompts) = Synthetic(5);
        var settings = new GateSettings(GateCurve.Square, 1.2f, null, calibration);
        var gate = new LibraryGate(names, concepts, probes, settings, empty);
        if (calibration == GateCalibration.Auto)
        {
            Assert.That(gate.BatchedProbes, Is.EqualTo(probes.Count(p => p is { Hidden: null, LookAhead: 0, SkipsMidWord: false }) - 1), "linear probes are batched; the other encoder's probe is not read");
            Assert.That(gate.ReadBy[7], Is.EqualTo(GateCalibration.EmptyPrompt));
            Assert.That(gate.ReadBy[9], Is.EqualTo(GateCalibration.Learned));
        }
        int learnedOpen = 0;
        foreach (var p in prompts)
        {
            var batched = gate.Read(p);
            for (int i = 0; i < names.Length; i++)
            {
                var expected = FacilitatedTransport.Read(p, concepts[i], settings, empty, probes[i], spmName: names[i]);
                Assert.That(batched[i].Gamma, Is.EqualTo(expected.Gamma), $"SPM {i} gamma");
                Assert.That(batched[i].Multiplier, Is.EqualTo(expected.Multiplier), $"SPM {i} multiplier");
                Assert.That(batched[i].ReadBy, Is.EqualTo(expected.ReadBy), $"SPM {i} read by");
                if (expected.ReadBy == GateCalibration.Learned && expected.Gamma is > 0f and < 1f) learnedOpen++;
            }
        }
        if (calibration == GateCalibration.Auto)
            Assert.That(learnedOpen, Is.GreaterThan(5), "some probe gates are neither shut nor fully open, so the comparison says something");
    }

    [Test]
    public void RouteKeepsWhatThePerSpmGateOpens_ThresholdAndTopK()
    {
        var (names, concepts, probes, empty, prompts) = Synthetic(11);
        var settings = GateSettings.Default;
        var gate = new LibraryGate(names, concepts, probes, settings, empty);
        foreach (var p in prompts)
        {
            var perSpm = Enumerable.Range(0, names.Length).Select(i => FacilitatedTransport.Read(p, concepts[i], settings, empty, probes[i])).ToArray();
            foreach (float threshold in new[] { float.Epsilon, 0.2f, 0.6f, 1f })
            {
                var expected = Enumerable.Range(0, names.Length).Where(i => perSpm[i].Gamma >= threshold)
                    .OrderByDescending(i => perSpm[i].Gamma).ThenBy(i => i).ToList();
                var routed = gate.Route(p, threshold);
                Assert.That(routed.Select(r => r.Index), Is.EqualTo(expected), $"threshold {threshold}");
                Assert.That(routed.Select(r => r.Multiplier), Is.EqualTo(expected.Select(i => perSpm[i].Multiplier)));
                Assert.That(gate.Route(p, threshold, 4).Select(r => r.Index), Is.EqualTo(expected.Take(4)));
            }
        }
    }

    [Test]
    public void LearnedWithoutAProbe_AndFixedMultiplier_AreRefused()
    {
        var (names, concepts, probes, empty, _) = Synthetic(2);
        var ex = Assert.Throws<SpmException>(() => new LibraryGate(names, concepts, probes, new GateSettings(Calibration: GateCalibration.Learned), empty))!;
        Assert.That(ex.Message, Does.Contain("SPM 'concept1' has no learned gate"));
        Assert.That(() => new LibraryGate(names, concepts, probes, new GateSettings(FixedMultiplier: 1f), empty),
            Throws.ArgumentException.With.Message.Contains("nothing to route"));
        Assert.That(() => new LibraryGate(names, concepts, probes, GateSettings.Default, null),
            Throws.ArgumentException.With.Message.Contains("empty prompt"));
    }
}
