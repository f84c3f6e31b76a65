using Spm.Core;
using Spm.Core.Gating;
using Spm.Core.Randomness;

namespace Spm.Core.Tests.Gating;

[TestFixture]
public sealed class ConceptProbeTests
{
    private const int Width = 8, Rows = 6;

    private static float[] Embedding(SeededRandom rng, int? markedRow, float[] direction, float strength)
    {
        var e = new float[Rows * Width];
        for (int i = 0; i < e.Length; i++) e[i] = (float)(rng.NextDouble() * 2 - 1);
        if (markedRow is { } r)
            for (int j = 0; j < Width; j++) e[r * Width + j] += strength * direction[j];
        return e;
    }

    [Test]
    public void Probability_IsTheLogisticOfTheSoftMaximumOfTokenLogits_SkippingPositionZero()
    {
        var w = new float[] { 1, -1, 0.5f, 0, 0, 0, 0, 2 };
        var probe = new ConceptProbe("c", w, 0.25f, 0.5f);
        var rng = new SeededRandom(3);
        var e = Embedding(rng, null, w, 0);
        // Position 0 is huge on purpose: it must not count.
        for (int j = 0; j < Width; j++) e[j] = 100f * w[j];
        var logits = Enumerable.Range(1, Rows - 1).Select(i => Enumerable.Range(0, Width).Sum(j => (double)w[j] * e[i * Width + j]) + 0.25).ToArray();
        double max = logits.Max();
        double pooled = max + 0.5 * Math.Log(logits.Sum(z => Math.Exp((z - max) / 0.5)));
        Assert.That(probe.TokenLogits(e), Is.EqualTo(logits.Select(z => (float)z)).Within(1e-5));
        Assert.That(probe.Logit(e), Is.EqualTo(pooled).Within(1e-5));
        Assert.That(probe.Probability(e), Is.EqualTo(1 / (1 + Math.Exp(-pooled))).Within(1e-6));
    }

    [Test]
    public void Json_RoundTrips_AndTheSignatureDecidesWhichEncodersItFits()
    {
        var empty = Enumerable.Range(0, Rows * Width).Select(i => (float)Math.Cos(i)).ToArray();
        var signature = ConceptProbe.EncoderSignature(empty, Width);
        var probe = new ConceptProbe("circle", [1, 2, 3, 4, 5, 6, 7, 8], -1.5f, 1f, signature, new() { ["samples"] = 12 }, closed: 0.2f, open: 0.6f, strength: 1.5f);
        var back = ConceptProbe.FromJson(probe.ToJson(), "x.safetensors");
        Assert.That(back.Concept, Is.EqualTo("circle"));
        Assert.That(back.Weights.ToArray(), Is.EqualTo(probe.Weights.ToArray()));
        Assert.That(back.Bias, Is.EqualTo(-1.5f));
        Assert.That((back.Closed, back.Open, back.Strength), Is.EqualTo((0.2f, 0.6f, 1.5f)));
        Assert.That(back.EncoderSignatureValues, Is.EqualTo(signature));
        Assert.That((int)back.Fit["samples"]!, Is.EqualTo(12));
        Assert.That(back.ToJson(), Is.EqualTo(probe.ToJson()));
        Assert.That(back.Fits(empty), Is.True);
        Assert.That(back.Fits(empty.Select(x => x * 1.5f).ToArray()), Is.False, "a rescaled encoder is another encoder");
        Assert.That(back.Fits(empty.Reverse().ToArray()), Is.False);
    }

    [TestCase("[1,2]", "not a JSON object")]
    [TestCase("{\"kind\":\"mlp\",\"weights\":[1]}", "kind 'mlp'")]
    [TestCase("{\"kind\":\"token-softmax-logistic\",\"weights\":[1,\"x\"],\"bias\":0}", "field 'weights'[1] is not a finite number")]
    [TestCase("{\"kind\":\"token-softmax-logistic\",\"weights\":[1,2],\"width\":3,\"bias\":0}", "width 3 reading 1 position(s) at once needs 3 inputs per position, but the weights read 2")]
    [TestCase("{\"kind\":\"token-softmax-logistic\",\"weights\":[1,2]}", "no bias")]
    [TestCase("{\"kind\":\"token-softmax-logistic\",\"weights\":[1,2],\"bias\":0,\"temperature\":-1}", "temperature must be positive")]
    [TestCase("{\"kind\":", "not a valid gate probe")]
    public void FromJson_RejectsBadProbes_NamingTheFileAndKey(string json, string message)
    {
        var e = Assert.Throws<SpmFormatException>(() => ConceptProbe.FromJson(json, "bad.safetensors"))!;
        Assert.That(e.FilePath, Is.EqualTo("bad.safetensors"));
        Assert.That(e.Key, Is.EqualTo(ConceptProbe.MetadataKey));
        Assert.That(e.Message, Does.Contain(message));
    }

