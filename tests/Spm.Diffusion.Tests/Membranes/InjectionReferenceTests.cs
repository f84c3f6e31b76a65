using Microsoft.ML.OnnxRuntime;
using Spm.Core.Tensors;
using Spm.Diffusion.Membranes;

namespace Spm.Diffusion.Tests.Membranes;

/// <summary>
/// The injected session against the PyTorch reference (acceptance 1 and 2 of issue 4): both reference SPMs are
/// loaded into ONE session (R = 1 + 4) and selected purely through the gates.
/// </summary>
[TestFixture]
public sealed class InjectionReferenceTests
{
    private MembraneFixtures.ReferenceCase _all = null!;
    private MembraneFixtures.ReferenceCase _attn2 = null!;
    private InjectedUnet _unet = null!;
    private Dictionary<string, OrtValue> _inputs = null!;
    private Dictionary<string, OrtValue> _inputs2 = null!;

    [OneTimeSetUp]
    public void SetUp()
    {
        _all = MembraneFixtures.LoadCase("all-layers");
        _attn2 = MembraneFixtures.LoadCase("attn2-rank4");
        var layout = MembraneLayout.Create(MembraneFixtures.Layers, [_all.Spm, _attn2.Spm]);
        Assert.That(layout.TotalRank, Is.EqualTo(5));
        Assert.That(layout.Layers, Has.Count.EqualTo(72));
        _unet = InjectedUnet.Create(MembraneFixtures.Unet, MembraneFixtures.UnetFolder, layout);
        _inputs = MembraneFixtures.ToOrt(_all.Inputs);
        _inputs2 = MembraneFixtures.ToOrt(_attn2.Inputs);
    }

    [OneTimeTearDown]
    public void TearDown()
    {
        foreach (var v in _inputs.Values.Concat(_inputs2.Values)) v.Dispose();
        _unet.Dispose();
    }

    private float[] Run(float allLayers, float attn2, bool secondInputs = false)
    {
        var gates = _unet.Membranes.Gates(2, [allLayers, attn2]);
        using var outputs = _unet.Run(secondInputs ? _inputs2 : _inputs, gates, ["out_sample"]);
        return MembraneFixtures.Output(outputs);
    }

    [Test]
    public void AllLayersCase_MatchesReference()
    {
        var rel = MembraneFixtures.RelError(Run(_all.Multiplier, 0f), _all.Expected.Data);
        TestContext.Out.WriteLine($"all-layers rel error {rel:E3}");
        Assert.That(rel, Is.LessThan(1e-4));
    }

    [Test]
    public void Attn2Rank4Case_MatchesReference()
    {
        var rel = MembraneFixtures.RelError(Run(0f, _attn2.Multiplier, secondInputs: true), _attn2.Expected.Data);
        TestContext.Out.WriteLine($"attn2-rank4 rel error {rel:E3}");
        Assert.That(rel, Is.LessThan(1e-4));
    }

    /// <summary>
    /// Gates 0 give exactly the plain model's output (bit for bit), and that is within 1e-6 of PyTorch's
    /// out_sample_base for all-layers. For attn2-rank4 the plain ONNX Runtime model itself is 1.0e-6 from PyTorch at every
    /// optimisation level (float rounding between the two runtimes), so there the bar is "no further from PyTorch
    /// than the untouched model, and below 1.1e-6".
    /// </summary>
    [Test]
    public void ZeroGates_ReproduceBaseOutput()
    {
        using var plain = InjectedUnet.OpenSession(MembraneFixtures.Unet, MembraneFixtures.UnetFolder);
        foreach (var (inputs, expected, second) in new[] { (_inputs, _all.ExpectedBase, false), (_inputs2, _attn2.ExpectedBase, true) })
        {
            using var outputs = plain.Run(new RunOptions(), inputs.Keys.ToList(), inputs.Values.ToList(), ["out_sample"]);
            var basePlain = MembraneFixtures.Output(outputs);
            var injected = Run(0f, 0f, second);
            double plainErr = MembraneFixtures.RelError(basePlain, expected.Data), injErr = MembraneFixtures.RelError(injected, expected.Data);
            TestContext.Out.WriteLine($"plain vs reference {plainErr:E3}, injected(0) vs reference {injErr:E3}");
            Assert.That(injected, Is.EqualTo(basePlain), "gates 0 must not change a single bit");
            Assert.That(injErr, Is.LessThanOrEqualTo(second ? 1.1e-6 : 1e-6));
        }
    }

    [Test]
    public void Membranes_ChangeTheOutput()
    {
        // Guards the tests above against a reference that happens to equal the base output.
        var rel = MembraneFixtures.RelError(_all.Expected.Data, _all.ExpectedBase.Data);
        Assert.That(rel, Is.GreaterThan(1e-3));
        Assert.That(MembraneFixtures.RelError(_attn2.Expected.Data, _attn2.ExpectedBase.Data), Is.GreaterThan(1e-3));
    }

    [Test]
    public void GuidanceRows_AreGatedSeparately()
    {
        // Row 0 off, row 1 at the case multiplier: row 0 equals the base output, row 1 the membrane output.
        var gates = _unet.Membranes.Gates([0f, 0f, _all.Multiplier, 0f]);
        using var outputs = _unet.Run(_inputs, gates, ["out_sample"]);
        var y = MembraneFixtures.Output(outputs);
        int half = y.Length / 2;
        Assert.That(MembraneFixtures.RelError(y.AsSpan(0, half), _all.ExpectedBase.Data.AsSpan(0, half)), Is.LessThan(1e-6));
        Assert.That(MembraneFixtures.RelError(y.AsSpan(half), _all.Expected.Data.AsSpan(half)), Is.LessThan(1e-4));
    }

    [Test]
    public void SwappingMembranes_NeedsNoNewSession()
    {
        // Load only the rank-4 SPM into the same session (total rank changes 5 -> 4), then swap back.
        var session = _unet.Session;
        var original = _unet.Membranes;
        try
        {
            var only = MembraneTensors.Build(MembraneLayout.Create(MembraneFixtures.Layers, [_attn2.Spm]));
            _unet.SetMembranes(only);
            using var outputs = _unet.Run(_inputs2, only.Gates(2, [_attn2.Multiplier]), ["out_sample"]);
            Assert.That(MembraneFixtures.RelError(MembraneFixtures.Output(outputs), _attn2.Expected.Data), Is.LessThan(1e-4));
            Assert.That(_unet.Session, Is.SameAs(session));
        }
        finally
        {
            _unet.SetMembranes(original);
        }
        Assert.That(MembraneFixtures.RelError(Run(_all.Multiplier, 0f), _all.Expected.Data), Is.LessThan(1e-4));
    }

    [Test]
    public void GatesOfWrongWidth_AreRejected()
    {
        var bad = new FloatTensor(2, 3);
        Assert.That(() => _unet.Run(_inputs, bad), Throws.ArgumentException.With.Message.Contains("[B,5]"));
    }
}
