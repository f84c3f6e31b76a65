using Microsoft.ML.OnnxRuntime;
using Spm.Diffusion.Membranes;
using Spm.Diffusion.Onnx;
using Spm.Diffusion.Onnx.Proto;
using Spm.Tests.Common;

namespace Spm.Diffusion.Tests.Sdxl;

/// <summary>
/// Membranes on the PyTorch-exported SDXL UNet against PyTorch (issue 21): rank 2, alpha 4 on every attention and
/// feed-forward linear of every transformer layer, official key layout; the injected session's out_sample at the
/// case's multiplier and at 0 match PyTorch's within 1e-4 relative. Reference: <c>tests/fixtures/tiny-sdxl-torch/membranes</c>.
/// </summary>
[TestFixture]
public class SdxlTorchMembraneTests
{
    private static readonly string[] InputNames = ["sample", "timestep", "encoder_hidden_states", "text_embeds", "time_ids"];
    private InjectedUnet _unet = null!;
    private Dictionary<string, OrtValue> _inputs = null!;
    private MembraneSet _spm = null!;
    private float _multiplier;

    [OneTimeSetUp]
    public void SetUp()
    {
        var unetFolder = Path.Combine(TinySdxlTorch.Folder, "unet");
        var model = ModelProto.Parser.ParseFrom(File.ReadAllBytes(Path.Combine(unetFolder, "model.onnx")));
        var layers = AdaptableLayerFinder.FindAll(model.Graph);
        _spm = MembraneSetLoader.Load(TinySdxlTorch.FixtureFile("membranes", "spm.safetensors"), layers);
        _unet = InjectedUnet.Create(model, unetFolder, MembraneLayout.Create(layers, [_spm]));
        using (var c = TinySdxlTorch.Case("membranes")) _multiplier = c.RootElement.GetProperty("multiplier").GetSingle();
        var inputs = TinySdxlTorch.ReadAll("membranes", "inputs.safetensors");
        _inputs = InputNames.ToDictionary(n => n, n => OrtValue.CreateTensorValueFromMemory(inputs[n].Data, inputs[n].Shape.Select(d => (long)d).ToArray()));
    }

    [OneTimeTearDown]
    public void TearDown()
    {
        foreach (var v in _inputs.Values) v.Dispose();
        _unet.Dispose();
    }

    private float[] Run(float multiplier)
    {
        using var outputs = _unet.Run(_inputs, _unet.Membranes.Gates(2, [multiplier]), ["out_sample"]);
        return outputs[0].GetTensorDataAsSpan<float>().ToArray();
    }

    [Test]
    public void EveryTransformerLayersLinears_AreLoaded()
    {
        using var c = TinySdxlTorch.Case("membranes");
        int expected = c.RootElement.GetProperty("membranes").GetInt32();
        Assert.That(_spm.Membranes, Has.Count.EqualTo(expected));
        Assert.That(_spm.Membranes.Select(m => m.ModulePath), Has.Member("mid_block.attentions.0.transformer_blocks.1.ff.net.2"));
        Assert.That(_spm.Membranes.Select(m => m.ModulePath), Has.Member("up_blocks.0.attentions.2.transformer_blocks.1.attn2.to_out.0"));
    }

    [Test]
    public void InjectedOutput_MatchesPyTorch()
    {
        var expected = TinySdxlTorch.ReadAll("membranes", "expected.safetensors");
        double withMembranes = TinySdxlTorch.RelError(Run(_multiplier), expected["out_sample"].Data);
        double without = TinySdxlTorch.RelError(Run(0f), expected["out_sample_base"].Data);
        TestContext.Out.WriteLine($"out_sample rel error: membranes at {_multiplier} {withMembranes:E2}, at 0 {without:E2}");
        Assert.That(withMembranes, Is.LessThan(1e-4));
        Assert.That(without, Is.LessThan(1e-4));
        // Guards the comparison: the membranes do change the output.
        Assert.That(TinySdxlTorch.RelError(expected["out_sample"].Data, expected["out_sample_base"].Data), Is.GreaterThan(1e-2));
    }
}
