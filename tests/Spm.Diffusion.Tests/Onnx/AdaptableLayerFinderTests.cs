using Spm.Core;
using Spm.Diffusion.Onnx;
using Spm.Diffusion.Onnx.Proto;
using Spm.Tests.Common;

namespace Spm.Diffusion.Tests.Onnx;

[TestFixture]
public class AdaptableLayerFinderTests
{
    private static OnnxModel? _unet;
    private static OnnxModel Unet => _unet ??= OnnxModel.Load(OnnxTestModels.FixtureUnetDir);

    private static readonly string[] BlockSuffixes =
    [
        "attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0",
        "attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0",
        "ff.net.0.proj", "ff.net.2",
    ];

    [Test]
    public void FixtureUnet_Has72TransformerLayersIn6ContainersOf12()
    {
        var layers = AdaptableLayerFinder.FindTransformerLayers(Unet);
        Assert.That(layers, Has.Count.EqualTo(72));
        var containers = layers.GroupBy(l => l.Container).ToDictionary(g => g.Key!, g => g.ToList());
        Assert.That(containers.Keys, Is.EquivalentTo(new[]
        {
            "down_blocks.1.attentions.0", "down_blocks.1.attentions.1", "mid_block.attentions.0",
            "up_blocks.0.attentions.0", "up_blocks.0.attentions.1", "up_blocks.0.attentions.2",
        }));
        foreach (var (container, members) in containers)
        {
            var expected = new[] { $"{container}.proj_in", $"{container}.proj_out" }
                .Concat(BlockSuffixes.Select(s => $"{container}.transformer_blocks.0.{s}"));
            Assert.That(members.Select(l => l.ModulePath), Is.EquivalentTo(expected), container);
        }
    }

    [Test]
    public void FixtureUnet_TransformerLayerSizesFollowTheUnetConfig()
    {
        // block_out_channels (32, 64): every attention container here works at 64 channels;
        // cross_attention_dim 32; feed-forward inner dim 4*64 = 256, GEGLU projects to 2*256.
        const int C = 64, Cross = 32, Inner = 256;
        foreach (var l in AdaptableLayerFinder.FindTransformerLayers(Unet))
        {
            var leaf = l.ModulePath[(l.Container!.Length + 1)..];
            (LayerKind kind, int inF, int outF) expected = leaf switch
            {
                "proj_in" or "proj_out" => (LayerKind.Conv, C, C),
                _ when leaf.EndsWith("attn2.to_k") || leaf.EndsWith("attn2.to_v") => (LayerKind.MatMul, Cross, C),
                _ when leaf.EndsWith("ff.net.0.proj") => (LayerKind.MatMul, C, 2 * Inner),
                _ when leaf.EndsWith("ff.net.2") => (LayerKind.MatMul, Inner, C),
                _ => (LayerKind.MatMul, C, C),
            };
            Assert.That((l.Kind, l.InFeatures, l.OutFeatures), Is.EqualTo(expected), l.ModulePath);
            Assert.That(l.InTransformer, Is.True);

            // Checked against the weight actually wired into the node.
            var w = Unet.DescribeInitializer(l.WeightName).Shape;
            if (l.Kind == LayerKind.MatMul)
                Assert.That(w, Is.EqualTo(new long[] { l.InFeatures, l.OutFeatures }), l.ModulePath);
            else
            {
                Assert.That(w, Is.EqualTo(new long[] { l.OutFeatures, l.InFeatures, 1, 1 }), l.ModulePath);
                Assert.That((l.KernelShape, l.Strides, l.Pads, l.Dilations, l.Group), Is.EqualTo((new[] { 1, 1 }, new[] { 1, 1 }, new[] { 0, 0, 0, 0 }, new[] { 1, 1 }, 1)));
            }
        }
    }

