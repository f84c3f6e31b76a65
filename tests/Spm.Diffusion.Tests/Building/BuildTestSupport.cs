using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Spm.Core.Randomness;
using Spm.Diffusion.Onnx.Proto;
using Spm.Shapes.Building;

namespace Spm.Diffusion.Tests.Building;

/// <summary>Test helpers: reading exported models (with external data), mapping weights by consuming node, running ORT.</summary>
internal static class BuildTestSupport
{
    public static ModelProto Load(string path) => ModelProto.Parser.ParseFrom(File.ReadAllBytes(path));

    /// <summary>The float values of an initializer, from raw_data, float_data or its external file.</summary>
    public static float[] ReadFloats(TensorProto t, string modelFolder)
    {
        long count = t.Dims.Aggregate(1L, (a, b) => a * b);
        if (t.ExternalData.Count > 0)
        {
            var kv = t.ExternalData.ToDictionary(e => e.Key, e => e.Value);
            long offset = kv.TryGetValue("offset", out var o) ? long.Parse(o) : 0;
            using var fs = File.OpenRead(Path.Combine(modelFolder, kv["location"]));
            fs.Seek(offset, SeekOrigin.Begin);
            var bytes = new byte[count * 4];
            fs.ReadExactly(bytes);
            return Floats(bytes);
        }
        if (t.RawData.Length > 0) return Floats(t.RawData.ToByteArray());
        return t.FloatData.ToArray();
    }

    private static float[] Floats(byte[] bytes)
    {
        var f = new float[bytes.Length / 4];
        Buffer.BlockCopy(bytes, 0, f, 0, bytes.Length);
        return f;
    }

    /// <summary>
    /// For every node input fed by an initializer (directly or through the exporter's Identity aliases of
    /// deduplicated weights): "nodeName#inputIndex" → initializer.
    /// </summary>
    public static Dictionary<string, TensorProto> WeightsByConsumer(ModelProto m)
    {
        var inits = m.Graph.Initializer.GroupBy(i => i.Name).ToDictionary(g => g.Key, g => g.First());
        var alias = new Dictionary<string, string>();
        foreach (var n in m.Graph.Node.Where(n => n.OpType == "Identity" && inits.ContainsKey(n.Input[0])))
            alias[n.Output[0]] = n.Input[0];
        var map = new Dictionary<string, TensorProto>();
        foreach (var n in m.Graph.Node)
            for (int i = 0; i < n.Input.Count; i++)
            {
                var name = alias.TryGetValue(n.Input[i], out var a) ? a : n.Input[i];
                if (inits.TryGetValue(name, out var t) && n.OpType != "Identity") map[$"{n.Name}#{i}"] = t;
            }
        return map;
    }

    public static float[] RandomFloats(int count, ulong seed, float scale = 1f)
    {
        var r = new SeededRandom(seed);
        var a = new float[count];
        r.FillGaussian(a);
        for (int i = 0; i < a.Length; i++) a[i] *= scale;
        return a;
    }

    public static float[] Run(InferenceSession session, string output, params (string Name, Array Data, int[] Shape)[] inputs)
    {
        var values = inputs.Select(i => i.Data switch
        {
            float[] f => NamedOnnxValue.CreateFromTensor(i.Name, new DenseTensor<float>(f, i.Shape)),
            int[] n => NamedOnnxValue.CreateFromTensor(i.Name, new DenseTensor<int>(n, i.Shape)),
            long[] l => NamedOnnxValue.CreateFromTensor(i.Name, new DenseTensor<long>(l, i.Shape)),
            _ => throw new ArgumentException("unsupported input type"),
        }).ToList();
        using var results = session.Run(values, [output]);
        return results.First().AsTensor<float>().ToArray();
    }

    public static SessionOptions Options() => new() { IntraOpNumThreads = 2, GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };

    public static double MaxAbs(float[] a) => a.Max(x => Math.Abs((double)x));

    public static double MaxAbsDiff(float[] a, float[] b)
    {
        Assert.That(a, Has.Length.EqualTo(b.Length));
        double m = 0;
        for (int i = 0; i < a.Length; i++) m = Math.Max(m, Math.Abs((double)a[i] - b[i]));
        return m;
    }

    /// <summary>
    /// Loads the reference model's weights into <paramref name="g"/> by consuming node: each of our
    /// initializers takes the values of the reference initializer feeding the same node input. Returns the
    /// number of tensors loaded; fails on a shape difference or a tensor with no counterpart.
    /// </summary>
    public static int LoadWeightsByConsumer(GraphBuilder g, ModelProto ours, ModelProto reference, string referenceFolder)
    {
        var refMap = WeightsByConsumer(reference);
        var ourMap = WeightsByConsumer(ours);
        var loaded = new HashSet<string>();
        foreach (var (key, t) in ourMap)
        {
            Assert.That(refMap.ContainsKey(key), $"reference has no weight at {key} ({t.Name})");
            var r = refMap[key];
            Assert.That(r.Dims.ToArray(), Is.EqualTo(t.Dims.ToArray()), $"shape of {t.Name} at {key}");
            if (loaded.Add(t.Name)) g.SetInitializer(t.Name, TensorInit.FromData(ReadFloats(r, referenceFolder)));
        }
        return loaded.Count;
    }
}

/// <summary>Parameters keyed by module path, for graphs whose node names differ (the fixture's text encoder).</summary>
internal static class ModuleParams
{
    /// <summary>
    /// Named initializers (and the exporter's Identity aliases of deduplicated ones) by name; MatMul weights
    /// (<c>onnx::MatMul_N</c>) as <c>&lt;module&gt;.weight_t</c>, the module found from the bias Add that follows.
    /// </summary>
    public static Dictionary<string, TensorProto> Of(ModelProto m)
    {
        var inits = m.Graph.Initializer.GroupBy(i => i.Name).ToDictionary(g => g.Key, g => g.First());
        var result = new Dictionary<string, TensorProto>();
        foreach (var (name, t) in inits)
            if (!name.StartsWith("onnx::")) result[name] = t;
        foreach (var n in m.Graph.Node.Where(n => n.OpType == "Identity" && inits.ContainsKey(n.Input[0]) && !n.Input[0].StartsWith("onnx::")))
            result[n.Output[0]] = inits[n.Input[0]];
        foreach (var mm in m.Graph.Node.Where(n => n.OpType == "MatMul" && n.Input[1].StartsWith("onnx::MatMul") && inits.ContainsKey(n.Input[1])))
        {
            var add = m.Graph.Node.Single(n => n.OpType == "Add" && n.Input.Contains(mm.Output[0]));
            var bias = add.Input.Single(i => i != mm.Output[0]);
            Assert.That(bias, Does.EndWith(".bias"), $"{mm.Name} is followed by a bias Add");
            result[bias[..^".bias".Length] + ".weight_t"] = inits[mm.Input[1]];
        }
        return result;
    }
}
