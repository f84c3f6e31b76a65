using Microsoft.ML.OnnxRuntime;
using Spm.Core.SafeTensors;
using Spm.Core.Tensors;
using Spm.Diffusion.Membranes;
using Spm.Diffusion.Onnx;
using Spm.Diffusion.Onnx.Proto;
using Spm.Tests.Common;

namespace Spm.Diffusion.Tests.Membranes;

/// <summary>Shared loading for the membrane tests: the fixture UNet, its layers, the reference cases.</summary>
internal static class MembraneFixtures
{
    private static readonly Lazy<ModelProto> UnetLazy = new(() =>
        ModelProto.Parser.ParseFrom(File.ReadAllBytes(Path.Combine(UnetFolder, "model.onnx"))));

    public static string UnetFolder => Path.Combine(TestPaths.TinySd1, "unet");

    public static ModelProto Unet => UnetLazy.Value;

    private static readonly Lazy<IReadOnlyList<AdaptableLayer>> LayersLazy = new(() => AdaptableLayerFinder.FindAll(Unet.Graph));

    public static IReadOnlyList<AdaptableLayer> Layers => LayersLazy.Value;

    /// <summary>Reads an SPM file through the library loader, resolving keys against the fixture's layers.</summary>
    public static MembraneSet LoadSpm(string path, string? name = null)
    {
        var set = MembraneSetLoader.Load(path, Layers);
        return name is null ? set : new MembraneSet(name, set.Concepts, set.Membranes);
    }

    public sealed record ReferenceCase(string Name, MembraneSet Spm, float Multiplier, Dictionary<string, FloatTensor> Inputs,
        FloatTensor Expected, FloatTensor ExpectedBase);

    public static ReferenceCase LoadCase(string name)
    {
        var dir = TestPaths.Reference(name);
        var spm = LoadSpm(Path.Combine(dir, "spm.safetensors"), name);
        using var caseJson = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "case.json")));
        float mult = caseJson.RootElement.GetProperty("multiplier").GetSingle();
        var inputs = new Dictionary<string, FloatTensor>();
        using (var f = SafeTensorsFile.Open(Path.Combine(dir, "inputs.safetensors")))
            foreach (var n in new[] { "sample", "timestep", "encoder_hidden_states" }) inputs[n] = f.ReadFloat(n);
        using var e = SafeTensorsFile.Open(Path.Combine(dir, "expected.safetensors"));
        return new ReferenceCase(name, spm, mult, inputs, e.ReadFloat("out_sample"), e.ReadFloat("out_sample_base"));
    }

    public static Dictionary<string, OrtValue> ToOrt(Dictionary<string, FloatTensor> inputs)
        => inputs.ToDictionary(kv => kv.Key, kv => OrtValue.CreateTensorValueFromMemory(kv.Value.Data, kv.Value.Shape.Select(d => (long)d).ToArray()));

    public static float[] Output(IDisposableReadOnlyCollection<OrtValue> outputs, int index = 0)
        => outputs[index].GetTensorDataAsSpan<float>().ToArray();

    /// <summary>max |a - b| / max |expected|.</summary>
    public static double RelError(ReadOnlySpan<float> actual, ReadOnlySpan<float> expected)
    {
        Assert.That(actual.Length, Is.EqualTo(expected.Length));
        double maxDiff = 0, maxRef = 0;
        for (int i = 0; i < actual.Length; i++)
        {
            maxDiff = Math.Max(maxDiff, Math.Abs((double)actual[i] - expected[i]));
            maxRef = Math.Max(maxRef, Math.Abs((double)expected[i]));
        }
        return maxDiff / maxRef;
    }
}