    [Test]
    public void FixtureUnet_MapsRenamedMatMulWeightsByNodeName_AndAddsAfterTheBias()
    {
        var layers = AdaptableLayerFinder.FindAll(Unet).ToDictionary(l => l.ModulePath);
        var q = layers["down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q"];
        Assert.That(q.NodeName, Is.EqualTo("/down_blocks.1/attentions.0/transformer_blocks.0/attn1/to_q/MatMul"));
        Assert.That(q.WeightName, Is.EqualTo("onnx::MatMul_3644"));
        Assert.That(q.InputName, Is.EqualTo("/down_blocks.1/attentions.0/transformer_blocks.0/norm1/Add_1_output_0"));
        Assert.That(q.OutputName, Is.EqualTo("/down_blocks.1/attentions.0/transformer_blocks.0/attn1/to_q/MatMul_output_0"), "to_q has no bias");

        var k2 = layers["mid_block.attentions.0.transformer_blocks.0.attn2.to_k"];
        Assert.That(k2.InputName, Is.EqualTo("encoder_hidden_states"));

        var o = layers["down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_out.0"];
        Assert.That(o.OutputName, Is.EqualTo("/down_blocks.1/attentions.0/transformer_blocks.0/attn1/to_out.0/Add_output_0"), "after the bias Add");
        var p = layers["up_blocks.0.attentions.2.proj_out"];
        Assert.That(p.OutputName, Is.EqualTo("/up_blocks.0/attentions.2/proj_out/Conv_output_0"));

        // Attention-score MatMuls (activation x activation) are not layers.
        Assert.That(layers.Keys.Where(k => k.EndsWith(".attn1") || k.EndsWith(".attn2")), Is.Empty);
        Assert.That(layers.Values.Count(l => l.Kind == LayerKind.MatMul), Is.EqualTo(60));
    }

    [Test]
    public void FixtureUnet_ListsNonTransformerConvsAndLinears()
    {
        var all = AdaptableLayerFinder.FindAll(Unet);
        var outside = all.Where(l => !l.InTransformer).ToDictionary(l => l.ModulePath);
        Assert.That(all, Has.Count.EqualTo(72 + outside.Count));
        // Every Conv (47) and Gemm (14) of the graph has a weight initializer, so all are layers.
        Assert.That(all.Count(l => l.Kind == LayerKind.Conv), Is.EqualTo(47));
        Assert.That(all.Count(l => l.Kind == LayerKind.Gemm), Is.EqualTo(14));

        var convIn = outside["conv_in"];
        Assert.That((convIn.Kind, convIn.InFeatures, convIn.OutFeatures, convIn.InputName), Is.EqualTo((LayerKind.Conv, 4, 32, "sample")));
        Assert.That((convIn.KernelShape, convIn.Pads), Is.EqualTo((new[] { 3, 3 }, new[] { 1, 1, 1, 1 })));
        Assert.That(outside["down_blocks.0.downsamplers.0.conv"].Strides, Is.EqualTo(new[] { 2, 2 }));
        var shortcut = outside["up_blocks.0.resnets.1.conv_shortcut"];
        Assert.That((shortcut.InFeatures, shortcut.OutFeatures, shortcut.KernelShape), Is.EqualTo((128, 64, new[] { 1, 1 })));
        var t1 = outside["time_embedding.linear_1"];
        Assert.That((t1.Kind, t1.InFeatures, t1.OutFeatures, t1.WeightName), Is.EqualTo((LayerKind.Gemm, 32, 128, "time_embedding.linear_1.weight")));
        Assert.That(outside["down_blocks.1.resnets.0.time_emb_proj"].OutFeatures, Is.EqualTo(64));
        Assert.That(outside.ContainsKey("up_blocks.0.upsamplers.0.conv"), Is.True);
    }

    [Test]
    public void FusedGraph_UnrecognisedAttention_NamesTheNodeAndThePattern()
    {
        var model = OnnxModel.Load(OnnxTestModels.FixtureUnetDir);
        var fused = new NodeProto { Name = "Attention_0", OpType = "MultiHeadAttention", Domain = "com.microsoft" };
        fused.Input.Add("q"); fused.Output.Add("o");
        model.Graph.Node.Add(fused);
        var ex = Assert.Throws<SpmFormatException>(() => AdaptableLayerFinder.FindAll(model))!;
        // A MultiHeadAttention the finder cannot trace to a to_out.0 projection: the packed projections cannot be named.
        Assert.That(ex.Message, Does.Contain("model.onnx").And.Contain("'Attention_0'").And.Contain("MultiHeadAttention").And.Contain("to_out.0 MatMul"));
    }

