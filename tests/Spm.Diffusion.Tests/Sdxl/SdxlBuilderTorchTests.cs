using Microsoft.ML.OnnxRuntime;
using Spm.Tests.Common;

namespace Spm.Diffusion.Tests.Sdxl;

/// <summary>
/// The project's own tiny SDXL UNet (<c>spm build-model --preset tiny-sdxl --seed 21</c>, which every other SDXL test
/// uses) against the PyTorch re-implementation of diffusers' UNet2DConditionModel loaded with its weights
/// (<c>tests/fixtures/tiny-sdxl-torch/builder</c>): the builder's graph computes what diffusers computes.
/// </summary>
[TestFixture]
public class SdxlBuilderTorchTests
{
    [Test]
    public void BuiltUNet_MatchesDiffusersSemanticsInPyTorch()
    {
        var inputs = TinySdxlTorch.ReadAll("membranes", "inputs.safetensors");
        var expected = TinySdxlTorch.ReadAll("builder", "expected.safetensors")["out_sample"];
        using var session = new InferenceSession(Path.Combine(TinySdxl.Folder, "unet", "model.onnx"));
        var names = new[] { "sample", "timestep", "encoder_hidden_states", "text_embeds", "time_ids" };
        var values = names.Select(n => OrtValue.CreateTensorValueFromMemory(inputs[n].Data, inputs[n].Shape.Select(d => (long)d).ToArray())).ToList();
        try
        {
            using var outputs = session.Run(new RunOptions(), names, values, ["out_sample"]);
            double rel = TinySdxlTorch.RelError(outputs[0].GetTensorDataAsSpan<float>(), expected.Data);
            TestContext.Out.WriteLine($"built tiny SDXL UNet vs PyTorch: out_sample rel error {rel:E2}");
            Assert.That(rel, Is.LessThan(1e-4),
                "if the builder's weights changed on purpose, re-run scripts/reference/sdxl/make_fixture.py (see docs/sdxl.md)");
        }
        finally
        {
            foreach (var v in values) v.Dispose();
        }
    }
}
