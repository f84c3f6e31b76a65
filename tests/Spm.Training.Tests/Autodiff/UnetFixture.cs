using Microsoft.ML.OnnxRuntime;
using Spm.Core.Randomness;
using Spm.Diffusion.Onnx.Proto;
using Spm.Tests.Common;

namespace Spm.Training.Tests.Autodiff;

/// <summary>The fixture UNet and helpers to read and re-route its initializers (for finite differences).</summary>
internal static class UnetFixture
{
    public static string Folder => Path.Combine(TestPaths.TinySd1, "unet");

    private static readonly Lazy<ModelProto> ModelLazy = new(() => ModelProto.Parser.ParseFrom(File.ReadAllBytes(Path.Combine(Folder, "model.onnx"))));

    public static ModelProto Model => ModelLazy.Value;

    /// <summary>Values of an initializer (inline or in the folder's external data file).</summary>
    public static float[] Initializer(ModelProto model, string name)
    {
        var t = model.Graph.Initializer.First(i => i.Name == name);
        byte[] bytes;
        if (t.DataLocation == TensorProto.Types.DataLocation.External)
        {
            var kv = t.ExternalData.ToDictionary(e => e.Key, e => e.Value);
            long offset = kv.TryGetValue("offset", out var o) ? long.Parse(o) : 0;
            int length = int.Parse(kv["length"]);
            using var f = File.OpenRead(Path.Combine(Folder, kv["location"]));
            f.Seek(offset, SeekOrigin.Begin);
            bytes = new byte[length];
            f.ReadExactly(bytes);
        }
        else bytes = t.RawData.ToByteArray();
        var r = new float[bytes.Length / 4];
        Buffer.BlockCopy(bytes, 0, r, 0, bytes.Length);
        return r;
    }

    /// <summary>A copy of the model where the named initializers are graph inputs instead (so they can be perturbed).</summary>
    public static ModelProto WithInitializersAsInputs(ModelProto model, IEnumerable<string> names)
    {
        var copy = model.Clone();
        foreach (var name in names)
        {
            var t = copy.Graph.Initializer.First(i => i.Name == name);
            copy.Graph.Initializer.Remove(t);
            var shape = new TensorShapeProto();
            foreach (var d in t.Dims) shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = d });
            copy.Graph.Input.Add(new ValueInfoProto
            {
                Name = name,
                Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = t.DataType, Shape = shape } },
            });
        }
        return copy;
    }

    /// <summary>Batch-2 inputs at latent size h x w.</summary>
    public static Dictionary<string, (float[] Data, long[] Shape)> Inputs(ulong seed, int batch = 2, int h = 16, int w = 16)
    {
        var rng = new SeededRandom(seed);
        float[] G(int n) { var a = new float[n]; rng.FillGaussian(a); return a; }
        return new()
        {
            ["sample"] = (G(batch * 4 * h * w), [batch, 4, h, w]),
            ["timestep"] = (Enumerable.Range(0, batch).Select(i => 100f + 350f * i).ToArray(), [batch]),
            ["encoder_hidden_states"] = (G(batch * 77 * 32), [batch, 77, 32]),
        };
    }

    public static Dictionary<string, OrtValue> ToOrt(Dictionary<string, (float[] Data, long[] Shape)> feeds)
        => feeds.ToDictionary(kv => kv.Key, kv => OrtValue.CreateTensorValueFromMemory(kv.Value.Data, kv.Value.Shape));
}
