using Google.Protobuf;
using Spm.Diffusion.Onnx.Proto;
using Spm.Tests.Common;

namespace Spm.Diffusion.Tests.Onnx;

/// <summary>Small hand-built ONNX models and fixture copies for the ONNX I/O tests.</summary>
internal static class OnnxTestModels
{
    public const string UnetFile = "model.onnx";

    public static string FixtureUnetDir => Path.Combine(TestPaths.TinySd1, "unet");

    /// <summary>Copies the fixture UNet folder (model.onnx, weights.pb, config.json) into a fresh writable folder.</summary>
    public static string CopyFixtureUnet(bool withWeights = true)
    {
        var dir = TestPaths.NewTempDir("spm-onnx");
        foreach (var f in Directory.GetFiles(FixtureUnetDir))
        {
            if (!withWeights && Path.GetFileName(f) == "weights.pb") continue;
            var dest = Path.Combine(dir, Path.GetFileName(f));
            File.Copy(f, dest);
            File.SetAttributes(dest, FileAttributes.Normal);
        }
        return dir;
    }

    public static TensorProto FloatTensor(string name, long[] dims, float[] values)
    {
        var t = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Float };
        t.Dims.AddRange(dims);
        var bytes = new byte[values.Length * 4];
        Buffer.BlockCopy(values, 0, bytes, 0, bytes.Length);
        t.RawData = ByteString.CopyFrom(bytes);
        return t;
    }

    public static void MakeExternal(TensorProto t, string location, long offset, long? length = null)
    {
        t.RawData = ByteString.Empty;
        t.DataLocation = TensorProto.Types.DataLocation.External;
        t.ExternalData.Clear();
        t.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = location });
        t.ExternalData.Add(new StringStringEntryProto { Key = "offset", Value = offset.ToString() });
        if (length is long l) t.ExternalData.Add(new StringStringEntryProto { Key = "length", Value = l.ToString() });
    }

    public static ValueInfoProto FloatValue(string name, params object[] dims)
    {
        var shape = new TensorShapeProto();
        foreach (var d in dims)
            shape.Dim.Add(d is string s ? new TensorShapeProto.Types.Dimension { DimParam = s } : new TensorShapeProto.Types.Dimension { DimValue = Convert.ToInt64(d) });
        return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = 1, Shape = shape } } };
    }

    /// <summary>
    /// y = x @ W + b with W [4,3] stored externally in <c>weights.bin</c> (offset 16, after 16 bytes of padding),
    /// node named like a scoped PyTorch export. Returns the model file path.
    /// </summary>
    public static string WriteLinearModel(string dir, out float[] weight)
    {
        weight = Enumerable.Range(0, 12).Select(i => 0.25f * i - 1f).ToArray();
        var w = FloatTensor("onnx::MatMul_7", [4, 3], weight);
        var wBytes = w.RawData.ToByteArray();
        var data = new byte[16 + wBytes.Length];
        wBytes.CopyTo(data, 16);
        File.WriteAllBytes(Path.Combine(dir, "weights.bin"), data);
        MakeExternal(w, "weights.bin", 16, wBytes.Length);
        var b = FloatTensor("block.proj.bias", [3], [0.5f, -0.5f, 1f]);

        var graph = new GraphProto { Name = "linear" };
        graph.Initializer.Add(w);
        graph.Initializer.Add(b);
        graph.Input.Add(FloatValue("x", "batch", 4));
        graph.Output.Add(FloatValue("y", "batch", 3));
        var mm = new NodeProto { Name = "/block/proj/MatMul", OpType = "MatMul" };
        mm.Input.Add("x"); mm.Input.Add("onnx::MatMul_7"); mm.Output.Add("/block/proj/MatMul_output_0");
        var add = new NodeProto { Name = "/block/proj/Add", OpType = "Add" };
        add.Input.Add("block.proj.bias"); add.Input.Add("/block/proj/MatMul_output_0"); add.Output.Add("y");
        graph.Node.Add(mm);
        graph.Node.Add(add);
        var model = new ModelProto { IrVersion = 7, Graph = graph, ProducerName = "spm-tests" };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 14 });
        var path = Path.Combine(dir, UnetFile);
        File.WriteAllBytes(path, model.ToByteArray());
        return path;
    }
}
