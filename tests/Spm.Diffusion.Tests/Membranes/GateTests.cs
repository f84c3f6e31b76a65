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
        var settings = new GateSettings(square ? GateCurve.Square : GateCurve.Linear, (float)factor);
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
        var raw = _evaluator.Evaluate(_evaluator.TextOf(prompt), [Set("s", concept)], [GateSettings.Default])[0];
        Assert.That(gate.Multiplier, Is.LessThan(raw.Multiplier), "calibration lowers the gate of prompts without the concept's tokens");
    }

    [Test]
    public void TokenOverlap_GivesFullGate()
    {
        // Every token of "cat" is in the prompt: tokenuni = 1, so gamma = 1 whatever the cosine.
        var gate = _evaluator.Evaluate(_evaluator.TextOf("a photo of a cat"), [Set("c", "cat")], [GateSettings.Default])[0];
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
}
