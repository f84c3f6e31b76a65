using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Spm.Diffusion.Onnx.Proto;
using Spm.Shapes.Building;
using static Spm.Diffusion.Tests.Building.BuildTestSupport;

namespace Spm.Diffusion.Tests.Building;

/// <summary>
/// The SDXL additions of the UNet builder against a hand computation from its own weights: diffusers'
/// <c>text_time</c> embedding (each time id through the sinusoidal projection, text_embeds first, then add_embedding's
/// linear_1 · SiLU · linear_2), added to the timestep embedding that every resnet reads.
/// </summary>
[TestFixture]
public class SdxlUNetBuilderTests
{
    private static UNetConfig Config => UNetPresets.TinySdxl;

    [Test]
    public void AddEmbedding_EqualsDiffusersTextTimeFormula()
    {
        var model = UNetBuilder.Create(Config, 3).Build();
        foreach (var name in new[] { "/add_embedding/linear_2/Gemm_output_0", "/time_embedding/linear_2/Gemm_output_0" })
            model.Graph.Output.Add(new ValueInfoProto
            {
                Name = name,
                Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float } },
            });
        using var session = new InferenceSession(model.ToByteArray(), Options());

        const int b = 2;
        var sample = RandomFloats(b * 4 * 16 * 16, 1);
        var hidden = RandomFloats(b * 7 * 64, 2);
        var text = RandomFloats(b * 32, 3);
        float[] timeIds = [1024, 768, 16, 32, 512, 384, 256, 256, 0, 0, 256, 256];
        var inputs = new (string, Array, int[])[]
        {
            ("sample", sample, [b, 4, 16, 16]), ("timestep", new float[] { 500, 500 }, [b]), ("encoder_hidden_states", hidden, [b, 7, 64]),
            ("text_embeds", text, [b, 32]), ("time_ids", timeIds, [b, 6]),
        };
        var aug = Run(session, "/add_embedding/linear_2/Gemm_output_0", inputs);
        Assert.That(aug, Has.Length.EqualTo(b * 128));

        var w = model.Graph.Initializer.ToDictionary(t => t.Name, t => ReadFloats(t, ""));
        var expected = new float[b * 128];
        for (int r = 0; r < b; r++)
        {
            // [text_embeds (32), emb(t0) (8), ..., emb(t5) (8)], emb = [cos(t·f), sin(t·f)] (flip_sin_to_cos), f_i = exp(-ln 10000 · i / 4).
            var x = new double[80];
            for (int i = 0; i < 32; i++) x[i] = text[r * 32 + i];
            for (int k = 0; k < 6; k++)
                for (int i = 0; i < 4; i++)
                {
                    // The argument rounded to float32 as the graph (and torch) computes it; at t = 1024 its rounding alone moves cos by 1e-4.
                    float f = (float)Math.Exp(-Math.Log(10000) * i / 4);
                    double arg = timeIds[r * 6 + k] * f;
                    x[32 + k * 8 + i] = Math.Cos(arg);
                    x[32 + k * 8 + 4 + i] = Math.Sin(arg);
                }
            var h = Linear(x, w["add_embedding.linear_1.weight"], w["add_embedding.linear_1.bias"], 128);
            for (int i = 0; i < h.Length; i++) h[i] = h[i] / (1 + Math.Exp(-h[i]));
            var y = Linear(h, w["add_embedding.linear_2.weight"], w["add_embedding.linear_2.bias"], 128);
            for (int i = 0; i < 128; i++) expected[r * 128 + i] = (float)y[i];
        }
        Assert.That(MaxAbsDiff(aug, expected), Is.LessThan(1e-4 * Math.Max(1, MaxAbs(expected))));
        Assert.That(MaxAbsDiff(aug.AsSpan(0, 128).ToArray(), aug.AsSpan(128, 128).ToArray()), Is.GreaterThan(1e-3), "rows with other ids differ");
    }

    private static double[] Linear(double[] x, float[] weight, float[] bias, int outFeatures)
    {
        int inFeatures = x.Length;
        var y = new double[outFeatures];
        for (int o = 0; o < outFeatures; o++)
        {
            double s = bias[o];
            for (int i = 0; i < inFeatures; i++) s += weight[o * inFeatures + i] * x[i];
            y[o] = s;
        }
        return y;
    }

    [Test]
    public void Sdxl_Inputs_Names_AndTwoTransformerLayersPerBlock()
    {
        var model = UNetBuilder.Create(Config, 3).Build();
        Assert.That(model.Graph.Input.Select(i => i.Name), Is.EqualTo(new[] { "sample", "timestep", "encoder_hidden_states", "text_embeds", "time_ids" }));
        var names = model.Graph.Node.Select(n => n.Name).ToHashSet();
        foreach (var block in new[] { "down_blocks.1/attentions.0", "down_blocks.1/attentions.1", "mid_block/attentions.0", "up_blocks.0/attentions.2" })
            foreach (var layer in new[] { 0, 1 })
                Assert.That(names, Does.Contain($"/{block}/transformer_blocks.{layer}/attn2/to_k/MatMul"), $"{block} layer {layer}");
        Assert.That(names, Does.Not.Contain("/down_blocks.1/attentions.0/transformer_blocks.2/attn1/to_q/MatMul"));
        // Linear projections (SD 2.x/XL), not 1x1 convolutions.
        Assert.That(names, Does.Contain("/down_blocks.1/attentions.0/proj_in/MatMul"));
        Assert.That(model.Graph.Initializer.Select(t => t.Name), Does.Contain("add_embedding.linear_1.weight").And.Contain("add_embedding.linear_2.bias"));
        Assert.That(model.Graph.Initializer.Single(t => t.Name == "add_embedding.linear_1.weight").Dims, Is.EqualTo(new long[] { 128, 80 }));
    }

    [Test]
    public void UNetConfig_RoundTripsTheSdxlKeys_AndRefusesUnknownAdditionTypes()
    {
        // Through text, as config.json is read.
        var json = System.Text.Json.Nodes.JsonNode.Parse(Config.ToJson().ToJsonString())!.AsObject();
        Assert.That((string?)json["addition_embed_type"], Is.EqualTo("text_time"));
        Assert.That((int?)json["addition_time_embed_dim"], Is.EqualTo(8));
        Assert.That((int?)json["projection_class_embeddings_input_dim"], Is.EqualTo(80));
        Assert.That(UNetConfig.FromJson(json), Is.EqualTo(Config).Using<UNetConfig>((a, b) => a.ToJson().ToJsonString() == b.ToJson().ToJsonString()));
        json["addition_embed_type"] = "image";
        Assert.That(() => UNetConfig.FromJson(json).Validate("unet/config.json"),
            Throws.TypeOf<Spm.Core.SpmFormatException>().With.Message.Contains("addition_embed_type").And.Message.Contains("image"));
    }
}
