using System.Security.Cryptography;
using Google.Protobuf;
using Spm.Core;
using Spm.Core.Membranes;
using Spm.Core.SafeTensors;
using Spm.Core.Tensors;
using Spm.Diffusion.Membranes;
using Spm.Diffusion.Onnx;
using Spm.Diffusion.Onnx.Proto;
using Spm.Diffusion.Pipelines;
using Spm.Diffusion.Runtime;
using Spm.Diffusion.Tests.Membranes;
using Spm.Shapes.Building;
using Spm.Tests.Common;
using DataType = Spm.Diffusion.Onnx.Proto.TensorProto.Types.DataType;

namespace Spm.Diffusion.Tests.Reliability;

/// <summary>
/// The mismatch matrix of issue 8, one test per row, through the library's loading path (<see cref="LoadedSpms"/>):
/// SD-1.x SPM into an SD-2.x-shaped UNet, extra layers, missing layers, down/up rank mismatch, conv vs linear both
/// ways, fp16 SPM into an fp32 model and fp32 SPM into an fp16 model. Every refusal is checked by type and text
/// (layer named, counts), and after it the model file is unchanged and the UNet still gives its base output.
/// </summary>
[TestFixture]
public class MismatchMatrixTests
{
    private static readonly Lazy<MembraneFixtures.ReferenceCase> Case = new(() => MembraneFixtures.LoadCase("all-layers"));
    private static readonly Lazy<float[]> BaseOutput = new(() => Predict(OnnxModelSource.FromFile(UnetFile), null));

    /// <summary>The fp32 fixture UNet with the full-precision all-layers file at gate 1 (two tests compare with it).</summary>
    private static readonly Lazy<float[]> FullSpmOutput = new(() =>
    {
        var full = LoadedSpms.Load(TestPaths.TinySd1, [RefSpm("all-layers")]);
        return Predict(full.UNetSource, full, 1f);
    });
    private string _dir = "";

    [SetUp]
    public void SetUp() => _dir = TestPaths.NewTempDir("spm-mismatch");

    [TearDown]
    public void TearDown()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    private static string UnetFile => Path.Combine(TestPaths.TinySd1, "unet", "model.onnx");

    private static string RefSpm(string name) => Path.Combine(TestPaths.Reference(name), "spm.safetensors");

    private static IReadOnlyList<AdaptableLayer> Layers => MembraneFixtures.Layers;

    /// <summary>One UNet call on the all-layers case's inputs; with SPMs, every SPM at <paramref name="gate"/>.</summary>
    private static float[] Predict(OnnxModelSource source, LoadedSpms? spms, float gate = 1f)
    {
        var inputs = Case.Value.Inputs;
        using var unet = new UNetModel(OnnxSessionFactory.Create(source, new OnnxRuntimeOptions { IntraOpThreads = 1 }), source.DisplayName);
        Dictionary<string, FloatTensor>? extras = null;
        if (spms is not null)
        {
            int batch = inputs["sample"].Shape[0];
            extras = new Dictionary<string, FloatTensor>(spms.Tensors.Inputs)
            {
                [MembraneNames.Gates] = spms.Tensors.Gates(batch, Enumerable.Repeat(gate, spms.Layout.Sets.Count).ToArray()),
            };
        }
        return unet.Predict(inputs["sample"], inputs["timestep"].Data[0], inputs["encoder_hidden_states"], extras).Data;
    }

