using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Spm.Core;
using Spm.Core.Randomness;
using Spm.Core.Tensors;
using Spm.Diffusion.Membranes;
using Spm.Diffusion.Onnx;
using Spm.Diffusion.Onnx.Proto;
using DataType = Spm.Diffusion.Onnx.Proto.TensorProto.Types.DataType;

namespace Spm.Diffusion.Tests.Membranes;

/// <summary>
/// Layer kinds the fixture lacks (3x3 strided/padded/dilated convs, Gemm with transB, fp16 weights): a small hand-built
/// graph, injected with random membranes, must equal the same graph with the membranes merged into its weights
/// (the merge is plain arithmetic done here on the host, the branch is ONNX Runtime ops).
/// </summary>
[TestFixture]
public sealed class SyntheticLayerTests
{
    private sealed record Built(ModelProto Model, List<AdaptableLayer> Layers, Dictionary<string, float[]> Weights, Dictionary<string, int[]> Shapes, Dictionary<string, bool> TransB);

    // conv_a: 3x3 stride 2 pad 1 (4 -> 6 ch); conv_b: 3x3 dilation 2 pad 2 (6 -> 5 ch); then flatten tokens and
    // lin: MatMul [5, 7]; gemm: Gemm transB [3, 7] on a separate 2-D input.
    private static Built Build(bool half, ulong seed)
    {
        var rng = new SeededRandom(seed);
        var g = new GraphProto { Name = "synthetic" };
        var weights = new Dictionary<string, float[]>();
        var shapes = new Dictionary<string, int[]>();
        var elem = half ? DataType.Float16 : DataType.Float;
        void Init(string name, params int[] shape)
        {
            var data = new float[shape.Aggregate(1, (a, b) => a * b)];
            for (int i = 0; i < data.Length; i++) data[i] = (float)(rng.NextGaussian() * 0.3);
            if (half) for (int i = 0; i < data.Length; i++) data[i] = (float)(Half)data[i];
            weights[name] = data;
            shapes[name] = shape;
        }
        Init("conv_a.weight", 6, 4, 3, 3);
        Init("conv_b.weight", 5, 6, 3, 3);
        Init("lin.weight", 5, 7);
        Init("gemm.weight", 3, 7);
        AddInput(g, "x", elem, ["batch", 4, 9, 9]);
        AddInput(g, "z", elem, ["batch", 7]);
        g.Node.Add(Node("Conv", "/conv_a/Conv", ["x", "conv_a.weight"], ["a"], Ints("kernel_shape", 3, 3), Ints("strides", 2, 2), Ints("pads", 1, 1, 1, 1)));
        g.Node.Add(Node("Conv", "/conv_b/Conv", ["a", "conv_b.weight"], ["b"], Ints("kernel_shape", 3, 3), Ints("dilations", 2, 2), Ints("pads", 2, 2, 2, 2)));
        g.Initializer.Add(Spm.Diffusion.Onnx.OnnxNodes.Int64Tensor("flat_shape", [0, 5, -1]));
        g.Node.Add(Node("Reshape", "/Reshape", ["b", "flat_shape"], ["bf"]));
        g.Node.Add(Node("Transpose", "/Transpose", ["bf"], ["tokens"], Ints("perm", 0, 2, 1)));
        g.Node.Add(Node("MatMul", "/lin/MatMul", ["tokens", "lin.weight"], ["y"]));
        var gemm = Node("Gemm", "/gemm/Gemm", ["z", "gemm.weight"], ["w"]);
        gemm.Attribute.Add(new AttributeProto { Name = "transB", Type = AttributeProto.Types.AttributeType.Int, I = 1 });
        g.Node.Add(gemm);
        AddOutput(g, "y", elem);
        AddOutput(g, "w", elem);
        foreach (var (name, data) in weights) g.Initializer.Add(Tensor(name, shapes[name], data, half));
        var model = new ModelProto { IrVersion = 7, Graph = g };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 14 });
        var layers = new List<AdaptableLayer>
        {
            new("conv_a", LayerKind.Conv, 4, 6, "/conv_a/Conv", "x", "conv_a.weight", "a", [3, 3], [2, 2], [1, 1, 1, 1], [1, 1], 1, true),
            new("conv_b", LayerKind.Conv, 6, 5, "/conv_b/Conv", "a", "conv_b.weight", "b", [3, 3], [1, 1], [2, 2, 2, 2], [2, 2], 1, true),
            new("lin", LayerKind.MatMul, 5, 7, "/lin/MatMul", "tokens", "lin.weight", "y", [], [], [], [], 1, true),
            new("gemm", LayerKind.Gemm, 7, 3, "/gemm/Gemm", "z", "gemm.weight", "w", [], [], [], [], 1, true),
        };
        return new Built(model, layers, weights, shapes, new() { ["conv_a"] = false, ["conv_b"] = false, ["lin"] = false, ["gemm"] = true });
    }

    private static MembraneSet RandomSet(string name, int rank, float alpha, SeededRandom rng, IEnumerable<AdaptableLayer> layers)
    {
        var ms = new List<LayerMembrane>();
        foreach (var l in layers)
        {
            int[] downShape = l.IsConv ? [rank, l.InFeatures, l.KernelShape[0], l.KernelShape[1]] : [rank, l.InFeatures];
            var down = new FloatTensor(downShape);
            var up = new FloatTensor(l.IsConv ? [l.OutFeatures, rank, 1, 1] : [l.OutFeatures, rank]);
            foreach (var t in new[] { down, up })
                for (int i = 0; i < t.Length; i++) t.Data[i] = (float)(rng.NextGaussian() * 0.5);
            ms.Add(new LayerMembrane(l.ModulePath, down, up, alpha / rank));
        }
        return new MembraneSet(name, [name], ms);
    }

    [TestCase(false)]
    [TestCase(true)]
    public void Injected_EqualsMerged_ForEveryLayerKind(bool half)
    {
        var built = Build(half, 7);
        var rng = new SeededRandom(11);
        var a = RandomSet("a", 2, 1f, rng, built.Layers);
        var b = RandomSet("b", 3, 6f, rng, built.Layers);
        var layout = MembraneLayout.Create(built.Layers, [a, b]);
        float ma = 0.7f, mb = -1.3f;

        // Merged model: W + ma*sa*ΔWa + mb*sb*ΔWb computed on the host.
        var merged = built.Model.Clone();
        foreach (var l in built.Layers)
        {
            var w = (float[])built.Weights[l.WeightName].Clone();
            MembraneMerge.AddInto(w, l, built.TransB[l.ModulePath], a.ByPath[l.ModulePath], ma * a.Membranes[0].Scale);
            MembraneMerge.AddInto(w, l, built.TransB[l.ModulePath], b.ByPath[l.ModulePath], mb * b.Membranes[0].Scale);
            int at = merged.Graph.Initializer.ToList().FindIndex(t => t.Name == l.WeightName);
            merged.Graph.Initializer[at] = Tensor(l.WeightName, built.Shapes[l.WeightName], w, half);
        }

        var inj = MembraneInjector.Inject(built.Model, layout);
        var tensors = MembraneTensors.Build(layout);
        var x = Random(new SeededRandom(3), 2 * 4 * 9 * 9);
        var z = Random(new SeededRandom(4), 2 * 7);
        var expected = RunPlain(merged, x, z, half);
        var gates = tensors.Gates(2, [ma, mb]);
        var actual = RunInjected(inj, tensors, gates, x, z, half);
        var plain = RunPlain(built.Model, x, z, half);
        for (int o = 0; o < 2; o++)
        {
            double rel = MembraneFixtures.RelError(actual[o], expected[o]);
            TestContext.Out.WriteLine($"half={half} output {o}: injected vs merged {rel:E3}, membrane effect {MembraneFixtures.RelError(plain[o], expected[o]):E3}");
            Assert.That(rel, Is.LessThan(half ? 2e-3 : 1e-5));
            Assert.That(MembraneFixtures.RelError(plain[o], expected[o]), Is.GreaterThan(half ? 5e-2 : 1e-3), "the membranes must matter");
        }
    }

    [Test]
    public void GroupedConv_CannotBeMerged()
    {
        var layer = new AdaptableLayer("g", LayerKind.Conv, 4, 4, "/g/Conv", "x", "g.weight", "y", [1, 1], [1, 1], [0, 0, 0, 0], [1, 1], 2, true);
        var m = new LayerMembrane("g", new FloatTensor(1, 4, 1, 1), new FloatTensor(4, 1, 1, 1), 1f);
        Assert.That(() => MembraneMerge.AddInto(new float[8], layer, false, m, 1f),
            Throws.TypeOf<SpmMismatchException>().With.Message.Contains("grouped conv").And.Message.Contains("--mode branch"));
    }

    private static float[] Random(SeededRandom rng, int n)
    {
        var d = new float[n];
        for (int i = 0; i < n; i++) d[i] = (float)rng.NextGaussian();
        return d;
    }

    private static OrtValue Value(float[] data, long[] shape, bool half)
        => half ? OrtValue.CreateTensorValueFromMemory(data.Select(v => (Float16)v).ToArray(), shape)
                : OrtValue.CreateTensorValueFromMemory(data, shape);

    private static float[][] Read(IDisposableReadOnlyCollection<OrtValue> outs, bool half)
        => outs.Select(o => half ? o.GetTensorDataAsSpan<Float16>().ToArray().Select(h => (float)h).ToArray()
                                 : o.GetTensorDataAsSpan<float>().ToArray()).ToArray();

    private static float[][] RunPlain(ModelProto model, float[] x, float[] z, bool half)
    {
        using var s = new InferenceSession(model.ToByteArray());
        using var vx = Value(x, [2, 4, 9, 9], half);
        using var vz = Value(z, [2, 7], half);
        using var outs = s.Run(new RunOptions(), ["x", "z"], [vx, vz], ["y", "w"]);
        return Read(outs, half);
    }

    private static float[][] RunInjected(ModelProto model, MembraneTensors tensors, FloatTensor gates, float[] x, float[] z, bool half)
    {
        using var s = new InferenceSession(model.ToByteArray());
        var names = new List<string> { "x", "z", MembraneNames.Gates };
        var values = new List<OrtValue> { Value(x, [2, 4, 9, 9], half), Value(z, [2, 7], half), OrtValue.CreateTensorValueFromMemory(gates.Data, [2, gates.Shape[1]]) };
        foreach (var (n, t) in tensors.Inputs) { names.Add(n); values.Add(OrtValue.CreateTensorValueFromMemory(t.Data, t.Shape.Select(d => (long)d).ToArray())); }
        try
        {
            using var outs = s.Run(new RunOptions(), names, values, ["y", "w"]);
            return Read(outs, half);
        }
        finally
        {
            foreach (var v in values) v.Dispose();
        }
    }

    private static NodeProto Node(string op, string name, string[] inputs, string[] outputs, params AttributeProto[] attrs)
        => Spm.Diffusion.Onnx.OnnxNodes.Node(op, name, inputs, outputs, attrs);

    private static AttributeProto Ints(string name, params long[] v)
    {
        var a = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        a.Ints.AddRange(v);
        return a;
    }

    private static TensorProto Tensor(string name, int[] shape, float[] data, bool half)
    {
        var t = new TensorProto { Name = name, DataType = (int)(half ? DataType.Float16 : DataType.Float) };
        t.Dims.AddRange(shape.Select(d => (long)d));
        t.RawData = half
            ? ByteString.CopyFrom(System.Runtime.InteropServices.MemoryMarshal.AsBytes(data.Select(v => (Half)v).ToArray().AsSpan()))
            : ByteString.CopyFrom(System.Runtime.InteropServices.MemoryMarshal.AsBytes(data.AsSpan()));
        return t;
    }

    private static void AddInput(GraphProto g, string name, DataType type, object[] dims) => g.Input.Add(Vi(name, type, dims));

    private static void AddOutput(GraphProto g, string name, DataType type) => g.Output.Add(Vi(name, type, null));

    private static ValueInfoProto Vi(string name, DataType type, object[]? dims)
    {
        var tt = new TypeProto.Types.Tensor { ElemType = (int)type };
        if (dims is not null)
        {
            tt.Shape = new TensorShapeProto();
            foreach (var d in dims)
                tt.Shape.Dim.Add(d is string s ? new TensorShapeProto.Types.Dimension { DimParam = s } : new TensorShapeProto.Types.Dimension { DimValue = Convert.ToInt64(d) });
        }
        return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = tt } };
    }
}
