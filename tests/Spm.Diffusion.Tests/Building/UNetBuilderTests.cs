using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Spm.Core;
using Spm.Diffusion.Onnx.Proto;
using Spm.Shapes.Building;
using Spm.Tests.Common;
using static Spm.Diffusion.Tests.Building.BuildTestSupport;

namespace Spm.Diffusion.Tests.Building;

[TestFixture]
public class UNetBuilderTests
{
    private static string FixtureUnet => Path.Combine(TestPaths.TinySd1, "unet", "model.onnx");

    private static UNetConfig FixtureConfig => UNetConfig.Load(Path.Combine(TestPaths.TinySd1, "unet", "config.json"));

    [Test]
    public void FixtureConfig_ReadsLikeDiffusers()
    {
        var c = FixtureConfig;
        Assert.That(c.BlockOutChannels, Is.EqualTo(new[] { 32, 64 }));
        Assert.That(c.DownBlockTypes, Is.EqualTo(new[] { "DownBlock2D", "CrossAttnDownBlock2D" }));
        Assert.That(c.UpBlockTypes, Is.EqualTo(new[] { "CrossAttnUpBlock2D", "UpBlock2D" }));
        Assert.That(c.CrossAttentionDim, Is.EqualTo(32));
        Assert.That(c.HeadsOf(1), Is.EqualTo(8));
    }

    [Test]
    public void TinyUnet_HasTheFixturesInputsOutputsLayersAndWeightShapes()
    {
        var ours = UNetBuilder.Create(FixtureConfig, 1).Build();
        var reference = Load(FixtureUnet);

        string Sig(ValueInfoProto v) => v.Name + ":" + string.Join(",", v.Type.TensorType.Shape.Dim.Select(d => d.DimValue > 0 ? d.DimValue.ToString() : "?")) + ":" + v.Type.TensorType.ElemType;
        Assert.That(ours.Graph.Input.Select(Sig), Is.EqualTo(reference.Graph.Input.Select(Sig)));
        Assert.That(ours.Graph.Output.Select(o => o.Name), Is.EqualTo(new[] { "out_sample" }));

        // Every Linear/Conv inside a transformer container, by node name (this is what membrane injection keys on).
        static IEnumerable<string> TransformerLayers(ModelProto m) => m.Graph.Node
            .Where(n => n.OpType is "MatMul" or "Conv" && n.Name.Contains("/attentions.") && m.Graph.Initializer.Any(i => i.Name == n.Input[1]))
            .Select(n => n.Name).Order(StringComparer.Ordinal);
        var ourLayers = TransformerLayers(ours).ToArray();
        Assert.That(ourLayers, Is.EqualTo(TransformerLayers(reference).ToArray()));
        // 2 down + 1 mid + 3 up containers, 12 layers each (proj_in, proj_out, attn1 ×4, attn2 ×4, ff ×2).
        Assert.That(ourLayers, Has.Length.EqualTo(6 * 12));

        // Every weight, keyed by the node input it feeds, has the same shape in both.
        var ourWeights = WeightsByConsumer(ours);
        var refWeights = WeightsByConsumer(reference);
        Assert.That(ourWeights.Keys.Order(StringComparer.Ordinal), Is.EqualTo(refWeights.Keys.Order(StringComparer.Ordinal)));
        foreach (var (key, t) in ourWeights)
            Assert.That(t.Dims.ToArray(), Is.EqualTo(refWeights[key].Dims.ToArray()), key);
        // Module-path names of conv/Gemm weights are the exporter's.
        Assert.That(ours.Graph.Initializer.Select(i => i.Name).Where(n => !n.StartsWith("onnx::") && n.EndsWith(".weight") && !n.Contains("norm")).Order(),
            Is.EqualTo(reference.Graph.Initializer.Select(i => i.Name).Where(n => !n.StartsWith("onnx::") && n.EndsWith(".weight") && !n.Contains("norm")).Distinct().Order()));
    }

    [Test]
    public void TinyUnet_WithTheFixturesWeights_ReproducesTheFixturesOutput()
    {
        var g = UNetBuilder.Create(FixtureConfig, 1);
        var reference = Load(FixtureUnet);
        int loaded = LoadWeightsByConsumer(g, g.Build(), reference, Path.GetDirectoryName(FixtureUnet)!);
        Assert.That(loaded, Is.EqualTo(g.Initializers.Count()), "every weight of ours comes from the fixture");

        var sample = RandomFloats(2 * 4 * 16 * 16, 11);
        var encoder = RandomFloats(2 * 77 * 32, 12);
        var timestep = new float[] { 981f, 3f };
        (string, Array, int[])[] inputs = [("sample", sample, [2, 4, 16, 16]), ("timestep", timestep, [2]), ("encoder_hidden_states", encoder, [2, 77, 32])];

        using var refSession = new InferenceSession(FixtureUnet, Options());
        var expected = Run(refSession, "out_sample", inputs);
        using var ourSession = new InferenceSession(g.Build().ToByteArray(), Options());
        var actual = Run(ourSession, "out_sample", inputs);

        Assert.That(MaxAbsDiff(actual, expected), Is.LessThan(1e-5 * MaxAbs(expected)));
        Assert.That(MaxAbs(expected), Is.GreaterThan(1e-3), "the output is not trivially zero");
    }

    [Test]
    public void SameSeed_SameBytes_DifferentSeed_DifferentWeights()
    {
        var a = UNetBuilder.Create(FixtureConfig, 5).Build().ToByteArray();
        var b = UNetBuilder.Create(FixtureConfig, 5).Build().ToByteArray();
        var c = UNetBuilder.Create(FixtureConfig, 6).Build().ToByteArray();
        Assert.That(a, Is.EqualTo(b));
        Assert.That(a, Has.Length.EqualTo(c.Length));
        Assert.That(a, Is.Not.EqualTo(c));
    }