    [Test]
    public void HandBuiltGraph_GemmTransposes_IdentitySharedWeights_SamePadding_UnscopedNames()
    {
        var g = new GraphProto();
        g.Initializer.Add(OnnxTestModels.FloatTensor("lin.weight", [3, 5], new float[15]));      // Gemm without transB: [in, out]
        g.Initializer.Add(OnnxTestModels.FloatTensor("shared", [5, 7], new float[35]));
        g.Initializer.Add(OnnxTestModels.FloatTensor("conv.weight", [8, 2, 3, 3], new float[144]));
        g.Node.Add(Node("Gemm", "Gemm_0", ["x", "lin.weight"], ["g"]));                              // unscoped: path from weight name
        g.Node.Add(Node("Identity", "Identity_0", ["shared"], ["shared_id"]));
        g.Node.Add(Node("MatMul", "/a/b/MatMul_3", ["g", "shared_id"], ["m"]));
        g.Node.Add(Node("MatMul", "/a/attn/MatMul", ["m", "m"], ["s"]));                              // score MatMul: not a layer
        var conv = Node("Conv", "/blk/conv/Conv", ["img", "conv.weight"], ["c"]);
        conv.Attribute.Add(new AttributeProto { Name = "group", I = 2, Type = AttributeProto.Types.AttributeType.Int });
        conv.Attribute.Add(new AttributeProto { Name = "auto_pad", S = Google.Protobuf.ByteString.CopyFromUtf8("SAME_UPPER"), Type = AttributeProto.Types.AttributeType.String });
        var dil = new AttributeProto { Name = "dilations", Type = AttributeProto.Types.AttributeType.Ints };
        dil.Ints.Add([2, 1]);
        conv.Attribute.Add(dil);
        g.Node.Add(conv);

        var layers = AdaptableLayerFinder.FindAll(g, "hand.onnx").ToDictionary(l => l.ModulePath);
        Assert.That(layers.Keys, Is.EquivalentTo(new[] { "lin", "a.b", "blk.conv" }));
        Assert.That((layers["lin"].Kind, layers["lin"].InFeatures, layers["lin"].OutFeatures), Is.EqualTo((LayerKind.Gemm, 3, 5)));
        Assert.That((layers["a.b"].InFeatures, layers["a.b"].OutFeatures, layers["a.b"].WeightName), Is.EqualTo((5, 7, "shared")));
        var c = layers["blk.conv"];
        Assert.That((c.InFeatures, c.OutFeatures, c.Group, c.InTransformer), Is.EqualTo((4, 8, 2, false)));
        Assert.That(c.Pads, Is.EqualTo(new[] { 2, 1, 2, 1 }), "SAME_UPPER, stride 1: total dilation*(k-1), split evenly");

        var gemmT = Node("Gemm", "/lin2/Gemm", ["x", "lin.weight"], ["g2"]);
        gemmT.Attribute.Add(new AttributeProto { Name = "transB", I = 1, Type = AttributeProto.Types.AttributeType.Int });
        g.Node.Add(gemmT);
        var l2 = AdaptableLayerFinder.FindAll(g).Single(l => l.ModulePath == "lin2");
        Assert.That((l2.InFeatures, l2.OutFeatures), Is.EqualTo((5, 3)), "transB: weight stored [out, in]");

        g.Node.Add(Node("MatMul", "/a/b/MatMul_4", ["g", "shared"], ["m2"]));
        Assert.That(() => AdaptableLayerFinder.FindAll(g, "hand.onnx"),
            Throws.TypeOf<SpmFormatException>().With.Message.Contains("'a.b'").And.Message.Contains("hand.onnx"));
    }

