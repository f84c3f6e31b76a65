using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Spm.Core;
using Spm.Core.Tensors;
using Spm.Diffusion.Onnx;
using Spm.Diffusion.Onnx.Proto;
using Spm.Tests.Common;

namespace Spm.Diffusion.Tests.Onnx;

[TestFixture]
public class OnnxModelTests
{
    private static readonly string FixtureUnet = Path.Combine(OnnxTestModels.FixtureUnetDir, OnnxTestModels.UnetFile);

    // The original fixture's output on UnetInputs(), computed once: ORT sessions on this machine are the slow part.
    private static readonly Lazy<float[]> Baseline = new(() => RunFile(FixtureUnet, UnetInputs()));

    [Test]
    public void Load_FixtureUnet_ReadsGraphInputsOutputsAndExternalLayout()
    {
        var model = OnnxModel.Load(FixtureUnet);
        Assert.That(model.OpsetVersion, Is.EqualTo(14));
        Assert.That(model.Inputs.Select(i => $"{i.Name}:{i.ElementType}{i.ShapeString}"),
            Is.EqualTo(new[] { "sample:FLOAT[batch,4,height,width]", "timestep:FLOAT[batch]", "encoder_hidden_states:FLOAT[batch,sequence,32]" }));
        Assert.That(model.Outputs.Single().Name, Is.EqualTo("out_sample"));
        Assert.That(model.ExternalDataFiles, Is.EqualTo(new[] { "weights.pb" }));
        // The external tensors tile weights.pb exactly.
        Assert.That(model.ExternalDataBytes, Is.EqualTo(new FileInfo(Path.Combine(OnnxTestModels.FixtureUnetDir, "weights.pb")).Length));
        var info = model.DescribeInitializer("onnx::MatMul_3644");
        Assert.That(info.Shape, Is.EqualTo(new long[] { 64, 64 }));
        Assert.That(info.DataTypeName, Is.EqualTo("FLOAT"));
        Assert.That(info.External!.Location, Is.EqualTo("weights.pb"));
        Assert.That(model.DescribeInitializer("conv_in.bias").IsExternal, Is.False);
    }

    [Test]
    public void Load_AcceptsFileComponentFolderAndPipelineFolder()
    {
        var a = OnnxModel.Load(FixtureUnet);
        var b = OnnxModel.Load(OnnxTestModels.FixtureUnetDir);
        var c = OnnxModel.Load(TestPaths.TinySd1);
        var d = OnnxModel.Load(TestPaths.TinySd1, "vae_decoder");
        Assert.That(b.FilePath, Is.EqualTo(a.FilePath));
        Assert.That(c.FilePath, Is.EqualTo(a.FilePath));
        Assert.That(d.FilePath, Does.EndWith(Path.Combine("vae_decoder", "model.onnx")));
        Assert.That(() => OnnxModel.Load(Path.Combine(TestPaths.TinySd1, "scheduler")), Throws.InstanceOf<SpmException>().With.Message.Contains("model.onnx"));
    }

    [Test]
    public void ReadFloat_ExternalAndInline_MatchTheBytesOnDisk()
    {
        var model = OnnxModel.Load(FixtureUnet);
        var info = model.DescribeInitializer("time_embedding.linear_2.weight");
        var w = model.ReadFloat("time_embedding.linear_2.weight");
        Assert.That(w.Shape, Is.EqualTo(new[] { 128, 128 }));
        var raw = File.ReadAllBytes(Path.Combine(OnnxTestModels.FixtureUnetDir, "weights.pb")).AsSpan((int)info.External!.Offset, (int)info.External.Length);
        var expected = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(raw).ToArray();
        Assert.That(w.Data, Is.EqualTo(expected));
        Assert.That(model.ReadBytes("time_embedding.linear_2.weight"), Is.EqualTo(raw.ToArray()));

        var bias = model.ReadFloat("conv_in.bias");
        var t = model.GetInitializer("conv_in.bias");
        Assert.That(bias.Data, Is.EqualTo(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(t.RawData.Span).ToArray()));
        Assert.That(bias.Data.Any(v => v != 0), Is.True);
    }

