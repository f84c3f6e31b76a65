using Microsoft.ML.OnnxRuntime;
using Spm.Core.Gating;
using Spm.Core.Tensors;
using Spm.Diffusion.Membranes;
using Spm.Diffusion.Text;
using Spm.Tests.Common;

namespace Spm.Diffusion.Tests.Membranes;

/// <summary>
/// Acceptance 3: the gate the evaluator gives a prompt equals the spec formula computed here independently (double
/// precision cosine over all 77 x D values, token sets built by hand without 49406/49407).
/// </summary>
[TestFixture]
public sealed class GateTests
{
    private InferenceSession _textEncoder = null!;
    private ClipTokenizer _tokenizer = null!;
    private SpmGateEvaluator _evaluator = null!;

    [OneTimeSetUp]
    public void SetUp()
    {
        _textEncoder = new InferenceSession(Path.Combine(TestPaths.TinySd1, "text_encoder", "model.onnx"));
        _tokenizer = ClipTokenizer.Load(Path.Combine(TestPaths.TinySd1, "tokenizer"));
        _evaluator = new SpmGateEvaluator(t => { var ids = _tokenizer.Encode(t); return (ids, Embed(ids)); },
            [_tokenizer.BosId, _tokenizer.EosId, _tokenizer.PadId]);
    }

    [OneTimeTearDown]
    public void TearDown() => _textEncoder.Dispose();

    private float[] Embed(int[] ids)
    {
        using var input = OrtValue.CreateTensorValueFromMemory(ids, [1, ids.Length]);
        using var outputs = _textEncoder.Run(new RunOptions(), ["input_ids"], [input], ["last_hidden_state"]);
        return outputs[0].GetTensorDataAsSpan<float>().ToArray();
    }

    private static MembraneSet Set(string name, params string[] concepts) =>
        new(name, concepts, [new LayerMembrane("x", new FloatTensor(1, 2), new FloatTensor(2, 1), 1f)]);

    /// <summary>Cosine in double precision with a plain loop (independent of the library's TensorPrimitives path).</summary>
    private static double Cosine(float[] a, float[] b)
    {
        double dot = 0, na = 0, nb = 0;
        for (int i = 0; i < a.Length; i++) { dot += (double)a[i] * b[i]; na += (double)a[i] * a[i]; nb += (double)b[i] * b[i]; }
        return dot / Math.Sqrt(na * nb);
    }

    /// <summary>The spec formula, written out without the library's gate math.</summary>
    private double Expected(string prompt, string[] concepts, double factor, bool square)
    {
        var pIds = _tokenizer.Encode(prompt);
        var pEmb = Embed(pIds);
        var pSet = pIds.Where(i => i != 49406 && i != 49407).ToHashSet();
        double best = double.NegativeInfinity;
        foreach (var c in concepts)
        {
            var cIds = _tokenizer.Encode(c);
            var cEmb = Embed(cIds);
            double cos = Cosine(pEmb, cEmb);
            var cSet = cIds.Where(i => i != 49406 && i != 49407).ToHashSet();
            double uni = cSet.Count == 0 ? 0 : (double)cSet.Count(pSet.Contains) / cSet.Count;
            best = Math.Max(best, Math.Max(cos, uni));
        }
        double g = best * factor;
        return square ? g * g : g;
    }

    [TestCase("a photo of a cat", new[] { "cat" }, 1.0, true)]
    [TestCase("a photo of a cat", new[] { "dog", "cat sitting" }, 1.0, true)]
    [TestCase("a red sports car on a road", new[] { "cat", "kitten" }, 1.0, true)]
    [TestCase("an oil painting of mountains", new[] { "van gogh" }, 0.5, false)]
    [TestCase("", new[] { "nudity" }, 1.0, true)]
    public void Gate_EqualsSpecFormula(string prompt, string[] concepts, double factor, bool square)
    {
        var set = Set("s.safetensors", concepts);
        var settings = new GateSettings(square ? GateCurve.Square : GateCurve.Linear, (float)factor, Calibration: GateCalibration.None);
        var gate = _evaluator.Evaluate(_evaluator.TextOf(prompt), [set], [settings])[0];
        var expected = Expected(prompt, concepts, factor, square);
        TestContext.Out.WriteLine($"'{prompt}' vs [{string.Join(", ", concepts)}]: {gate} expected {expected:0.######}");
        Assert.That(gate.IsFixed, Is.False);
        Assert.That(gate.Multiplier, Is.EqualTo(expected).Within(1e-5));
    }

