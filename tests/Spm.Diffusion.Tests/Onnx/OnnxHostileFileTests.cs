using Google.Protobuf;
using Spm.Core;
using Spm.Diffusion.Onnx;
using Spm.Diffusion.Onnx.Proto;
using Spm.Tests.Common;

namespace Spm.Diffusion.Tests.Onnx;

/// <summary>Hand-made hostile ONNX files: external-data paths out of the folder, bad offsets, nesting, garbage.</summary>
[TestFixture]
public class OnnxHostileFileTests
{
    private string _dir = "";
    private string _outside = "";

    [SetUp]
    public void SetUp()
    {
        _dir = TestPaths.NewTempDir("spm-hostile");
        _outside = TestPaths.NewTempDir("spm-outside");
        OnnxTestModels.WriteLinearModel(_dir, out _);
        File.Copy(Path.Combine(_dir, "weights.bin"), Path.Combine(_outside, "weights.bin"));
    }

    [TearDown]
    public void TearDown()
    {
        try { Directory.Delete(_dir, true); Directory.Delete(_outside, true); } catch (IOException) { }
    }

    private string ModelFile => Path.Combine(_dir, "model.onnx");

    /// <summary>Rewrites the model with the weight's external_data entries replaced.</summary>
    private void SetExternal(params (string Key, string Value)[] entries)
    {
        var proto = ModelProto.Parser.ParseFrom(File.ReadAllBytes(ModelFile));
        var w = proto.Graph.Initializer.Single(t => t.Name == "onnx::MatMul_7");
        w.ExternalData.Clear();
        foreach (var (k, v) in entries) w.ExternalData.Add(new StringStringEntryProto { Key = k, Value = v });
        File.WriteAllBytes(ModelFile, proto.ToByteArray());
    }

    private SpmFormatException LoadFails()
    {
        var ex = Assert.Throws<SpmFormatException>(() => OnnxModel.Load(ModelFile))!;
        Assert.That(ex.Message, Does.Contain(ModelFile));
        return ex;
    }

    [TestCase("/etc/passwd", "absolute")]
    [TestCase("\\\\server\\share\\w.bin", "absolute")]
    [TestCase("C:\\weights.bin", "absolute")]
    [TestCase("../weights.bin", "'..'")]
    [TestCase("sub/../../weights.bin", "'..'")]
    [TestCase("..\\weights.bin", "'..'")]
    [TestCase("", "no location")]
    [TestCase("a\0b", "NUL")]
    public void Location_OutsideTheFolderByText_IsRejectedAtLoad(string location, string reason)
    {
        SetExternal(("location", location), ("offset", "16"), ("length", "48"));
        var ex = LoadFails();
        Assert.That(ex.Key, Is.EqualTo("onnx::MatMul_7"));
        Assert.That(ex.Message, Does.Contain(reason));
    }

    [TestCase("-1", "48", "not a non-negative integer")]
    [TestCase("x", "48", "not a non-negative integer")]
    [TestCase("99999999999999999999", "48", "not a non-negative integer")]
    [TestCase("16", "47", "does not match the shape")]
    [TestCase("16", "4800000000000", "does not match the shape")]
    [TestCase("9223372036854775800", "48", "overflows")]
    public void OffsetsAndLengths_ThatCannotBeRight_AreRejectedAtLoad(string offset, string length, string reason)
    {
        SetExternal(("location", "weights.bin"), ("offset", offset), ("length", length));
        var ex = LoadFails();
        Assert.That(ex.Message, Does.Contain(reason).And.Contain("onnx::MatMul_7"));
    }

