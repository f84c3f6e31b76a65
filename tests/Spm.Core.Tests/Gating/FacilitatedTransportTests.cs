using Spm.Core;
using Spm.Core.Gating;
using Spm.Core.Randomness;

namespace Spm.Core.Tests.Gating;

public class FacilitatedTransportTests
{
    private static readonly int[] Sd1Specials = { 49406, 49407 };
    private const int Width = 77 * 32;

    private static float[] Embedding(ulong seed, float[]? mixWith = null, float mix = 0f)
    {
        var r = new SeededRandom(seed);
        var e = new float[Width];
        r.FillGaussian(e);
        if (mixWith is not null) for (int i = 0; i < e.Length; i++) e[i] = (1 - mix) * e[i] + mix * mixWith[i];
        return e;
    }

    /// <summary>Cosine in double precision with plain loops: the independent reference.</summary>
    private static double Cos(float[] a, float[] b)
    {
        double dot = 0, na = 0, nb = 0;
        for (int i = 0; i < a.Length; i++) { dot += (double)a[i] * b[i]; na += (double)a[i] * a[i]; nb += (double)b[i] * b[i]; }
        return dot / Math.Sqrt(na * nb);
    }

    /// <summary>Padded SD 1.x ids: BOS, tokens, EOS, then EOS as padding up to 77.</summary>
    private static int[] Ids(params int[] tokens)
        => new[] { 49406 }.Concat(tokens).Concat(Enumerable.Repeat(49407, 76 - tokens.Length)).ToArray();

    [Test]
    public void ClipCosineMatchesDoublePrecisionFormula()
    {
        var a = Embedding(1);
        foreach (var (seed, mix) in new[] { (2UL, 0f), (3UL, 0.5f), (4UL, 0.9f), (5UL, -0.7f) })
        {
            var b = Embedding(seed, a, mix);
            Assert.That(FacilitatedTransport.ClipCosine(a, b), Is.EqualTo(Cos(a, b)).Within(1e-5), $"mix {mix}");
        }
        Assert.That(FacilitatedTransport.ClipCosine(a, a), Is.EqualTo(1f).Within(1e-6));
        Assert.That(FacilitatedTransport.ClipCosine(a, new float[Width]), Is.EqualTo(0f), "zero embedding: defined as 0");
        Assert.That(() => FacilitatedTransport.ClipCosine(a, new float[10]), Throws.ArgumentException);
    }

    [Test]
    public void TokenUnionUsesSetsWithoutSpecialTokens()
    {
        // prompt "a photo of a cat" = 320 1125 539 320 2368; concept "cat" = 2368; concept "a dog" = 320 1929.
        var prompt = new GateText(new float[Width], Ids(320, 1125, 539, 320, 2368), Sd1Specials);
        var cat = new GateText(new float[Width], Ids(2368), Sd1Specials);
        var aDog = new GateText(new float[Width], Ids(320, 1929), Sd1Specials);
        var dogDog = new GateText(new float[Width], Ids(1929, 1929, 1929), Sd1Specials);
        Assert.That(prompt.TokenSet, Is.EquivalentTo(new[] { 320, 1125, 539, 2368 }));
        Assert.That(FacilitatedTransport.TokenUnion(prompt.TokenSet, cat.TokenSet), Is.EqualTo(1f));
        Assert.That(FacilitatedTransport.TokenUnion(prompt.TokenSet, aDog.TokenSet), Is.EqualTo(0.5f));
        Assert.That(FacilitatedTransport.TokenUnion(prompt.TokenSet, dogDog.TokenSet), Is.EqualTo(0f));
        // Specials never count: an "empty" concept (BOS/EOS only) gives 0, not 1.
        var empty = new GateText(new float[Width], Ids(), Sd1Specials);
        Assert.That(FacilitatedTransport.TokenUnion(prompt.TokenSet, empty.TokenSet), Is.EqualTo(0f));
        // SD 2.x pads with 0: listing it as special drops it.
        var sd2 = new GateText(new float[Width], new[] { 49406, 2368, 49407, 0, 0 }, new[] { 49406, 49407, 0 });
        Assert.That(sd2.TokenSet, Is.EquivalentTo(new[] { 2368 }));
    }