    private static string Hash(string path) => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(path)));

    /// <summary>The refusal leaves nothing behind: the model file is unchanged and the plain UNet still gives its base output.</summary>
    private static void AssertNothingApplied(string modelFile, string hashBefore)
    {
        Assert.That(Hash(modelFile), Is.EqualTo(hashBefore), "the model file must not change");
        Assert.That(Predict(OnnxModelSource.FromFile(UnetFile), null), Is.EqualTo(BaseOutput.Value), "the plain UNet must give its base output");
    }

    private string SaveSpm(string name, IEnumerable<Membrane> membranes, SafeTensorDType dtype = SafeTensorDType.F32)
    {
        var path = Path.Combine(_dir, name);
        SpmFile.Save(path, new SpmAdapter(new SpmConfig(["concept"], 1, 1f), membranes.ToList()), overwrite: true, dtype);
        return path;
    }

    private static Membrane Random(AdaptableLayer l, int rank, bool conv, ulong seed, string? modulePath = null)
    {
        var rng = new Core.Randomness.SeededRandom(seed);
        var down = new FloatTensor(conv ? [rank, l.InFeatures, 1, 1] : [rank, l.InFeatures]);
        var up = new FloatTensor(conv ? [l.OutFeatures, rank, 1, 1] : [l.OutFeatures, rank]);
        rng.FillGaussian(down.Data);
        rng.FillGaussian(up.Data);
        var path = modulePath ?? l.ModulePath;
        return new Membrane(SpmKeys.KeyFor(path), down, up, rank, path);
    }

    // ---------------------------------------------------------------- rows

    [Test]
    public void Sd1Spm_IntoSd2ShapedUnet_NamesTheFirstLayerAndTheCounts()
    {
        // The fixture's architecture as SD 2.x differs from SD 1.x: linear proj_in/proj_out and a wider text context.
        var sd2Dir = Path.Combine(_dir, "sd2-unet");
        Directory.CreateDirectory(sd2Dir);
        var config = UNetPresets.TinySd1 with { UseLinearProjection = true, CrossAttentionDim = 64 };
        var sd2File = Path.Combine(sd2Dir, "model.onnx");
        UNetBuilder.Create(config, 3).Save(sd2File);
        var before = Hash(sd2File);

        // The first membrane of the file that cannot fit, and why: proj_in/proj_out are convs in SD 1.x,
        // attn2.to_k/to_v read 32-wide text there.
        var keys = SpmFile.Load(RefSpm("all-layers"), new SpmLoadOptions { ModulePaths = Layers.Select(l => l.ModulePath) }).Membranes;
        static bool Misfits(string p) => p.EndsWith(".proj_in", StringComparison.Ordinal) || p.EndsWith(".proj_out", StringComparison.Ordinal)
                                         || p.EndsWith("attn2.to_k", StringComparison.Ordinal) || p.EndsWith("attn2.to_v", StringComparison.Ordinal);
        var first = keys.First(m => Misfits(m.ModulePath!)).ModulePath!;
        var why = first.EndsWith("proj_in", StringComparison.Ordinal) || first.EndsWith("proj_out", StringComparison.Ordinal)
            ? "the membrane is a conv but the model's layer is linear"
            : "down [1,32] vs model [r,64]";

        var ex = Assert.Throws<SpmMismatchException>(() => LoadedSpms.Load(sd2Dir, [RefSpm("all-layers")]))!;
        Assert.That(ex.Message, Does.Contain("24 of its 72 layers do not match").And.Contain($"first: '{first}': {why}")
            .And.Contain("48 match").And.Contain("Nothing was applied"));
        Assert.That(ex.Layer, Is.EqualTo(first));
        Assert.That(Hash(sd2File), Is.EqualTo(before));
        AssertNothingApplied(UnetFile, Hash(UnetFile));

        // --allow-partial applies the 48 that fit and says so.
        var partial = LoadedSpms.Load(sd2Dir, [RefSpm("all-layers")], allowPartial: true);
        Assert.That(partial.Layout.Layers, Has.Count.EqualTo(48));
        Assert.That(partial.Layout.Warnings, Has.Count.EqualTo(1).And.Some.Contains("applying those 48"));
    }

    [Test]
    public void ExtraLayers_TheModelLacks_AreAnErrorNamingTheFirst()
    {
        var reference = SpmFile.Load(RefSpm("all-layers"), new SpmLoadOptions { ModulePaths = Layers.Select(l => l.ModulePath) });
        var template = Layers.First(l => l.ModulePath.EndsWith("attn1.to_q", StringComparison.Ordinal));
        const string ghost = "down_blocks.3.attentions.0.transformer_blocks.0.attn1.to_q";
        var path = SaveSpm("extra.safetensors", reference.Membranes.Append(Random(template, 1, false, 5, ghost)));
        var hash = Hash(UnetFile);

        var ex = Assert.Throws<SpmMismatchException>(() => LoadedSpms.Load(TestPaths.TinySd1, [path]))!;
        Assert.That(ex.Message, Does.Contain("1 of its 73 layers do not match")
            .And.Contain($"first: '{SpmKeys.KeyFor(ghost)}': the model has no such layer").And.Contain("72 match"));
        Assert.That(ex.Layer, Is.EqualTo(SpmKeys.KeyFor(ghost)));
        AssertNothingApplied(UnetFile, hash);
    }

    [Test]
    public void MissingLayers_AreFine_TheOthersKeepTheirWeights()
    {
        // An SPM may cover any subset of the model's layers (the attn2-only reference covers 24 of 72): no error, no
        // warning, branches only where the file has membranes. Here: 5 membranes of the all-layers file.
        var reference = SpmFile.Load(RefSpm("all-layers"), new SpmLoadOptions { ModulePaths = Layers.Select(l => l.ModulePath) });
        var subset = reference.Membranes.Take(5).ToList();
        var path = SaveSpm("subset.safetensors", subset);
        var spms = LoadedSpms.Load(TestPaths.TinySd1, [path]);
        Assert.That(spms.Layout.Warnings, Is.Empty);
        Assert.That(spms.Layout.Layers.Select(l => l.ModulePath), Is.EqualTo(subset.Select(m => m.ModulePath)));

        Assert.That(Predict(spms.UNetSource, spms, 0f), Is.EqualTo(BaseOutput.Value), "gate 0: the original model, bit for bit");
        var on = Predict(spms.UNetSource, spms, 1f);
        Assert.That(MembraneFixtures.RelError(on, BaseOutput.Value), Is.GreaterThan(1e-6), "the 5 membranes must act");

        // The same 5 membranes inside the full file with the other 67 at zero give the same output: the layers the
        // subset lacks are untouched.
        var padded = reference.Membranes.Select((m, i) => i < 5 ? m
            : new Membrane(m.Key, new FloatTensor(m.Down.Shape), new FloatTensor(m.Up.Shape), m.Alpha, m.ModulePath)).ToList();
        var full = LoadedSpms.Load(TestPaths.TinySd1, [SaveSpm("padded.safetensors", padded)]);
        Assert.That(MembraneFixtures.RelError(Predict(full.UNetSource, full, 1f), on), Is.LessThan(1e-6));
    }

    [Test]
    public void RankMismatchBetweenDownAndUp_IsAFormatErrorNamingFileAndKey()
    {
        var layer = Layers.First(l => l.ModulePath.EndsWith("attn2.to_q", StringComparison.Ordinal));
        var key = SpmKeys.KeyFor(layer.ModulePath);
        var path = Path.Combine(_dir, "rank.safetensors");
        var meta = new Dictionary<string, string>(SafeTensorsFileMetadata(RefSpm("all-layers")));
        SafeTensorsWriter.WriteFloat(path, new Dictionary<string, FloatTensor>
        {
            [SpmKeys.TensorName(key, MembranePart.Down)] = new FloatTensor(2, layer.InFeatures),
            [SpmKeys.TensorName(key, MembranePart.Up)] = new FloatTensor(layer.OutFeatures, 1),
            [SpmKeys.TensorName(key, MembranePart.Alpha)] = new FloatTensor([], [1f]),
        }, meta);
        var hash = Hash(UnetFile);

        var ex = Assert.Throws<SpmFormatException>(() => LoadedSpms.Load(TestPaths.TinySd1, [path]))!;
        Assert.That(ex.Message, Does.Contain(path).And.Contain(key)
            .And.Contain($"rank mismatch: down [2,{layer.InFeatures}] has rank 2, up [{layer.OutFeatures},1] has rank 1"));
        Assert.That(ex.Key, Is.EqualTo(key));
        AssertNothingApplied(UnetFile, hash);
    }

    [Test]
    public void ConvMembraneOnALinearLayer_IsAnErrorNamingTheLayer()
    {
        var linear = Layers.First(l => !l.IsConv);
        var path = SaveSpm("conv-on-linear.safetensors", [Random(linear, 1, conv: true, 7)]);
        var hash = Hash(UnetFile);
        var ex = Assert.Throws<SpmMismatchException>(() => LoadedSpms.Load(TestPaths.TinySd1, [path]))!;
        Assert.That(ex.Message, Does.Contain($"first: '{linear.ModulePath}': the membrane is a conv but the model's layer is linear")
            .And.Contain("1 of its 1 layers do not match").And.Contain("0 match"));
        Assert.That(ex.Layer, Is.EqualTo(linear.ModulePath));
        AssertNothingApplied(UnetFile, hash);
    }

    [Test]
    public void LinearMembraneOnAConvLayer_IsAnErrorNamingTheLayer()
    {
        var conv = Layers.First(l => l.IsConv); // proj_in: a 1x1 conv in SD 1.x
        var ok = Layers.First(l => !l.IsConv);
        var path = SaveSpm("linear-on-conv.safetensors", [Random(ok, 1, false, 8), Random(conv, 1, conv: false, 9)]);
        var hash = Hash(UnetFile);
        var ex = Assert.Throws<SpmMismatchException>(() => LoadedSpms.Load(TestPaths.TinySd1, [path]))!;
        Assert.That(ex.Message, Does.Contain($"first: '{conv.ModulePath}': the membrane is linear but the model's layer is a conv")
            .And.Contain("1 of its 2 layers do not match").And.Contain("1 match"));
        Assert.That(ex.Layer, Is.EqualTo(conv.ModulePath));
        AssertNothingApplied(UnetFile, hash);
    }

    [Test]
    [Category(TestCategories.Slow)]
    public void Fp16Spm_IntoFp32Model_Works_AsItsValuesInFp32()
    {
        // Supported: F16 (and BF16) files are widened to fp32 on load. The result equals, bit for bit, an fp32 file
        // holding the same (rounded) values.
        var reference = SpmFile.Load(RefSpm("all-layers")).Membranes;
        var half = SaveSpm("half.safetensors", reference, SafeTensorDType.F16);
        var rounded = reference.Select(m => new Membrane(m.Key, Round(m.Down), Round(m.Up), m.Alpha)).ToList();
        var single = SaveSpm("rounded.safetensors", rounded);
        Assert.That(SafeTensorsFileDType(half), Is.EqualTo(SafeTensorDType.F16));

        var a = LoadedSpms.Load(TestPaths.TinySd1, [half]);
        var b = LoadedSpms.Load(TestPaths.TinySd1, [single]);
        var outHalf = Predict(a.UNetSource, a);
        Assert.That(outHalf, Is.EqualTo(Predict(b.UNetSource, b)));
        // And close to the full-precision file (fp16 keeps ~3 decimal digits of the membrane).
        Assert.That(MembraneFixtures.RelError(outHalf, FullSpmOutput.Value), Is.LessThan(1e-2));
        Assert.That(MembraneFixtures.RelError(outHalf, BaseOutput.Value), Is.GreaterThan(1e-4), "the membranes must act");

        static FloatTensor Round(FloatTensor t) => new((int[])t.Shape.Clone(), t.Data.Select(v => (float)(Half)v).ToArray());
    }

    [Test]
    [Category(TestCategories.Slow)]
    public void Fp32Spm_IntoFp16Model_Works_BranchInFp32()
    {
        // Supported: a UNet whose adaptable layers compute in fp16 (mixed precision) gets its branches in fp32 with
        // casts. The membrane's effect on the output matches the fp32 model's within fp16 rounding.
        var halfDir = Path.Combine(_dir, "unet-fp16");
        var halfFile = WriteHalfLayerUnet(halfDir);
        var hash = Hash(halfFile);
        var spms = LoadedSpms.Load(halfDir, [RefSpm("all-layers")]);
        Assert.That(spms.Layout.Layers, Has.Count.EqualTo(72));
        var injectedProto = ModelProto.Parser.ParseFrom(spms.UNetSource.Bytes!);
        Assert.That(injectedProto.Graph.Node.Count(n => n.OpType == "Cast" && n.Name.EndsWith("/CastIn", StringComparison.Ordinal)), Is.EqualTo(72),
            "every fp16 layer's branch casts to fp32");

        var plainHalf = Predict(OnnxModelSource.FromFile(halfFile), null);
        // Gate 0 adds an exact fp16 zero, but ONNX Runtime removes back-to-back Cast pairs of the plain model (fp16
        // rounding between layers disappears there) and cannot where the branch's Add sits between them: not bit-equal.
        Assert.That(MembraneFixtures.RelError(Predict(spms.UNetSource, spms, 0f), plainHalf), Is.LessThan(1e-3), "gate 0: the fp16 model");
        var onHalf = Predict(spms.UNetSource, spms, 1f);
        var onFull = FullSpmOutput.Value;
        var effectHalf = onHalf.Zip(plainHalf, (x, y) => x - y).ToArray();
        var effectFull = onFull.Zip(BaseOutput.Value, (x, y) => x - y).ToArray();
        double rel = MembraneFixtures.RelError(effectHalf, effectFull);
        TestContext.Out.WriteLine($"fp16 model: membrane effect vs the fp32 model's {rel:E3}; outputs {MembraneFixtures.RelError(onHalf, onFull):E3}");
        Assert.That(rel, Is.LessThan(5e-2));
        Assert.That(Hash(halfFile), Is.EqualTo(hash));
    }

    // ---------------------------------------------------------------- helpers

    private static IReadOnlyDictionary<string, string> SafeTensorsFileMetadata(string path)
    {
        using var f = SafeTensorsFile.Open(path);
        return new Dictionary<string, string>(f.Metadata);
    }

    private static SafeTensorDType SafeTensorsFileDType(string path)
    {
        using var f = SafeTensorsFile.Open(path);
        return f.Tensors[0].DType;
    }

    /// <summary>
    /// The fixture UNet with every adaptable layer computing in fp16 (weights and biases stored as FLOAT16, a Cast to
    /// fp16 before and back to fp32 after): how mixed-precision exports look to the injector. The rest stays fp32.
    /// </summary>
    private static string WriteHalfLayerUnet(string dir)
    {
        var model = OnnxModel.Load(UnetFile);
        var g = model.Proto.Clone().Graph;
        var layers = AdaptableLayerFinder.FindAll(model).ToDictionary(l => l.NodeName);
        var inits = g.Initializer.Select((t, i) => (t, i)).ToDictionary(p => p.t.Name, p => p.i);
        void ToHalf(string name)
        {
            var values = model.ReadFloat(name).Data;
            var bytes = new byte[values.Length * 2];
            for (int i = 0; i < values.Length; i++) BitConverter.TryWriteBytes(bytes.AsSpan(2 * i), (Half)values[i]);
            var t = new TensorProto { Name = name, DataType = (int)DataType.Float16, RawData = ByteString.CopyFrom(bytes) };
            t.Dims.AddRange(g.Initializer[inits[name]].Dims);
            g.Initializer[inits[name]] = t;
        }
        var nodes = g.Node.ToList();
        g.Node.Clear();
        foreach (var n in nodes)
        {
            if (!layers.TryGetValue(n.Name, out var l)) { g.Node.Add(n); continue; }
            for (int i = 1; i < n.Input.Count; i++) ToHalf(n.Input[i]);
            var cin = new NodeProto { OpType = "Cast", Name = n.Name + "/ToHalf" };
            cin.Input.Add(n.Input[0]);
            cin.Output.Add(n.Input[0] + ".half." + n.Name);
            cin.Attribute.Add(Attr.Int("to", (long)DataType.Float16));
            n.Input[0] = cin.Output[0];
            var output = n.Output[0];
            n.Output[0] = output + ".half";
            var cout = new NodeProto { OpType = "Cast", Name = n.Name + "/ToFloat" };
            cout.Input.Add(n.Output[0]);
            cout.Output.Add(output);
            cout.Attribute.Add(Attr.Int("to", (long)DataType.Float));
            g.Node.Add(cin);
            g.Node.Add(n);
            g.Node.Add(cout);
        }
        var proto = model.Proto.Clone();
        proto.Graph = g;
        // value_info entries of the rewritten outputs would now carry the wrong element type.
        proto.Graph.ValueInfo.Clear();
        Directory.CreateDirectory(dir);
        var file = Path.Combine(dir, "model.onnx");
        OnnxModel.FromProto(proto, model.BaseDirectory, model.FilePath).Save(file);
        return file;
    }
}