    [Test]
    public void ReadFloat_ConvertsHalfBfloatDoubleAndTypedFields()
    {
        var proto = new ModelProto { Graph = new GraphProto() };
        var half = new TensorProto { Name = "h", DataType = (int)TensorProto.Types.DataType.Float16 };
        half.Dims.Add(2);
        half.RawData = Google.Protobuf.ByteString.CopyFrom([.. BitConverter.GetBytes((Half)1.5f), .. BitConverter.GetBytes((Half)(-2f))]);
        var bf = new TensorProto { Name = "bf", DataType = (int)TensorProto.Types.DataType.Bfloat16 };
        bf.Dims.Add(1);
        bf.Int32Data.Add((int)(BitConverter.SingleToUInt32Bits(3.0f) >> 16));
        var dbl = new TensorProto { Name = "d", DataType = (int)TensorProto.Types.DataType.Double };
        dbl.DoubleData.Add(0.125); // rank 0: a scalar
        var fl = new TensorProto { Name = "f", DataType = (int)TensorProto.Types.DataType.Float };
        fl.Dims.Add(3);
        fl.FloatData.Add([1f, 2f, 3f]);
        var i64 = new TensorProto { Name = "i", DataType = (int)TensorProto.Types.DataType.Int64 };
        i64.Dims.Add(1);
        i64.Int64Data.Add(5);
        proto.Graph.Initializer.Add([half, bf, dbl, fl, i64]);
        var model = OnnxModel.FromProto(proto, TestPaths.NewTempDir());

        Assert.That(model.ReadFloat("h").Data, Is.EqualTo(new[] { 1.5f, -2f }));
        Assert.That(model.ReadFloat("bf").Data, Is.EqualTo(new[] { 3f }));
        Assert.That(model.ReadFloat("d").Data, Is.EqualTo(new[] { 0.125f }));
        Assert.That(model.ReadFloat("d").Shape, Is.Empty);
        Assert.That(model.ReadFloat("f").Data, Is.EqualTo(new[] { 1f, 2f, 3f }));
        Assert.That(model.ReadBytes("i"), Is.EqualTo(BitConverter.GetBytes(5L)));
        Assert.That(() => model.ReadFloat("i"), Throws.TypeOf<SpmFormatException>().With.Message.Contains("'i'").And.Message.Contains("INT64"));
        Assert.That(() => model.ReadFloat("nope"), Throws.TypeOf<SpmFormatException>().With.Message.Contains("'nope'"));
    }

    [Test]
    public void Load_DoesNotReadWeights_UntilAnInitializerIsAsked()
    {
        // weights.pb replaced by an empty file: the graph, its metadata and the layer listing still work.
        var dir = OnnxTestModels.CopyFixtureUnet(withWeights: false);
        File.WriteAllBytes(Path.Combine(dir, "weights.pb"), []);
        var model = OnnxModel.Load(dir);
        Assert.That(model.ExternalDataBytes, Is.EqualTo(5665792));
        Assert.That(AdaptableLayerFinder.FindTransformerLayers(model), Has.Count.EqualTo(72));
        Assert.That(model.ReadFloat("conv_in.bias").Length, Is.EqualTo(32)); // inline data is fine
        var ex = Assert.Throws<SpmFormatException>(() => model.ReadFloat("conv_in.weight"))!;
        Assert.That(ex.Message, Does.Contain(Path.Combine(dir, "model.onnx")).And.Contain("conv_in.weight").And.Contain("beyond the end of 'weights.pb'"));

        // And with no weights.pb at all.
        File.Delete(Path.Combine(dir, "weights.pb"));
        model = OnnxModel.Load(dir);
        Assert.That(AdaptableLayerFinder.FindAll(model), Is.Not.Empty);
        Assert.That(() => model.ReadFloat("onnx::MatMul_3644"),
            Throws.TypeOf<SpmFormatException>().With.Message.Contains("does not exist").And.Message.Contains("onnx::MatMul_3644"));
    }