    [Test]
    public void Gamma_IsShutBelowClosed_FullyOpenAboveOpen_LinearBetween()
    {
        // A one-weight probe over [L=2, D=1]: the pooled logit is the single position-1 logit, so p is set exactly.
        var probe = new ConceptProbe("c", [1f], 0f, 1f, closed: 0.2f, open: 0.6f);
        float Logit(double p) => (float)Math.Log(p / (1 - p));
        Assert.That(probe.Gamma([0f, Logit(0.1)]), Is.EqualTo(0f));
        Assert.That(probe.Gamma([0f, Logit(0.4)]), Is.EqualTo(0.5f).Within(1e-5));
        Assert.That(probe.Gamma([0f, Logit(0.9)]), Is.EqualTo(1f));
        Assert.That(() => new ConceptProbe("c", [1f], 0f, closed: 0.5f, open: 0.5f), Throws.ArgumentException.With.Message.Contains("0 <= closed < open <= 1"));
    }

    [Test]
    public void FromJson_RefusesAHugeValue_BeforeParsingIt()
    {
        var e = Assert.Throws<SpmFormatException>(() => ConceptProbe.FromJson(new string(' ', 4_000_001), "big.safetensors"))!;
        Assert.That(e.Message, Does.Contain("4000001 characters"));
    }

    [Test]
    public void Fitter_FindsAPlantedConcept_AtAnyTokenPosition_AndGeneralisesToHeldOutPrompts()
    {
        // The concept is a direction that one random token position carries in positives; negatives carry another direction.
        var rng = new SeededRandom(11);
        var concept = new float[] { 1, 0, -1, 0.5f, 0, 0, 1, -0.5f };
        var decoy = new float[] { 0, 1, 0, 0, -1, 1, 0, 0 };
        List<ProbeSample> Make(int n)
        {
            var list = new List<ProbeSample>();
            for (int i = 0; i < n; i++)
            {
                bool positive = i % 2 == 0;
                var e = Embedding(rng, rng.NextInt(1, Rows), positive ? concept : decoy, 2.5f);
                list.Add(new ProbeSample($"p{i}", e, positive ? 1f : 0f));
            }
            return list;
        }
        var train = Make(300);
        var test = Make(200);
        var probe = ConceptProbeFitter.Fit("planted", train, Width);
        var m = ProbeMetrics.Measure(probe, test);
        TestContext.Out.WriteLine(m);
        Assert.That(m.Auc, Is.GreaterThan(0.97));
        Assert.That(m.Accuracy, Is.GreaterThan(0.9));
        Assert.That(m.MeanOnPositives - m.MeanOnNegatives, Is.GreaterThan(0.6));
        // The weights point along the planted direction.
        double cos = probe.Weights.ToArray().Zip(concept).Sum(t => (double)t.First * t.Second)
                     / Math.Sqrt(probe.Weights.ToArray().Sum(x => (double)x * x) * concept.Sum(x => (double)x * x));
        Assert.That(cos, Is.GreaterThan(0.8));
    }

    [Test]
    public void Fitter_RejectsInconsistentSamples()
    {
        var ok = new ProbeSample("a", new float[Rows * Width], 1f);
        Assert.That(() => ConceptProbeFitter.Fit("c", [], Width), Throws.ArgumentException.With.Message.Contains("No samples"));
        Assert.That(() => ConceptProbeFitter.Fit("c", [ok, ok with { Prompt = "b", Embedding = new float[Width * 2] }], Width),
            Throws.ArgumentException.With.Message.Contains("\"b\" has 16 values"));
        Assert.That(() => ConceptProbeFitter.Fit("c", [ok with { Label = 1.5f }], Width), Throws.ArgumentException.With.Message.Contains("labels are shares"));
        Assert.That(() => ConceptProbeFitter.Fit("c", [ok with { Weight = 0 }], Width), Throws.ArgumentException.With.Message.Contains("weights must be positive"));
    }