    [Test]
    public void Sd2StyleUnet_LinearProjections_AreMatMulLayers_WithTheOtherCrossWidth()
    {
        // SD 2.x uses linear proj_in/proj_out and a wider text encoder; built with the model builder, saved with
        // external weights, then loaded like an export.
        var config = Spm.Shapes.Building.UNetPresets.TinySd1 with { UseLinearProjection = true, CrossAttentionDim = 48 };
        var dir = TestPaths.NewTempDir("spm-sd2ish");
        Spm.Shapes.Building.UNetBuilder.Create(config, seed: 5).Save(Path.Combine(dir, "model.onnx"), "weights.pb");
        var model = OnnxModel.Load(dir);
        Assert.That(model.ExternalDataFiles, Is.EqualTo(new[] { "weights.pb" }));
        var layers = AdaptableLayerFinder.FindTransformerLayers(model).ToDictionary(l => l.ModulePath);
        Assert.That(layers, Has.Count.EqualTo(72));
        var projIn = layers["mid_block.attentions.0.proj_in"];
        Assert.That((projIn.Kind, projIn.InFeatures, projIn.OutFeatures), Is.EqualTo((LayerKind.MatMul, 64, 64)));
        Assert.That(projIn.IsConv, Is.False);
        var k = layers["up_blocks.0.attentions.1.transformer_blocks.0.attn2.to_k"];
        Assert.That((k.InFeatures, k.OutFeatures), Is.EqualTo((48, 64)));
        Assert.That(layers.Values.Count(l => l.Kind == LayerKind.Conv), Is.EqualTo(0));
    }

    [Test]
    public void BiasAddWithoutOutput_LeavesTheMatMulOutput()
    {
        // Found by the long fuzz run: a malformed Add after a Linear must not crash the finder.
        var g = new GraphProto();
        g.Initializer.Add(OnnxTestModels.FloatTensor("w", [2, 3], new float[6]));
        g.Initializer.Add(OnnxTestModels.FloatTensor("b", [3], new float[3]));
        g.Node.Add(Node("MatMul", "/l/MatMul", ["x", "w"], ["m"]));
        g.Node.Add(Node("Add", "/l/Add", ["m", "b"], []));
        Assert.That(AdaptableLayerFinder.FindAll(g).Single().OutputName, Is.EqualTo("m"));
    }

    [TestCase("/down_blocks.1/attentions.0/transformer_blocks.0/attn1/to_q/MatMul", "MatMul", "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q")]
    [TestCase("/mid_block/attentions.0/proj_in/Conv", "Conv", "mid_block.attentions.0.proj_in")]
    [TestCase("/time_embedding/linear_1/Gemm", "Gemm", "time_embedding.linear_1")]
    [TestCase("/a/MatMul_12", "MatMul", "a")]
    [TestCase("/a/MatMulX", "MatMul", null)]
    [TestCase("MatMul_3", "MatMul", null)]
    [TestCase("/MatMul", "MatMul", null)]
    [TestCase("/a//MatMul", "MatMul", null)]
    [TestCase("/a/Conv", "MatMul", null)]
    public void ModulePathFromNodeName(string node, string op, string? expected) =>
        Assert.That(AdaptableLayerFinder.ModulePathFromNodeName(node, op), Is.EqualTo(expected));

    [TestCase("down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q", "down_blocks.1.attentions.0")]
    [TestCase("up_blocks.3.attentions.2.proj_out", "up_blocks.3.attentions.2")]
    [TestCase("mid_block.attentions.0.proj_in", "mid_block.attentions.0")]
    [TestCase("down_blocks.1.resnets.0.conv1", null)]
    [TestCase("attentions.0.proj_in", null)]
    [TestCase("down_blocks.1.attentions_x.0.proj_in", null)]
    public void ContainerOf(string path, string? expected) =>
        Assert.That(AdaptableLayerFinder.ContainerOf(path), Is.EqualTo(expected));

    private static NodeProto Node(string op, string name, string[] inputs, string[] outputs)
    {
        var n = new NodeProto { OpType = op, Name = name };
        n.Input.Add(inputs);
        n.Output.Add(outputs);
        return n;
    }
}