    [Test]
    public void CreateSession_InMemoryModifiedGraph_KeepsExternalWeightsAndRuns()
    {
        var model = OnnxModel.Load(FixtureUnet);
        var inputs = UnetInputs();
        var baseline = Baseline.Value;

        // Graph surgery in memory: out_sample -> out_sample * 2 (a new output); weights remain external.
        var g = model.Graph;
        var oldOut = g.Output[0];
        foreach (var n in g.Node)
            for (int i = 0; i < n.Output.Count; i++)
                if (n.Output[i] == "out_sample") n.Output[i] = "out_sample_pre";
        g.Initializer.Add(OnnxTestModels.FloatTensor("two", [], [2f]));
        var mul = new NodeProto { Name = "/test/Mul", OpType = "Mul" };
        mul.Input.Add("out_sample_pre"); mul.Input.Add("two"); mul.Output.Add("out_sample");
        g.Node.Add(mul);
        Assert.That(model.DescribeInitializer("conv_in.weight").IsExternal, Is.True);

        using var session = model.CreateSession();
        var doubled = Run(session, inputs);
        Assert.That(doubled, Has.Length.EqualTo(baseline.Length));
        for (int i = 0; i < baseline.Length; i++) Assert.That(doubled[i], Is.EqualTo(2 * baseline[i]).Within(1e-5f * (1 + Math.Abs(baseline[i]))));
        Assert.That(oldOut.Name, Is.EqualTo("out_sample"));
    }

    [Test]
    public void Save_ModifiedGraphIntoSameFolder_RefersToOriginalWeightsAndRunsIdentically()
    {
        var dir = OnnxTestModels.CopyFixtureUnet();
        var model = OnnxModel.Load(dir);
        model.Proto.DocString = "modified by a test";
        model.Proto.MetadataProps.Add(new StringStringEntryProto { Key = "spm", Value = "1" });
        var saved = Path.Combine(dir, "model-modified.onnx");
        model.Save(saved);

        Assert.That(new FileInfo(saved).Length, Is.LessThan(new FileInfo(Path.Combine(dir, "model.onnx")).Length + 1024), "no weights embedded");
        Assert.That(Directory.GetFiles(dir).Select(Path.GetFileName), Is.EquivalentTo(new[] { "model.onnx", "model-modified.onnx", "weights.pb", "config.json" }));
        var reloaded = OnnxModel.Load(saved);
        Assert.That(reloaded.ExternalDataFiles, Is.EqualTo(new[] { "weights.pb" }));
        Assert.That(reloaded.Proto.DocString, Is.EqualTo("modified by a test"));

        var inputs = UnetInputs();
        Assert.That(RunFile(saved, inputs), Is.EqualTo(Baseline.Value));
    }

    [Test]
    public void Save_IntoAnotherFolder_HardLinksWeightsInsteadOfCopying()
    {
        var src = OnnxTestModels.CopyFixtureUnet();
        var dest = TestPaths.NewTempDir("spm-onnx-dest");
        var model = OnnxModel.Load(src);
        model.Save(Path.Combine(dest, "model.onnx"), new OnnxSaveOptions(AllowCopy: false));

        var linked = Path.Combine(dest, "weights.pb");
        Assert.That(File.Exists(linked), Is.True);
        Assert.That(new FileInfo(linked).LinkTarget, Is.Null, "a hard link, not a symbolic link");
        // Same inode: a byte written through one name is seen through the other.
        using (var fs = new FileStream(Path.Combine(src, "weights.pb"), FileMode.Open, FileAccess.ReadWrite))
        {
            fs.Position = 100;
            int old = fs.ReadByte();
            fs.Position = 100;
            fs.WriteByte((byte)(old ^ 0xFF));
        }
        Assert.That(File.ReadAllBytes(linked), Is.EqualTo(File.ReadAllBytes(Path.Combine(src, "weights.pb"))));

        // Saving again without Overwrite is refused and changes nothing.
        var before = File.ReadAllBytes(Path.Combine(dest, "model.onnx"));
        Assert.That(() => model.Save(Path.Combine(dest, "model.onnx")), Throws.TypeOf<IOException>().With.Message.Contains("already exists"));
        Assert.That(File.ReadAllBytes(Path.Combine(dest, "model.onnx")), Is.EqualTo(before));
        model.Save(Path.Combine(dest, "model.onnx"), new OnnxSaveOptions(Overwrite: true));
        Assert.That(Directory.GetFiles(dest).Select(Path.GetFileName), Is.EquivalentTo(new[] { "model.onnx", "weights.pb" }));
    }

