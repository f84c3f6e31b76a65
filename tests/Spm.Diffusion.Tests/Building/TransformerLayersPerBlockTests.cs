using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Spm.Core;
using Spm.Shapes.Building;
using static Spm.Diffusion.Tests.Building.BuildTestSupport;

namespace Spm.Diffusion.Tests.Building;

/// <summary>
/// <c>transformer_layers_per_block</c> as diffusers reads it: an int for every block or one value per down block, the
/// mid block taking the last value and up block i the value of down block n-1-i (SDXL base: [1, 2, 10]).
/// </summary>
[TestFixture]
public class TransformerLayersPerBlockTests
{
    // Two cross-attention levels so both values of [1, 2] are used on the way down and up.
    private static UNetConfig TwoLevels => UNetPresets.TinySd1 with
    {
        DownBlockTypes = ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        UpBlockTypes = ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
        TransformerLayersPerBlock = [1, 2],
    };

    /// <summary>Transformer layers per Transformer2DModel, keyed by its module path, read from the node names.</summary>
    private static Dictionary<string, int> LayersByTransformer(IEnumerable<string> nodeNames)
    {
        var layers = new Dictionary<string, HashSet<int>>();
        var pattern = new Regex(@"^/(.+/attentions\.\d+)/transformer_blocks\.(\d+)/attn1/to_q/MatMul$");
        foreach (var name in nodeNames)
            if (pattern.Match(name) is { Success: true } m)
            {
                if (!layers.TryGetValue(m.Groups[1].Value, out var set)) layers[m.Groups[1].Value] = set = [];
                set.Add(int.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture));
            }
        // Layers are numbered 0..k-1 without gaps.
        foreach (var (module, set) in layers)
            Assert.That(set.Order(), Is.EqualTo(Enumerable.Range(0, set.Count)), module);
        return layers.ToDictionary(kv => kv.Key, kv => kv.Value.Count);
    }

    [Test]
    public void PerBlockCounts_DownMidAndUpBlocks_GetTheirOwnNumberOfLayers()
    {
        var model = UNetBuilder.Create(TwoLevels, 5).Build();
        var layers = LayersByTransformer(model.Graph.Node.Select(n => n.Name));
        var expected = new Dictionary<string, int>
        {
            ["down_blocks.0/attentions.0"] = 1, ["down_blocks.0/attentions.1"] = 1,
            ["down_blocks.1/attentions.0"] = 2, ["down_blocks.1/attentions.1"] = 2,
            ["mid_block/attentions.0"] = 2, // the last entry
            ["up_blocks.0/attentions.0"] = 2, ["up_blocks.0/attentions.1"] = 2, ["up_blocks.0/attentions.2"] = 2, // down block 1's value
            ["up_blocks.1/attentions.0"] = 1, ["up_blocks.1/attentions.1"] = 1, ["up_blocks.1/attentions.2"] = 1,
        };
        Assert.That(layers, Is.EquivalentTo(expected));
        Assert.That(Spm.Diffusion.Onnx.AdaptableLayerFinder.FindTransformerLayers(Spm.Diffusion.Onnx.OnnxModel.FromProto(model, Path.GetTempPath(), "per-block")).Count,
            Is.EqualTo(11 * 2 + 17 * 10), "2 projections per transformer and 10 linears per transformer layer");

        // The graph runs, and its output has the sample's shape.
        using var session = new InferenceSession(model.ToByteArray(), Options());
        var output = Run(session, "out_sample",
            ("sample", RandomFloats(1 * 4 * 8 * 8, 1), [1, 4, 8, 8]), ("timestep", new float[] { 10 }, [1]),
            ("encoder_hidden_states", RandomFloats(1 * 5 * 32, 2), [1, 5, 32]));
        Assert.That(output, Has.Length.EqualTo(4 * 8 * 8));
        Assert.That(output.All(float.IsFinite));
    }

    [Test]
    public void OneValue_AppliesToEveryBlock_AsBefore()
    {
        var layers = LayersByTransformer(UNetBuilder.Create(TwoLevels with { TransformerLayersPerBlock = [2] }, 5).Build().Graph.Node.Select(n => n.Name));
        Assert.That(layers.Values, Has.All.EqualTo(2));
        Assert.That(layers, Has.Count.EqualTo(11));
        Assert.That(UNetPresets.Sd15.TransformerLayersPerBlock, Is.EqualTo(new[] { 1 }));
    }

    [Test]
    public void Config_ReadsAnIntOrAList_AndWritesTheSameForm()
    {
        var json = JsonNode.Parse(TwoLevels.ToJson().ToJsonString())!.AsObject();
        Assert.That(json["transformer_layers_per_block"], Is.InstanceOf<JsonArray>());
        Assert.That(json["transformer_layers_per_block"]!.AsArray().Select(v => (int)v!), Is.EqualTo(new[] { 1, 2 }));
        Assert.That(UNetConfig.FromJson(json).TransformerLayersPerBlock, Is.EqualTo(new[] { 1, 2 }));

        // SD 1.x/2.x and the tiny SDXL fixture keep writing a plain int, as their configs always had.
        var sd15 = JsonNode.Parse(UNetPresets.Sd15.ToJson().ToJsonString())!.AsObject();
        Assert.That(sd15["transformer_layers_per_block"]!.GetValue<int>(), Is.EqualTo(1));
        Assert.That(UNetPresets.TinySdxl.ToJson()["transformer_layers_per_block"]!.GetValue<int>(), Is.EqualTo(2));
        json["transformer_layers_per_block"] = 3;
        Assert.That(UNetConfig.FromJson(json).TransformerLayersPerBlock, Is.EqualTo(new[] { 3 }));
        json.Remove("transformer_layers_per_block");
        Assert.That(UNetConfig.FromJson(json).TransformerLayersPerBlock, Is.EqualTo(new[] { 1 }), "diffusers' default");
    }

    [TestCase("[1, 2, 3]", "3 values for 2 blocks")]
    [TestCase("[1, 0]", "out of range: 0")]
    [TestCase("[]", "0 values for 2 blocks")]
    [TestCase("\"two\"", "transformer_layers_per_block")]
    [TestCase("[1, \"2\"]", "transformer_layers_per_block")]
    public void Config_BadValues_AreRefusedNamingTheField(string value, string detail)
    {
        var path = Path.Combine(Path.GetTempPath(), $"spm-tlpb-{Guid.NewGuid():N}.json");
        var json = TwoLevels.ToJson();
        json["transformer_layers_per_block"] = JsonNode.Parse(value);
        File.WriteAllText(path, json.ToJsonString());
        try
        {
            Assert.That(() => UNetConfig.Load(path), Throws.TypeOf<SpmFormatException>()
                .With.Message.Contains("transformer_layers_per_block").And.Message.Contains(detail).And.Message.Contains(path));
        }
        finally { File.Delete(path); }
    }

    [Test]
    public void SdxlPreset_HasSdxlBasesLayersAndParameterCount()
    {
        // Declared only (weights are drawn when saved): cheap even at 2.6B parameters.
        var g = UNetBuilder.Create(UNetPresets.Sdxl, 1);
        var layers = LayersByTransformer(g.NodeNames);
        Assert.That(layers.Where(kv => kv.Key.StartsWith("down_blocks.1/", StringComparison.Ordinal)).Select(kv => kv.Value), Has.All.EqualTo(2));
        Assert.That(layers.Where(kv => kv.Key.StartsWith("down_blocks.2/", StringComparison.Ordinal) || kv.Key.StartsWith("mid_block/", StringComparison.Ordinal)
            || kv.Key.StartsWith("up_blocks.0/", StringComparison.Ordinal)).Select(kv => kv.Value), Has.All.EqualTo(10));
        Assert.That(layers.Values.Sum(), Is.EqualTo(70), "SDXL base has 70 transformer layers");
        Assert.That(layers.Keys.Any(k => k.StartsWith("down_blocks.0/", StringComparison.Ordinal)), Is.False, "down block 0 is a DownBlock2D");
        Assert.That(g.ParameterCount, Is.EqualTo(2_567_463_684L), "diffusers' UNet2DConditionModel for SDXL base 1.0");
    }
}
