using System.Text.Json.Nodes;
using Spm.Core;
using DataType = Spm.Diffusion.Onnx.Proto.TensorProto.Types.DataType;

namespace Spm.Shapes.Building;

/// <summary>Size of an SD VAE decoder (diffusers <c>AutoencoderKL</c>, decoder half).</summary>
public sealed record VaeDecoderConfig
{
    /// <summary>Latent channels (4).</summary>
    public int LatentChannels { get; init; } = 4;

    /// <summary>Image channels (3).</summary>
    public int OutChannels { get; init; } = 3;

    /// <summary>Channels per level, from full resolution up (SD: 128/256/512/512); each level but the last upsamples ×2.</summary>
    public IReadOnlyList<int> BlockOutChannels { get; init; } = [128, 256, 512, 512];

    /// <summary>Encoder resnets per level (the decoder has one more per up block).</summary>
    public int LayersPerBlock { get; init; } = 2;

    /// <summary>GroupNorm groups.</summary>
    public int NormNumGroups { get; init; } = 32;

    /// <summary>
    /// The factor latents are multiplied by after encoding (so the diffusion model sees roughly unit variance) and
    /// divided by before decoding; SD 1.x/2.x: 0.18215. Written to config.json as <c>scaling_factor</c>.
    /// </summary>
    public double ScalingFactor { get; init; } = 0.18215;

    /// <summary>The tiny fixture's decoder: 8/16/16/16 channels, 1 layer per block, 8 groups (×8 upsampling).</summary>
    public static VaeDecoderConfig Tiny => new() { BlockOutChannels = [8, 16, 16, 16], LayersPerBlock = 1, NormNumGroups = 8 };

    /// <summary>Checks the sizes, throwing <see cref="SpmFormatException"/> naming the field.</summary>
    public void Validate(string? source = null)
    {
        void Fail(string key, string detail) => throw new SpmFormatException(source, key, detail);
        if (BlockOutChannels.Count is 0 or > 8) Fail("block_out_channels", $"1 to 8 levels, got {BlockOutChannels.Count}");
        if (LatentChannels is <= 0 or > 64) Fail("latent_channels", $"out of range: {LatentChannels}");
        if (OutChannels is <= 0 or > 64) Fail("out_channels", $"out of range: {OutChannels}");
        if (LayersPerBlock is <= 0 or > 16) Fail("layers_per_block", $"out of range: {LayersPerBlock}");
        if (NormNumGroups <= 0) Fail("norm_num_groups", $"must be positive: {NormNumGroups}");
        if (!(ScalingFactor > 0) || double.IsInfinity(ScalingFactor)) Fail("scaling_factor", $"must be positive and finite: {ScalingFactor}");
        foreach (var ch in BlockOutChannels)
            if (ch <= 0 || ch > 8192 || ch % NormNumGroups != 0) Fail("block_out_channels", $"{ch} channels are not divisible into {NormNumGroups} groups");
    }

    /// <summary>The config as a diffusers <c>AutoencoderKL</c> config.json object.</summary>
    public JsonObject ToJson() => new()
    {
        ["_class_name"] = "AutoencoderKL",
        ["in_channels"] = OutChannels,
        ["out_channels"] = OutChannels,
        ["latent_channels"] = LatentChannels,
        ["block_out_channels"] = new JsonArray(BlockOutChannels.Select(c => (JsonNode)JsonValue.Create(c)!).ToArray()),
        ["up_block_types"] = new JsonArray(BlockOutChannels.Select(_ => (JsonNode)JsonValue.Create("UpDecoderBlock2D")!).ToArray()),
        ["layers_per_block"] = LayersPerBlock,
        ["norm_num_groups"] = NormNumGroups,
        ["act_fn"] = "silu",
        ["scaling_factor"] = ScalingFactor,
    };
}

/// <summary>
/// Builds the SD VAE decoder as ONNX with the exporter's names: <c>post_quant_conv</c>, <c>decoder.conv_in</c>,
/// <c>decoder.mid_block</c> (resnet, single-head attention <c>query/key/value/proj_attn</c>, resnet),
/// <c>decoder.up_blocks.N</c> (resnets and nearest-×2 upsamplers), <c>conv_norm_out</c>, <c>conv_out</c>.
/// Input <c>latent_sample</c> [B, 4, h, w] (already divided by the scaling factor); output <c>sample</c> [B, 3, 8h, 8w].
/// </summary>
public static class VaeDecoderBuilder
{
    private const float Eps = 1e-6f;