    [Test]
    public void Save_FromReadOnlyFixtureIntoAnotherFolder_RunsLikeTheOriginal()
    {
        var dest = TestPaths.NewTempDir("spm-onnx-dest");
        var model = OnnxModel.Load(FixtureUnet);
        model.Save(Path.Combine(dest, "model.onnx"));
        var inputs = UnetInputs();
        Assert.That(RunFile(Path.Combine(dest, "model.onnx"), inputs), Is.EqualTo(Baseline.Value));
    }

    [Test]
    public void Save_Embed_WritesOneSelfContainedFile()
    {
        var dest = TestPaths.NewTempDir("spm-onnx-embed");
        var model = OnnxModel.Load(FixtureUnet);
        var path = Path.Combine(dest, "embedded.onnx");
        model.Save(path, new OnnxSaveOptions(ExternalData: ExternalDataPolicy.Embed));
        Assert.That(Directory.GetFiles(dest), Has.Length.EqualTo(1));
        var reloaded = OnnxModel.Load(path);
        Assert.That(reloaded.ExternalDataFiles, Is.Empty);
        Assert.That(reloaded.ReadFloat("onnx::MatMul_3644").Data, Is.EqualTo(model.ReadFloat("onnx::MatMul_3644").Data));
        var inputs = UnetInputs();
        Assert.That(RunFile(path, inputs), Is.EqualTo(Baseline.Value));
        // The source model is untouched by the save.
        Assert.That(model.DescribeInitializer("onnx::MatMul_3644").IsExternal, Is.True);
    }

    [Test]
    [Category(TestCategories.Slow)]
    public void Save_ChangedInitializer_GoesToNewDataFile_OthersStayInOriginal()
    {
        var dir = OnnxTestModels.CopyFixtureUnet();
        var model = OnnxModel.Load(dir);
        var w = model.ReadFloat("onnx::MatMul_3644");
        var changed = new FloatTensor(w.Shape, w.Data.Select(v => v * -3f).ToArray());
        model.SetFloatInitializer("onnx::MatMul_3644", changed);
        Assert.That(model.DescribeInitializer("onnx::MatMul_3644").IsExternal, Is.False);

        var saved = Path.Combine(dir, "baked.onnx");
        model.Save(saved, new OnnxSaveOptions(ExternalizeAboveBytes: 1024));
        var reloaded = OnnxModel.Load(saved);
        Assert.That(reloaded.DescribeInitializer("onnx::MatMul_3644").External!.Location, Is.EqualTo("baked.onnx_data"));
        Assert.That(reloaded.DescribeInitializer("conv_in.weight").External!.Location, Is.EqualTo("weights.pb"));
        Assert.That(reloaded.ReadFloat("onnx::MatMul_3644").Data, Is.EqualTo(changed.Data));
        Assert.That(new FileInfo(Path.Combine(dir, "baked.onnx_data")).Length, Is.EqualTo(64 * 64 * 4));

        // ORT reads both files and the change shows in the output.
        var inputs = UnetInputs();
        Assert.That(RunFile(saved, inputs), Is.Not.EqualTo(Baseline.Value));
        using var fromMemory = model.CreateSession();
        Assert.That(Run(fromMemory, inputs), Is.EqualTo(RunFile(saved, inputs)));
        // The same in-memory model through the pipeline's session factory.
        var created = Spm.Diffusion.Runtime.OnnxSessionFactory.Create(model.ToSource(), new Spm.Diffusion.Runtime.OnnxRuntimeOptions());
        using (created.Session)
            Assert.That(Run(created.Session, inputs), Is.EqualTo(RunFile(saved, inputs)));

        // A new data file may never clobber a file the model still refers to.
        Assert.That(() => model.Save(Path.Combine(dir, "other.onnx"), new OnnxSaveOptions(ExternalizeAboveBytes: 1024, NewDataFileName: "weights.pb")),
            Throws.InstanceOf<SpmException>().With.Message.Contains("still refers"));
        Assert.That(new FileInfo(Path.Combine(dir, "weights.pb")).Length, Is.EqualTo(5665792));
    }

