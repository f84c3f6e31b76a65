using Microsoft.ML.OnnxRuntime;
using Spm.Diffusion.Membranes;
using Spm.Tests.Common;

namespace Spm.Diffusion.Tests.Membranes;

/// <summary>
/// <c>spm export-adapter</c>: the injected UNet plus an <c>.onnx_adapter</c>, loaded through ONNX Runtime's own adapter
/// API (<see cref="OrtLoraAdapter"/>, <see cref="RunOptions.AddActiveLoraAdapter"/>), reproduces the injected output.
/// </summary>
[TestFixture]
public sealed class OnnxAdapterExportTests
{
    [Test]
    public void ExportedPair_ThroughOrtsAdapterApi_ReproducesTheInjectedOutput()
    {
        var dir = TestPaths.NewTempDir("spm-adapter");
        try
        {
            var c = MembraneFixtures.LoadCase("all-layers");
            var result = OnnxAdapterExport.Export(MembraneFixtures.UnetFolder, [Path.Combine(TestPaths.Reference("all-layers"), "spm.safetensors")], [c.Multiplier], dir);
            Assert.That(result.LayerCount, Is.EqualTo(72));
            Assert.That(result.ParameterCount, Is.EqualTo(72 * 2 + 2));
            Assert.That(File.ReadAllBytes(result.AdapterFile).AsSpan(4, 4).ToArray(), Is.EqualTo("TORT"u8.ToArray()));

            var inputs = MembraneFixtures.ToOrt(c.Inputs);
            try
            {
                using var session = new InferenceSession(result.ModelFile);
                using var adapter = OrtLoraAdapter.Create(result.AdapterFile, null);
                using var run = new RunOptions();
                run.AddActiveLoraAdapter(adapter);
                using var outputs = session.Run(run, inputs.Keys.ToList(), inputs.Values.ToList(), ["out_sample"]);
                var viaAdapter = MembraneFixtures.Output(outputs);

                var layers = MembraneFixtures.Layers;
                var layout = MembraneLayout.Create(layers, [MembraneFixtures.LoadSpm(Path.Combine(TestPaths.Reference("all-layers"), "spm.safetensors"))]);
                using var injected = InjectedUnet.Create(MembraneFixtures.Unet, MembraneFixtures.UnetFolder, layout);
                using var expected = injected.Run(inputs, injected.Membranes.Gates(c.Inputs["sample"].Shape[0], [c.Multiplier]), ["out_sample"]);
                var direct = MembraneFixtures.Output(expected);
                double diff = viaAdapter.Zip(direct).Max(p => Math.Abs(p.First - p.Second));
                TestContext.Out.WriteLine($"adapter API vs injected: max abs diff {diff:E3}; vs PyTorch reference rel {MembraneFixtures.RelError(viaAdapter, c.Expected.Data):E3}");
                Assert.That(diff, Is.LessThan(1e-6));
                Assert.That(MembraneFixtures.RelError(viaAdapter, c.Expected.Data), Is.LessThan(1e-4));

                // Without the adapter the membrane inputs are missing: ONNX Runtime says which.
                var ex = Assert.Catch<OnnxRuntimeException>(() => session.Run(new RunOptions(), inputs.Keys.ToList(), inputs.Values.ToList(), ["out_sample"]));
                Assert.That(ex!.Message, Does.Contain("spm."));
            }
            finally
            {
                foreach (var v in inputs.Values) v.Dispose();
            }
        }
        finally
        {
            try { Directory.Delete(dir, true); } catch (IOException) { }
        }
    }
}