    /// <summary>Declares the decoder in a new <see cref="GraphBuilder"/>.</summary>
    public static GraphBuilder Create(VaeDecoderConfig c, ulong seed)
    {
        c.Validate();
        var g = new GraphBuilder("main_graph", seed);
        var z = g.Input("latent_sample", DataType.Float, "batch", c.LatentChannels, "height", "width");
        Emit(g, c, z, "sample");
        g.Output("sample", DataType.Float, "batch", c.OutChannels, "sample_height", "sample_width");
        return g;
    }

    /// <summary>
    /// Emits the decoder into <paramref name="g"/> reading latents <paramref name="z"/> [B, latent, h, w]; its last conv
    /// writes <paramref name="outputName"/> [B, 3, h·2^(levels−1), w·2^(levels−1)]. Used alone (the shipped decoder)
    /// and behind <see cref="VaeEncoderBuilder"/> (the autoencoder that is trained end to end).
    /// </summary>
    internal static void Emit(GraphBuilder g, VaeDecoderConfig c, string z, string outputName)
    {
        var h = g.Conv("post_quant_conv", z, c.LatentChannels, c.LatentChannels, 1);
        int n = c.BlockOutChannels.Count;
        long top = c.BlockOutChannels[^1];
        using (g.Scope("decoder"))
        {
            h = g.Conv("conv_in", h, c.LatentChannels, top, 3);
            using (g.Scope("mid_block"))
            {
                h = Resnet(g, c, "resnets.0", h, top, top);
                h = Attention(g, c, "attentions.0", h, top);
                h = Resnet(g, c, "resnets.1", h, top, top);
            }
            long prev = top;
            for (int i = 0; i < n; i++)
            {
                long outCh = c.BlockOutChannels[n - 1 - i];
                using var _ = g.Scope($"up_blocks.{i}");
                for (int j = 0; j <= c.LayersPerBlock; j++)
                    h = Resnet(g, c, $"resnets.{j}", h, j == 0 ? prev : outCh, outCh);
                if (i < n - 1)
                {
                    using (g.Scope("upsamplers.0"))
                    {
                        h = g.Node("Resize", [h, "", g.ConstFloat([1f, 1f, 2f, 2f], 4)],
                            Attr.String("coordinate_transformation_mode", "asymmetric"), Attr.Float("cubic_coeff_a", -0.75f),
                            Attr.String("mode", "nearest"), Attr.String("nearest_mode", "floor"));
                        h = g.Conv("conv", h, outCh, outCh, 3);
                    }
                }
                prev = outCh;
            }
            h = g.GroupNorm("conv_norm_out", h, c.BlockOutChannels[0], c.NormNumGroups, Eps);
            h = g.Silu("conv_act", h);
            g.Conv("conv_out", h, c.BlockOutChannels[0], c.OutChannels, 3, outputName: outputName);
        }
    }

    internal static string Resnet(GraphBuilder g, VaeDecoderConfig c, string module, string x, long inCh, long outCh)
    {
        using var _ = g.Scope(module);
        var h = g.GroupNorm("norm1", x, inCh, c.NormNumGroups, Eps);
        h = g.Silu("nonlinearity", h);
        h = g.Conv("conv1", h, inCh, outCh, 3);
        h = g.GroupNorm("norm2", h, outCh, c.NormNumGroups, Eps);
        h = g.Silu("nonlinearity_1", h);
        h = g.Conv("conv2", h, outCh, outCh, 3);
        var shortcut = inCh == outCh ? x : g.Conv("conv_shortcut", x, inCh, outCh, 1);
        return g.Node("Add", [shortcut, h]);
    }

    /// <summary>The decoder's single-head self-attention over all pixels, with a residual.</summary>
    internal static string Attention(GraphBuilder g, VaeDecoderConfig c, string module, string x, long ch)
    {
        using var _ = g.Scope(module);
        var shape = g.Node("Shape", [x]);
        var h = g.GroupNorm("group_norm", x, ch, c.NormNumGroups, Eps);
        h = g.Node("Reshape", [h, g.ConstInt64([0, ch, -1])], Attr.Int("allowzero", 0));
        h = g.Node("Transpose", [h], Attr.Ints("perm", 0, 2, 1));
        var q = g.Linear("query", h, ch, ch);
        var k = g.Linear("key", h, ch, ch);
        var v = g.Linear("value", h, ch, ch);
        var kT = g.Node("Transpose", [k], Attr.Ints("perm", 0, 2, 1));
        var o = g.Attend(q, kT, v, (float)(1.0 / Math.Sqrt(ch)));
        o = g.Linear("proj_attn", o, ch, ch);
        o = g.Node("Transpose", [o], Attr.Ints("perm", 0, 2, 1));
        o = g.Node("Reshape", [o, shape], Attr.Int("allowzero", 0));
        return g.Node("Add", [o, x]);
    }
}