    [Test]
    public void RocAuc_MatchesHandCountedPairs()
    {
        // Pairs (pos, neg): (0.9, 0.1) (0.9, 0.4) (0.9, 0.4) -> 3; (0.4, 0.1) 1, (0.4, 0.4) x2 ties 0.5 each -> 2; total 5 of 6.
        double auc = ProbeMetrics.RocAuc([0.9, 0.4, 0.1, 0.4, 0.4], [true, true, false, false, false]);
        Assert.That(auc, Is.EqualTo(5.0 / 6).Within(1e-12));
        Assert.That(double.IsNaN(ProbeMetrics.RocAuc([0.1, 0.2], [true, true])));
    }

    [Test]
    public void ReadLast_PoolsOnlyTheLastPositions_RoundTrips_AndItsGradientStaysThere()
    {
        var w = new float[] { 1, -1, 0.5f, 0, 0, 0, 0, 2 };
        var all = new ConceptProbe("c", w, 0.25f, 0.5f, closed: 0.01f, open: 0.99f);
        var last2 = new ConceptProbe("c", w, 0.25f, 0.5f, closed: 0.01f, open: 0.99f, readLast: 2);
        var e = Embedding(new SeededRandom(5), null, w, 0);
        var every = all.TokenLogits(e);
        Assert.That(every, Has.Length.EqualTo(Rows - 1));
        Assert.That(last2.TokenLogits(e), Is.EqualTo(every[^2..]), "the logits of positions L-2 and L-1");
        Assert.That(new ConceptProbe("c", w, 0.25f, readLast: 100).TokenLogits(e), Is.EqualTo(every), "more than L-1: every position but the start token");
        Assert.That(last2.FirstPosition(Rows), Is.EqualTo(Rows - 2));

        // A concept planted early moves the all-positions probe, not the one that reads the end.
        var planted = (float[])e.Clone();
        for (int j = 0; j < Width; j++) planted[1 * Width + j] += 5 * w[j];
        Assert.That(all.Gamma(planted), Is.GreaterThan(all.Gamma(e)));
        Assert.That(last2.Gamma(planted), Is.EqualTo(last2.Gamma(e)));

        var g = new float[e.Length];
        last2.GammaGradient(e, g);
        Assert.That(g.AsSpan(0, (Rows - 2) * Width).ToArray(), Is.All.EqualTo(0f), "positions not read get no gradient");
        Assert.That(g.AsSpan((Rows - 2) * Width).ToArray(), Has.Some.Not.EqualTo(0f));

        var back = ConceptProbe.FromJson(last2.ToJson(), "x");
        Assert.That(back.ReadLast, Is.EqualTo(2));
        Assert.That(back.ToJson(), Is.EqualTo(last2.ToJson()));
        Assert.That(all.ToJson(), Does.Not.Contain("read_last"), "probes that read every position are written as before");
        Assert.That(last2.WithStrength(2f).ReadLast, Is.EqualTo(2));
        Assert.That(last2.WithThresholds(0.1f, 0.3f).ReadLast, Is.EqualTo(2));
        Assert.That(() => new ConceptProbe("c", w, 0f, readLast: -1), Throws.ArgumentException.With.Message.Contains("positions read"));
    }

    [Test]
    public void SkipMidWord_LeavesThosePositionsOutOfThePool_RoundTrips_AndChecksTheMask()
    {
        var w = new float[] { 1, -1, 0.5f, 0, 0, 0, 0, 2 };
        var every = new ConceptProbe("c", w, -2f, closed: 0.01f, open: 0.99f);
        var skips = new ConceptProbe("c", w, -2f, closed: 0.01f, open: 0.99f, skipMidWord: true);
        var e = Embedding(new SeededRandom(9), null, w, 0);
        var planted = (float[])e.Clone();
        for (int j = 0; j < Width; j++) planted[2 * Width + j] += 6 * w[j];
        var midWord = new bool[Rows];
        midWord[2] = true; // "t" of "ttriangle": the concept planted there is a word's start, not the word
        Assert.That(every.Gamma(planted, midWord), Is.GreaterThan(every.Gamma(e, midWord) + 0.3f), "a probe reading every position sees it");
        Assert.That(skips.Gamma(planted, midWord), Is.EqualTo(skips.Gamma(e, midWord)), "a probe skipping mid-word positions does not");
        Assert.That(skips.Gamma(planted), Is.EqualTo(every.Gamma(planted)), "without a mask every position is read");
        Assert.That(skips.TokenLogits(planted, midWord)[1], Is.EqualTo(float.NegativeInfinity));
        var allInside = Enumerable.Repeat(true, Rows).ToArray();
        Assert.That(skips.Probability(e, allInside), Is.EqualTo(0f), "nothing read: the concept is absent");
        Assert.That(() => skips.Gamma(e, new bool[Rows - 1]), Throws.ArgumentException.With.Message.Contains("mid-word mask has 5 entries"));

        var back = ConceptProbe.FromJson(skips.ToJson(), "x");
        Assert.That(back.SkipsMidWord, Is.True);
        Assert.That(back.ToJson(), Is.EqualTo(skips.ToJson()));
        Assert.That(every.ToJson(), Does.Not.Contain("skip_mid_word").And.Not.Contain("look_ahead"), "probes without them are written as before");
        Assert.That(skips.WithStrength(2f).SkipsMidWord && skips.WithThresholds(0.1f, 0.3f).SkipsMidWord, Is.True);
    }