    [TestCase("a red sports car on a road", "cat")]
    [TestCase("a photo of a kitten", "cat")]
    [TestCase("", "nudity")]
    public void CalibratedGate_MeasuresTheCosineAboveTheEmptyPrompt(string prompt, string concept)
    {
        double Cos(string a, string b) => Cosine(Embed(_tokenizer.Encode(a)), Embed(_tokenizer.Encode(b)));
        double floor = Cos("", concept);
        double gamma = Math.Clamp((Cos(prompt, concept) - floor) / (1 - floor), 0, 1);
        var settings = new GateSettings(Calibration: GateCalibration.EmptyPrompt);
        var gate = _evaluator.Evaluate(_evaluator.TextOf(prompt), [Set("s", concept)], [settings])[0];
        TestContext.Out.WriteLine($"'{prompt}' vs '{concept}': raw {Cos(prompt, concept):0.####}, floor {floor:0.####}, calibrated {gate}");
        Assert.That(gate.Gamma, Is.EqualTo(gamma).Within(1e-4));
        Assert.That(gate.Multiplier, Is.EqualTo(gamma * gamma).Within(1e-4));
        var raw = _evaluator.Evaluate(_evaluator.TextOf(prompt), [Set("s", concept)], [new GateSettings(Calibration: GateCalibration.None)])[0];
        Assert.That(gate.Multiplier, Is.LessThan(raw.Multiplier), "calibration lowers the gate of prompts without the concept's tokens");
    }

    [Test]
    public void TokenOverlap_GivesFullGate()
    {
        // Every token of "cat" is in the prompt: tokenuni = 1, so gamma = 1 whatever the cosine.
        var gate = _evaluator.Evaluate(_evaluator.TextOf("a photo of a cat"), [Set("c", "cat")], [new GateSettings(Calibration: GateCalibration.None)])[0];
        Assert.That(gate.Gamma, Is.EqualTo(1f).Within(1e-6));
        Assert.That(gate.Multiplier, Is.EqualTo(1f).Within(1e-6));
    }

    [Test]
    public void FixedMultiplier_BypassesTheGate_PerSpm()
    {
        var gates = _evaluator.Evaluate(_evaluator.TextOf("a red sports car"), [Set("a", "cat"), Set("b", "car")],
            [new GateSettings(FixedMultiplier: 0.8f), GateSettings.Default]);
        Assert.That(gates[0], Is.EqualTo(new SpmGate("a", float.NaN, 0.8f, true)));
        Assert.That(gates[0].ToString(), Is.EqualTo("a x0.8 (fixed)"));
        Assert.That(gates[1].Multiplier, Is.EqualTo(1f).Within(1e-6), "'car' is in the prompt");
    }

    /// <summary>A probe that reads one hidden-state direction; its signature is this fixture encoder's, or another's.</summary>
    private ConceptProbe Probe(bool ownEncoder)
    {
        var empty = Embed(_tokenizer.Encode(""));
        int width = empty.Length / 77;
        var w = Enumerable.Range(0, width).Select(i => (float)Math.Sin(i + 1)).ToArray();
        var signature = ConceptProbe.EncoderSignature(empty, width);
        if (!ownEncoder) signature = signature.Select(x => -x + 0.5f).ToArray();
        // Closed/open chosen so that this prompt's probability lands between them (the mapping is exercised, not clamped).
        return new ConceptProbe("cat", w, -0.25f, 1f, signature, closed: 0.02f, open: 0.98f);
    }

    private static MembraneSet WithProbe(MembraneSet set, ConceptProbe? probe) =>
        new(set.Name, set.Concepts, set.Membranes) { GateProbe = probe };