    [Test]
    public void GammaIsMaxOfBothAndMaxOverConcepts()
    {
        var pe = Embedding(10);
        var prompt = new GateText(pe, Ids(320, 1125, 539, 320, 2368), Sd1Specials);
        var near = new GateText(Embedding(11, pe, 0.8f), Ids(9999), Sd1Specials);      // high cosine, no shared token
        var sharesToken = new GateText(Embedding(12), Ids(2368, 4444), Sd1Specials);     // cosine ~0, tokenuni 0.5
        var unrelated = new GateText(Embedding(13), Ids(7777), Sd1Specials);
        double Expected(GateText c) => Math.Max(Cos(pe, c.Embedding),
            (double)c.TokenSet.Count(prompt.TokenSet.Contains) / c.TokenSet.Count);

        Assert.That(FacilitatedTransport.Gamma(prompt, near), Is.EqualTo(Expected(near)).Within(1e-5));
        Assert.That(Expected(near), Is.GreaterThan(0.9), "the cosine side wins here");
        Assert.That(FacilitatedTransport.Gamma(prompt, sharesToken), Is.EqualTo(0.5f), "the token side wins here");
        Assert.That(FacilitatedTransport.Gamma(prompt, unrelated), Is.EqualTo(Expected(unrelated)).Within(1e-5));

        var concepts = new[] { unrelated, sharesToken, near };
        var spmGamma = FacilitatedTransport.SpmGamma(prompt, concepts);
        Assert.That(spmGamma, Is.EqualTo(concepts.Max(Expected)).Within(1e-5));
        Assert.That(FacilitatedTransport.SpmGamma(prompt, new[] { unrelated, sharesToken }), Is.EqualTo(0.5f).Within(1e-6));
        Assert.That(FacilitatedTransport.SpmGamma(prompt, Array.Empty<GateText>()), Is.EqualTo(0f));
    }

    [Test]
    public void CalibratedGammaMeasuresTheCosineAboveTheEmptyPromptsFloor()
    {
        var pad = Embedding(30);                                              // what every padded text shares
        var concept = new GateText(Embedding(31, pad, 0.9f), Ids(2368), Sd1Specials);
        var baseline = new GateText(Embedding(32, pad, 0.9f), Ids(), Sd1Specials);
        var related = new GateText(Embedding(33, concept.Embedding, 0.97f), Ids(4444), Sd1Specials);
        var unrelated = new GateText(Embedding(34, pad, 0.85f), Ids(7777), Sd1Specials);
        var withToken = new GateText(Embedding(35, pad, 0.85f), Ids(320, 2368), Sd1Specials);
        double floor = Cos(baseline.Embedding, concept.Embedding);
        double Calibrated(GateText p) => Math.Clamp((Cos(p.Embedding, concept.Embedding) - floor) / (1 - floor), 0, 1);

        Assert.That(Cos(unrelated.Embedding, concept.Embedding), Is.GreaterThan(0.6), "the raw cosine of an unrelated text is high");
        Assert.That(FacilitatedTransport.Gamma(unrelated, concept, baseline), Is.EqualTo(0f), "below the floor: 0");
        Assert.That(Calibrated(related), Is.InRange(0.2, 0.99));
        Assert.That(FacilitatedTransport.Gamma(related, concept, baseline), Is.EqualTo(Calibrated(related)).Within(1e-4));
        Assert.That(FacilitatedTransport.Gamma(concept, concept, baseline), Is.EqualTo(1f).Within(1e-5));
        Assert.That(FacilitatedTransport.Gamma(withToken, concept, baseline), Is.EqualTo(1f), "tokenuni is not calibrated");
        Assert.That(FacilitatedTransport.Gamma(unrelated, concept, null), Is.EqualTo(FacilitatedTransport.Gamma(unrelated, concept)));
        Assert.That(FacilitatedTransport.SpmGamma(related, new[] { concept }, baseline), Is.EqualTo(Calibrated(related)).Within(1e-4));

        Assert.That(FacilitatedTransport.CalibratedCosine(0.95f, 0.9f), Is.EqualTo(0.5f).Within(1e-5));
        Assert.That(FacilitatedTransport.CalibratedCosine(0.5f, 1f), Is.EqualTo(0f), "a floor of 1 leaves only an exact match");
        Assert.That(FacilitatedTransport.CalibratedCosine(1f, 1f), Is.EqualTo(1f));
    }