    [Test]
    public void OffsetBeyondTheDataFile_FailsWhenRead_BeforeAllocating()
    {
        SetExternal(("location", "weights.bin"), ("offset", "40"), ("length", "48")); // file has 64 bytes
        var model = OnnxModel.Load(ModelFile);
        var ex = Assert.Throws<SpmFormatException>(() => model.ReadFloat("onnx::MatMul_7"))!;
        Assert.That(ex.Message, Does.Contain(ModelFile).And.Contain("onnx::MatMul_7").And.Contain("beyond the end of 'weights.bin' (64 bytes)"));

        // A huge tensor claimed in a tiny file: refused from the sizes alone.
        var proto = ModelProto.Parser.ParseFrom(File.ReadAllBytes(ModelFile));
        var w = proto.Graph.Initializer.Single(t => t.Name == "onnx::MatMul_7");
        w.Dims.Clear(); w.Dims.Add([1 << 16, 1 << 10]); // 256 MB of floats
        w.ExternalData.Clear();
        w.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = "weights.bin" });
        File.WriteAllBytes(ModelFile, proto.ToByteArray());
        model = OnnxModel.Load(ModelFile);
        long before = GC.GetAllocatedBytesForCurrentThread();
        Assert.That(() => model.ReadFloat("onnx::MatMul_7"), Throws.TypeOf<SpmFormatException>().With.Message.Contains("beyond the end"));
        Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.LessThan(1 << 20), "no 256 MB buffer was allocated");
    }

    [Test]
    public void SymlinkedDataFile_PointingOutside_IsRejected()
    {
        File.Delete(Path.Combine(_dir, "weights.bin"));
        File.CreateSymbolicLink(Path.Combine(_dir, "weights.bin"), Path.Combine(_outside, "weights.bin"));
        var ex = LoadFails();
        Assert.That(ex.Message, Does.Contain("outside the model's folder"));
    }

    [Test]
    public void SymlinkedDirectory_AndRelativeLinkChains_PointingOutside_AreRejected()
    {
        Directory.CreateDirectory(Path.Combine(_dir, "real"));
        Directory.CreateSymbolicLink(Path.Combine(_dir, "sub"), _outside);
        SetExternal(("location", "sub/weights.bin"), ("offset", "16"), ("length", "48"));
        Assert.That(LoadFails().Message, Does.Contain("outside the model's folder"));

        // real/up -> ".." (still inside), then real/up/escape -> "../../<outside>": escapes through a relative chain.
        Directory.CreateSymbolicLink(Path.Combine(_dir, "real", "up"), "..");
        File.CreateSymbolicLink(Path.Combine(_dir, "escape"), Path.Combine("real", "up", "..", Path.GetFileName(_outside), "weights.bin"));
        SetExternal(("location", "escape"), ("offset", "16"), ("length", "48"));
        Assert.That(LoadFails().Message, Does.Contain("outside the model's folder"));
    }

    [Test]
    public void SymlinkInsideTheFolder_IsFine_AndALinkSwappedInAfterLoading_IsCaughtAtRead()
    {
        Directory.CreateDirectory(Path.Combine(_dir, "data"));
        File.Move(Path.Combine(_dir, "weights.bin"), Path.Combine(_dir, "data", "w.bin"));
        File.CreateSymbolicLink(Path.Combine(_dir, "weights.bin"), Path.Combine("data", "w.bin"));
        var model = OnnxModel.Load(ModelFile);
        Assert.That(model.ReadFloat("onnx::MatMul_7").Length, Is.EqualTo(12));

        File.Delete(Path.Combine(_dir, "weights.bin"));
        File.CreateSymbolicLink(Path.Combine(_dir, "weights.bin"), Path.Combine(_outside, "weights.bin"));
        Assert.That(() => model.ReadFloat("onnx::MatMul_7"),
            Throws.TypeOf<SpmFormatException>().With.Message.Contains("outside the model's folder").And.Message.Contains("onnx::MatMul_7"));
    }

    [Test]
    public void SymlinkLoop_IsAFormatError()
    {
        File.Delete(Path.Combine(_dir, "weights.bin"));
        File.CreateSymbolicLink(Path.Combine(_dir, "weights.bin"), "loop");
        File.CreateSymbolicLink(Path.Combine(_dir, "loop"), "weights.bin");
        Assert.That(LoadFails().Message, Does.Contain("cannot be resolved"));
    }

    [Test]
    public void ExternalTensorHiddenInAConstantOrSubgraph_IsValidatedToo()
    {
        var proto = ModelProto.Parser.ParseFrom(File.ReadAllBytes(ModelFile));
        var value = OnnxTestModels.FloatTensor("c", [12], new float[12]);
        OnnxTestModels.MakeExternal(value, "../../etc/passwd", 0, 48);
        var constant = new NodeProto { Name = "/c/Constant", OpType = "Constant" };
        constant.Output.Add("c");
        constant.Attribute.Add(new AttributeProto { Name = "value", T = value, Type = AttributeProto.Types.AttributeType.Tensor });
        var sub = new GraphProto { Name = "then" };
        sub.Node.Add(constant);
        var ifNode = new NodeProto { Name = "/if/If", OpType = "If" };
        ifNode.Attribute.Add(new AttributeProto { Name = "then_branch", G = sub, Type = AttributeProto.Types.AttributeType.Graph });
        proto.Graph.Node.Add(ifNode);
        File.WriteAllBytes(ModelFile, proto.ToByteArray());
        Assert.That(LoadFails().Message, Does.Contain("'..'"));
    }

    [Test]
    public void DeeplyNestedSubgraphs_AreAFormatErrorNotAStackOverflow()
    {
        var inner = new GraphProto { Name = "leaf" };
        for (int i = 0; i < 300; i++)
        {
            var node = new NodeProto { Name = $"n{i}", OpType = "If" };
            node.Attribute.Add(new AttributeProto { Name = "then_branch", G = inner, Type = AttributeProto.Types.AttributeType.Graph });
            inner = new GraphProto { Name = $"g{i}" };
            inner.Node.Add(node);
        }
        var model = new ModelProto { Graph = inner };
        File.WriteAllBytes(ModelFile, model.ToByteArray());
        Assert.That(LoadFails().Message, Does.Contain("not a valid ONNX model"));
    }

    [TestCase(new byte[0], "no graph")]
    [TestCase(new byte[] { 0x3a, 0x05, 1, 2 }, "not a valid ONNX model")]                  // graph field, truncated
    [TestCase(new byte[] { 0x3a, 0xff, 0xff, 0xff, 0xff, 0x0f }, "not a valid ONNX model")] // graph of length 2^32-1
    [TestCase(new byte[] { 0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a }, "not a valid ONNX model")] // a PNG header
    public void Garbage_IsAFormatErrorNamingTheFile(byte[] bytes, string reason)
    {
        File.WriteAllBytes(ModelFile, bytes);
        Assert.That(LoadFails().Message, Does.Contain(reason));
    }

    [Test]
    public void DuplicateInitializerNames_AreRejected()
    {
        var proto = ModelProto.Parser.ParseFrom(File.ReadAllBytes(ModelFile));
        proto.Graph.Initializer.Add(OnnxTestModels.FloatTensor("block.proj.bias", [3], new float[3]));
        File.WriteAllBytes(ModelFile, proto.ToByteArray());
        Assert.That(LoadFails().Message, Does.Contain("duplicate initializer").And.Contain("block.proj.bias"));
    }

    [Test]
    public void NegativeDimensionsAndOverflowingShapes_AreRejected()
    {
        var proto = ModelProto.Parser.ParseFrom(File.ReadAllBytes(ModelFile));
        var b = proto.Graph.Initializer.Single(t => t.Name == "block.proj.bias");
        b.Dims.Clear(); b.Dims.Add(-3);
        File.WriteAllBytes(ModelFile, proto.ToByteArray());
        Assert.That(LoadFails().Message, Does.Contain("negative dimension").And.Contain("block.proj.bias"));
        b.Dims.Clear(); b.Dims.Add(3);

        var w = proto.Graph.Initializer.Single(t => t.Name == "onnx::MatMul_7");
        w.Dims.Clear(); w.Dims.Add([1L << 40, 1L << 40]);
        File.WriteAllBytes(ModelFile, proto.ToByteArray());
        Assert.That(LoadFails().Message, Does.Contain("overflows"));
    }

    [Test]
    public void RawDataOfTheWrongSize_IsRejectedWhenRead()
    {
        var proto = ModelProto.Parser.ParseFrom(File.ReadAllBytes(ModelFile));
        var b = proto.Graph.Initializer.Single(t => t.Name == "block.proj.bias");
        b.RawData = ByteString.CopyFrom(new byte[7]);
        File.WriteAllBytes(ModelFile, proto.ToByteArray());
        var model = OnnxModel.Load(ModelFile);
        Assert.That(() => model.ReadFloat("block.proj.bias"), Throws.TypeOf<SpmFormatException>().With.Message.Contains("raw_data holds 7 bytes"));
    }
}