    [Test]
    public void Auto_UsesTheLearnedGate_WhenTheSpmHasOneForThisEncoder()
    {
        var probe = Probe(ownEncoder: true);
        var set = WithProbe(Set("s", "cat"), probe);
        var prompt = _evaluator.TextOf("a red sports car");
        var gate = _evaluator.Evaluate(prompt, [set], [GateSettings.Default])[0];
        // The probability written out: soft maximum over positions 1..76 of w·h_i + b, then the logistic.
        var e = prompt.Embedding;
        int width = probe.Width;
        double max = double.NegativeInfinity;
        var logits = new double[e.Length / width - 1];
        for (int i = 1; i < e.Length / width; i++)
        {
            double z = probe.Bias;
            for (int j = 0; j < width; j++) z += (double)probe.Weights[j] * e[i * width + j];
            logits[i - 1] = z;
            max = Math.Max(max, z);
        }
        double pooled = max + Math.Log(logits.Sum(z => Math.Exp(z - max)));
        double p = 1 / (1 + Math.Exp(-pooled));
        Assert.That(gate.ReadBy, Is.EqualTo(GateCalibration.Learned));
        double gamma = Math.Clamp((p - probe.Closed) / (probe.Open - probe.Closed), 0, 1);
        TestContext.Out.WriteLine($"p {p:0.####}, gamma {gamma:0.####}");
        Assert.That(gate.Gamma, Is.EqualTo(gamma).Within(1e-5));
        Assert.That(gate.Multiplier, Is.EqualTo(gamma * gamma).Within(1e-5));
        Assert.That(gate.ToString(), Does.EndWith(", learned)"));
        // A probe's strength scales the multiplier of an open gate (the curve's value), not gamma.
        var strong = _evaluator.Evaluate(prompt, [WithProbe(Set("s", "cat"), probe.WithStrength(1.5f))], [GateSettings.Default])[0];
        Assert.That(strong.Gamma, Is.EqualTo(gate.Gamma));
        Assert.That(strong.Multiplier, Is.EqualTo(1.5 * gamma * gamma).Within(1e-5));
    }

    [Test]
    public void Learned_OpensOnTheConceptsOwnWords_WhateverTheProbeSays_ButNotOnAPartialMatch()
    {
        var empty = Embed(_tokenizer.Encode(""));
        int width = empty.Length / 77;
        // A probe that never fires: zero weights, a bias far below zero.
        var silent = new ConceptProbe("van gogh", new float[width], -30f, 1f, ConceptProbe.EncoderSignature(empty, width));
        var set = WithProbe(Set("s", "van gogh", "cat"), silent);
        float Gamma(string prompt) => _evaluator.Evaluate(_evaluator.TextOf(prompt), [set], [GateSettings.Default])[0].Gamma;
        Assert.That(Gamma("a painting by van gogh"), Is.EqualTo(1f), "every token of a concept");
        Assert.That(Gamma("a photo of a cat"), Is.EqualTo(1f), "every token of another of its concepts");
        Assert.That(Gamma("a van on a road"), Is.EqualTo(0f), "half of a concept's tokens is no match");
        Assert.That(Gamma("a red sports car"), Is.EqualTo(0f));
    }

    [Test]
    public void Auto_FallsBackToTheEmptyPromptCalibration_WithoutAProbe_OrWithAnotherEncodersProbe()
    {
        var prompt = _evaluator.TextOf("a red sports car");
        var calibrated = _evaluator.Evaluate(prompt, [Set("s", "cat")], [new GateSettings(Calibration: GateCalibration.EmptyPrompt)])[0];
        foreach (var set in new[] { Set("s", "cat"), WithProbe(Set("s", "cat"), Probe(ownEncoder: false)) })
        {
            var gate = _evaluator.Evaluate(prompt, [set], [GateSettings.Default])[0];
            Assert.That(gate.ReadBy, Is.EqualTo(GateCalibration.EmptyPrompt));
            Assert.That(gate.Multiplier, Is.EqualTo(calibrated.Multiplier));
        }
    }

    [Test]
    public void Learned_IsAnError_WithoutAProbe_OrWithAnotherEncodersProbe()
    {
        var prompt = _evaluator.TextOf("a cat");
        var learned = new GateSettings(Calibration: GateCalibration.Learned);
        var none = Assert.Throws<Spm.Core.SpmException>(() => _evaluator.Evaluate(prompt, [Set("plain.safetensors", "cat")], [learned]))!;
        Assert.That(none.Message, Does.Contain("'plain.safetensors' has no learned gate").And.Contain("spm gate fit"));
        var other = Assert.Throws<Spm.Core.SpmException>(() => _evaluator.Evaluate(prompt, [WithProbe(Set("moved.safetensors", "cat"), Probe(ownEncoder: false))], [learned]))!;
        Assert.That(other.Message, Does.Contain("'moved.safetensors'").And.Contain("another text encoder"));
    }
}