    [Test]
    public void LookAhead_ReadsEachPositionWithTheNext_RoundTrips_AndRejectsBadWidths()
    {
        // Weights on the next row only: position i's logit is w . h_{i+1}; the last position reads itself again.
        var w = new float[2 * Width];
        for (int j = 0; j < Width; j++) w[Width + j] = j % 3 - 1;
        var probe = new ConceptProbe("c", w, 0.5f, lookAhead: 1);
        Assert.That(probe.Width, Is.EqualTo(Width));
        Assert.That(probe.InputWidth, Is.EqualTo(2 * Width));
        var e = Embedding(new SeededRandom(4), null, w, 0);
        var logits = probe.TokenLogits(e);
        for (int i = 1; i < Rows; i++)
        {
            int next = Math.Min(i + 1, Rows - 1);
            double expected = 0.5 + Enumerable.Range(0, Width).Sum(j => (double)w[Width + j] * e[next * Width + j]);
            Assert.That(logits[i - 1], Is.EqualTo(expected).Within(1e-5), $"position {i}");
        }
        var back = ConceptProbe.FromJson(probe.ToJson(), "x");
        Assert.That(back.LookAhead, Is.EqualTo(1));
        Assert.That(back.TokenLogits(e), Is.EqualTo(logits));
        Assert.That(() => new ConceptProbe("c", new float[2 * Width + 1], 0f, lookAhead: 1), Throws.ArgumentException.With.Message.Contains("multiple of 2"));
        Assert.That(() => new ConceptProbe("c", w, 0f, lookAhead: 9), Throws.ArgumentException.With.Message.Contains("look-ahead must be 0..8"));
        var json = probe.ToJson().Replace("\"look_ahead\":1", "\"look_ahead\":3", StringComparison.Ordinal);
        Assert.That(() => ConceptProbe.FromJson(json, "f.safetensors"), Throws.TypeOf<SpmFormatException>().With.Message.Contains("f.safetensors").And.Message.Contains("reading 4 position(s)"));
    }

    [Test]
    public void Fitter_SkippingMidWordPositions_SeparatesWhatAPrefixWouldConfuse()
    {
        // Positives carry the concept at a word's end (row 4); negatives carry the same direction at a word's start
        // (row 2, inside a word), like "t" of "ttriangle". Only a probe that leaves mid-word positions out can tell them apart.
        var rng = new SeededRandom(21);
        var direction = Enumerable.Range(0, Width).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var midWord = new bool[Rows];
        midWord[2] = true;
        var samples = Enumerable.Range(0, 160).Select(i =>
        {
            bool positive = i % 2 == 0;
            return new ProbeSample($"p{i}", Embedding(rng, positive ? 4 : 2, direction, 3f), positive ? 1f : 0f, 1f, midWord);
        }).ToList();
        var plain = ConceptProbeFitter.Fit("c", samples, Width, new ProbeFitOptions(SkipMidWord: false));
        var skipping = ConceptProbeFitter.Fit("c", samples, Width); // the default
        Assert.That(skipping.SkipsMidWord, Is.True);
        double aucPlain = ProbeMetrics.Measure(plain, samples).Auc, aucSkipping = ProbeMetrics.Measure(skipping, samples).Auc;
        Assert.That(aucSkipping, Is.GreaterThan(0.97), "the word-end reading separates them");
        Assert.That(aucPlain, Is.LessThan(0.8), "reading every position cannot");

        // Look-ahead learns the same from the next position: the concept followed by a "this was another word" marker.
        var marker = Enumerable.Range(0, Width).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var paired = Enumerable.Range(0, 160).Select(i =>
        {
            bool positive = i % 2 == 0;
            var e = Embedding(rng, 2, direction, 3f);
            if (!positive) for (int j = 0; j < Width; j++) e[3 * Width + j] += 3f * marker[j];
            return new ProbeSample($"q{i}", e, positive ? 1f : 0f);
        }).ToList();
        var alone = ConceptProbeFitter.Fit("c", paired, Width);
        var ahead = ConceptProbeFitter.Fit("c", paired, Width, new ProbeFitOptions(LookAhead: 1));
        Assert.That(ahead.LookAhead, Is.EqualTo(1));
        double aucAhead = ProbeMetrics.Measure(ahead, paired).Auc, aucAlone = ProbeMetrics.Measure(alone, paired).Auc;
        Assert.That(aucAhead, Is.GreaterThan(0.93), $"look-ahead {aucAhead:0.000}, alone {aucAlone:0.000}");
        Assert.That(aucAlone, Is.LessThan(aucAhead - 0.2), $"look-ahead {aucAhead:0.000}, alone {aucAlone:0.000}");
    }