    [Test]
    public void MultiplierAppliesFactorCurveAndFixedBypass()
    {
        Assert.That(FacilitatedTransport.Multiplier(0.6f, GateSettings.Default), Is.EqualTo(0.36f).Within(1e-7));
        Assert.That(FacilitatedTransport.Multiplier(0.6f, new GateSettings(GateCurve.Linear)), Is.EqualTo(0.6f));
        Assert.That(FacilitatedTransport.Multiplier(0.6f, new GateSettings(GateCurve.Square, 1.5f)), Is.EqualTo(0.81f).Within(1e-6));
        Assert.That(FacilitatedTransport.Multiplier(0.6f, new GateSettings(GateCurve.Linear, 0.5f)), Is.EqualTo(0.3f).Within(1e-7));
        Assert.That(FacilitatedTransport.Multiplier(0.6f, new GateSettings(FixedMultiplier: -1.5f)), Is.EqualTo(-1.5f));

        var pe = Embedding(20);
        var prompt = new GateText(pe, Ids(320), Sd1Specials);
        var concept = new GateText(Embedding(21, pe, 0.5f), Ids(1), Sd1Specials);
        var g = Cos(pe, concept.Embedding);
        var raw = new GateSettings(Calibration: GateCalibration.None);
        Assert.That(FacilitatedTransport.Multiplier(prompt, new[] { concept }, raw), Is.EqualTo(g * g).Within(1e-5));
        Assert.That(FacilitatedTransport.Multiplier(prompt, new[] { concept }, new GateSettings(FixedMultiplier: 0.8f)), Is.EqualTo(0.8f));
    }

    [Test]
    public void MultiplierOnGateTexts_HonoursTheCalibration()
    {
        var pe = Embedding(30);
        var prompt = new GateText(pe, Ids(320), Sd1Specials);
        var concept = new GateText(Embedding(31, pe, 0.6f), Ids(1), Sd1Specials);
        var empty = new GateText(Embedding(32, concept.Embedding, 0.3f), Ids(), Sd1Specials);
        double cos = Cos(pe, concept.Embedding), floor = Cos(empty.Embedding, concept.Embedding);
        double calibrated = Math.Clamp((cos - floor) / (1 - floor), 0, 1);
        Assert.That(calibrated, Is.Not.EqualTo(cos).Within(0.05), "the fixture must tell the two readings apart");

        var emptyCalibrated = new GateSettings(Calibration: GateCalibration.EmptyPrompt);
        Assert.That(FacilitatedTransport.Multiplier(prompt, new[] { concept }, emptyCalibrated, empty), Is.EqualTo(calibrated * calibrated).Within(1e-4));
        // Auto without a learned gate reads the empty-prompt calibration, as the pipeline does.
        Assert.That(FacilitatedTransport.Multiplier(prompt, new[] { concept }, GateSettings.Default, empty), Is.EqualTo(calibrated * calibrated).Within(1e-4));
        var reading = FacilitatedTransport.Read(prompt, new[] { concept }, GateSettings.Default, empty);
        Assert.That(reading.ReadBy, Is.EqualTo(GateCalibration.EmptyPrompt));
        Assert.That(reading.Gamma, Is.EqualTo(calibrated).Within(1e-5));
        // A calibration that needs E("") without it is an error naming it, never a silent raw reading.
        var ex = Assert.Throws<ArgumentException>(() => FacilitatedTransport.Multiplier(prompt, new[] { concept }, emptyCalibrated));
        Assert.That(ex!.Message, Does.Contain("'empty'"));
        Assert.Throws<SpmException>(() => FacilitatedTransport.Multiplier(prompt, new[] { concept }, new GateSettings(Calibration: GateCalibration.Learned), empty));
    }

    [Test]
    public void CurveParsing()
    {
        Assert.That(GateCurves.TryParse("Square", out var c) && c == GateCurve.Square);
        Assert.That(GateCurves.TryParse("linear", out c) && c == GateCurve.Linear);
        Assert.That(GateCurves.TryParse("cubic", out _), Is.False);
    }
}