    [Test]
    public void InitialisationFollowsPyTorchBounds()
    {
        var m = UNetBuilder.Create(FixtureConfig, 3).Build();
        var w = m.Graph.Initializer.Single(i => i.Name == "down_blocks.0.resnets.0.conv1.weight");
        var values = ReadFloats(w, "");
        double bound = 1 / Math.Sqrt(32 * 9);
        Assert.That(values.Max(), Is.LessThanOrEqualTo(bound).And.GreaterThan(0.9 * bound));
        Assert.That(values.Min(), Is.GreaterThanOrEqualTo(-bound).And.LessThan(-0.9 * bound));
        Assert.That(Math.Abs(values.Average()), Is.LessThan(0.1 * bound));
        var norm = ReadFloats(m.Graph.Initializer.Single(i => i.Name == "down_blocks.0.resnets.0.norm1.weight"), "");
        Assert.That(norm, Is.All.EqualTo(1f));
    }

    [Test]
    public void SavedWithExternalData_RunsInOrtAndMatchesInline()
    {
        var dir = TestPaths.NewTempDir("spm-build");
        try
        {
            var g = UNetBuilder.Create(FixtureConfig, 9);
            long external = g.Save(Path.Combine(dir, "model.onnx"), "weights.pb");
            Assert.That(new FileInfo(Path.Combine(dir, "weights.pb")).Length, Is.EqualTo(external).And.GreaterThan(4_000_000));
            Assert.That(new FileInfo(Path.Combine(dir, "model.onnx")).Length, Is.LessThan(1_000_000));

            var sample = RandomFloats(4 * 8 * 8, 1);
            var encoder = RandomFloats(77 * 32, 2);
            (string, Array, int[])[] inputs = [("sample", sample, [1, 4, 8, 8]), ("timestep", new float[] { 500f }, [1]), ("encoder_hidden_states", encoder, [1, 77, 32])];
            using var fromFile = new InferenceSession(Path.Combine(dir, "model.onnx"), Options());
            using var inMemory = new InferenceSession(g.Build().ToByteArray(), Options());
            Assert.That(Run(fromFile, "out_sample", inputs), Is.EqualTo(Run(inMemory, "out_sample", inputs)));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Test]
    public void BadConfig_NamesTheField()
    {
        var dir = TestPaths.NewTempDir("spm-build");
        try
        {
            var path = Path.Combine(dir, "config.json");
            File.WriteAllText(path, """{"block_out_channels": [32, 48], "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"], "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"], "norm_num_groups": 32}""");
            var ex = Assert.Throws<SpmFormatException>(() => UNetConfig.Load(path))!;
            Assert.That(ex.Key, Is.EqualTo("block_out_channels"));
            Assert.That(ex.Message, Does.Contain(path).And.Contain("48"));

            File.WriteAllText(path, """{"block_out_channels": [32, 64], "down_block_types": ["DownBlock2D"]}""");
            ex = Assert.Throws<SpmFormatException>(() => UNetConfig.Load(path))!;
            Assert.That(ex.Key, Is.EqualTo("down_block_types"));

            File.WriteAllText(path, """{"dual_cross_attention": true}""");
            Assert.That(Assert.Throws<SpmFormatException>(() => UNetConfig.Load(path))!.Key, Is.EqualTo("dual_cross_attention"));

            File.WriteAllText(path, """{"block_out_channels": "wide"}""");
            Assert.Throws<SpmFormatException>(() => UNetConfig.Load(path));

            File.WriteAllText(path, "{ not json");
            Assert.Throws<SpmFormatException>(() => UNetConfig.Load(path));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}

[TestFixture]
public class UNetPresetTests
{
    [Test]
    public void TinySd1Preset_EqualsTheFixtureConfig()
    {
        var fromFile = UNetConfig.Load(Path.Combine(TestPaths.TinySd1, "unet", "config.json"));
        var a = UNetBuilder.Create(UNetPresets.TinySd1, 1).Build().ToByteArray();
        var b = UNetBuilder.Create(fromFile, 1).Build().ToByteArray();
        Assert.That(a, Is.EqualTo(b));
    }

    [Test]
    public void Sd15Preset_HasSd15sParameterCountAndLayout()
    {
        // Declaring (not materialising) the graph is cheap, so the real size can be checked in a unit test.
        var g = UNetBuilder.Create(UNetPresets.Sd15, 1);
        Assert.That(g.ParameterCount, Is.EqualTo(859_520_964L));
        var shapes = g.Initializers.ToDictionary(i => i.Name, i => i.Shape);
        Assert.That(shapes["down_blocks.0.attentions.0.proj_in.weight"], Is.EqualTo(new long[] { 320, 320, 1, 1 }));
        Assert.That(shapes["up_blocks.3.attentions.2.proj_out.weight"], Is.EqualTo(new long[] { 320, 320, 1, 1 }));
        Assert.That(shapes["mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj.bias"], Is.EqualTo(new long[] { 10240 }));
        Assert.That(shapes.Keys.Count(k => k.EndsWith(".proj_in.weight")), Is.EqualTo(16), "SD 1.x has 16 transformer containers");
    }

    [Test]
    public void UnknownPreset_ListsKnownOnes()
    {
        var ex = Assert.Throws<ArgumentException>(() => UNetPresets.Get("sd3"))!;
        Assert.That(ex.Message, Does.Contain("unknown UNet preset 'sd3'").IgnoreCase.And.Contain("tiny-sd1").And.Contain("sd15").And.Contain("sdxl"));
    }
}