    [TestCase(false, 0, false)]
    [TestCase(true, 0, false)]
    [TestCase(false, 1, false)]
    [TestCase(true, 2, false)]
    [TestCase(true, 0, true)]
    [TestCase(false, 1, true)]
    public void GammaGradient_MatchesCentralDifferences_AndIsZeroWhereTheGateIsClamped(bool hiddenLayer, int lookAhead, bool skipMidWord)
    {
        var rng = new SeededRandom(17);
        int input = (lookAhead + 1) * Width;
        var w = Enumerable.Range(0, hiddenLayer ? 5 : input).Select(_ => (float)(rng.NextDouble() - 0.5)).ToArray();
        ProbeHiddenLayer? hidden = null;
        if (hiddenLayer)
        {
            var hw = Enumerable.Range(0, 5 * input).Select(_ => (float)(rng.NextDouble() - 0.5)).ToArray();
            hidden = new ProbeHiddenLayer(hw, new float[] { 0.1f, -0.2f, 0f, 0.3f, 0.05f });
        }
        // closed/open wide enough that gamma sits strictly inside (0, 1) for these embeddings.
        var probe = new ConceptProbe("c", w, 0.1f, 0.7f, closed: 0.05f, open: 0.95f, hidden: hidden, lookAhead: lookAhead, skipMidWord: skipMidWord);
        Assert.That(probe.Width, Is.EqualTo(Width));
        // Position 3 sits inside a word: left out of the pool when the probe skips such positions.
        var midWord = new bool[Rows];
        midWord[3] = true;
        var e = Embedding(rng, 2, new float[Width], 0);
        var g = new float[e.Length];
        float gamma = probe.GammaGradient(e, g, midWord);
        Assert.That(gamma, Is.EqualTo(probe.Gamma(e, midWord)).Within(1e-6));
        if (skipMidWord && lookAhead == 0)
            Assert.That(g.AsSpan(3 * Width, Width).ToArray(), Is.All.EqualTo(0f), "a position left out gets no gradient");
        Assert.That(gamma, Is.InRange(0.01f, 0.99f), "the test needs an unclamped gate");
        Assert.That(g.AsSpan(0, Width).ToArray(), Is.All.EqualTo(0f), "position 0 (BOS) does not enter the probe");
        const float h = 1e-2f;
        for (int i = Width; i < e.Length; i++)
        {
            var plus = (float[])e.Clone();
            var minus = (float[])e.Clone();
            plus[i] += h;
            minus[i] -= h;
            double fd = (probe.Gamma(plus, midWord) - (double)probe.Gamma(minus, midWord)) / (2 * h);
            Assert.That(g[i], Is.EqualTo(fd).Within(2e-4 + 2e-2 * Math.Abs(fd)), $"coordinate {i}");
        }

        // A gate pinned shut (closed above every probability) is flat: no gradient.
        var shut = new ConceptProbe("c", w, -20f, 0.7f, closed: 0.5f, open: 0.9f, hidden: hidden);
        Assert.That(shut.GammaGradient(e, g), Is.EqualTo(0f));
        Assert.That(g, Is.All.EqualTo(0f));
        Assert.That(() => probe.GammaGradient(e, new float[3]), Throws.ArgumentException.With.Message.Contains("gradient buffer"));
    }
}