    [Test]
    public void Lookups_FollowDirectEditsOfTheProto_AndConcurrentReadsAgree()
    {
        var model = OnnxModel.Load(FixtureUnet);
        var expected = model.Graph.Initializer.Select(t => model.ReadBytes(t.Name)).ToArray();
        var names = model.Graph.Initializer.Select(t => t.Name).ToArray();
        var results = new byte[names.Length][];
        Parallel.For(0, names.Length * 4, new ParallelOptions { MaxDegreeOfParallelism = 8 }, i =>
        {
            var bytes = model.ReadBytes(names[i % names.Length]);
            if (i >= names.Length * 3) results[i % names.Length] = bytes;
        });
        Assert.That(results, Is.EqualTo(expected));

        // Replace, remove and reorder through the proto itself: lookups see the current graph.
        int at = model.Graph.Initializer.IndexOf(model.GetInitializer("conv_in.bias"));
        model.Graph.Initializer[at] = OnnxTestModels.FloatTensor("conv_in.bias", [2], [7f, 8f]);
        Assert.That(model.ReadFloat("conv_in.bias").Data, Is.EqualTo(new[] { 7f, 8f }));
        var first = model.Graph.Initializer[0];
        model.Graph.Initializer.RemoveAt(0);
        model.Graph.Initializer.Add(first);
        Assert.That(model.ReadFloat("conv_in.bias").Data, Is.EqualTo(new[] { 7f, 8f }));
        Assert.That(model.ReadBytes(first.Name), Is.EqualTo(expected[0]));
        model.Graph.Initializer.Remove(first);
        Assert.That(model.HasInitializer(first.Name), Is.False);
    }

    [Test]
    public void LinearModel_ExternalAtOffset_ReadsAndRuns()
    {
        var dir = TestPaths.NewTempDir();
        var path = OnnxTestModels.WriteLinearModel(dir, out var weight);
        var model = OnnxModel.Load(path);
        Assert.That(model.ReadFloat("onnx::MatMul_7").Data, Is.EqualTo(weight));
        using var session = model.CreateSession();
        var x = new DenseTensor<float>(new float[] { 1, 2, 3, 4 }, [1, 4]);
        using var results = session.Run([NamedOnnxValue.CreateFromTensor("x", x)]);
        var y = results.First().AsTensor<float>().ToArray();
        var expected = new float[3];
        for (int j = 0; j < 3; j++) { expected[j] = new[] { 0.5f, -0.5f, 1f }[j]; for (int i = 0; i < 4; i++) expected[j] += (i + 1) * weight[i * 3 + j]; }
        Assert.That(y, Is.EqualTo(expected).Within(1e-5f));
    }

    internal static (float[] Sample, float[] Timestep, float[] Hidden) UnetInputs()
    {
        var sample = Enumerable.Range(0, 4 * 16 * 16).Select(i => MathF.Sin(i * 0.37f)).ToArray();
        var hidden = Enumerable.Range(0, 77 * 32).Select(i => MathF.Cos(i * 0.11f) * 0.5f).ToArray();
        return (sample, [500f], hidden);
    }

    internal static float[] RunFile(string path, (float[] Sample, float[] Timestep, float[] Hidden) inputs)
    {
        using var session = new InferenceSession(path);
        return Run(session, inputs);
    }

    internal static float[] Run(InferenceSession session, (float[] Sample, float[] Timestep, float[] Hidden) inputs)
    {
        var feeds = new List<NamedOnnxValue>
        {
            NamedOnnxValue.CreateFromTensor("sample", new DenseTensor<float>(inputs.Sample, [1, 4, 16, 16])),
            NamedOnnxValue.CreateFromTensor("timestep", new DenseTensor<float>(inputs.Timestep, [1])),
            NamedOnnxValue.CreateFromTensor("encoder_hidden_states", new DenseTensor<float>(inputs.Hidden, [1, 77, 32])),
        };
        using var results = session.Run(feeds);
        return results.First().AsTensor<float>().ToArray();
    }
}
