using System.Text.Json;
using System.Text.Json.Nodes;
using Spm.Core;

namespace Spm.Shapes.Building;

/// <summary>
/// The subset of diffusers' <c>UNet2DConditionModel</c> config (unet/config.json) that SD 1.x/2.x use.
/// Note diffusers' historical quirk, kept here: <see cref="AttentionHeadDim"/> is the number of heads per
/// block (SD 1.x: 8), the head width being channels / heads.
/// </summary>
public sealed record UNetConfig
{
    /// <summary>Latent size the model was trained at (pixels / 8).</summary>
    public int SampleSize { get; init; } = 64;

    /// <summary>Latent channels in.</summary>
    public int InChannels { get; init; } = 4;

    /// <summary>Latent channels out.</summary>
    public int OutChannels { get; init; } = 4;

    /// <summary>Whether the sinusoidal timestep embedding is ordered (cos, sin).</summary>
    public bool FlipSinToCos { get; init; } = true;

    /// <summary>The frequency shift of the timestep embedding.</summary>
    public int FreqShift { get; init; }

    /// <summary>Down block types: <c>CrossAttnDownBlock2D</c> or <c>DownBlock2D</c>.</summary>
    public IReadOnlyList<string> DownBlockTypes { get; init; } = ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"];

    /// <summary>Up block types: <c>CrossAttnUpBlock2D</c> or <c>UpBlock2D</c>.</summary>
    public IReadOnlyList<string> UpBlockTypes { get; init; } = ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"];

    /// <summary>Channels of each resolution level.</summary>
    public IReadOnlyList<int> BlockOutChannels { get; init; } = [320, 640, 1280, 1280];

    /// <summary>Resnets per down block (up blocks have one more).</summary>
    public int LayersPerBlock { get; init; } = 2;

    /// <summary>Padding of the stride-2 downsampling convs.</summary>
    public int DownsamplePadding { get; init; } = 1;

    /// <summary>GroupNorm groups.</summary>
    public int NormNumGroups { get; init; } = 32;

    /// <summary>GroupNorm epsilon of resnets and the output norm.</summary>
    public float NormEps { get; init; } = 1e-5f;

    /// <summary>Width of the text embeddings (encoder_hidden_states' last axis).</summary>
    public int CrossAttentionDim { get; init; } = 768;

    /// <summary>Heads per block (one value per down block; a single value applies to all).</summary>
    public IReadOnlyList<int> AttentionHeadDim { get; init; } = [8];

    /// <summary>Linear proj_in/proj_out (SD 2.x) instead of 1x1 convs (SD 1.x).</summary>
    public bool UseLinearProjection { get; init; }

    /// <summary>Kernel of conv_in.</summary>
    public int ConvInKernel { get; init; } = 3;

    /// <summary>Kernel of conv_out.</summary>
    public int ConvOutKernel { get; init; } = 3;

    /// <summary>
    /// <c>transformer_layers_per_block</c>: BasicTransformerBlocks in each Transformer2DModel, one value per down block
    /// or a single value for all (SD 1.x/2.x: 1; SDXL base: [1, 2, 10]). As in diffusers, the mid block uses the last
    /// entry and up block i the entry of down block n-1-i; config.json may hold an int or a list, both are read and the
    /// form is kept when written (one value is written as an int).
    /// </summary>
    public IReadOnlyList<int> TransformerLayersPerBlock { get; init; } = [1];

    /// <summary>
    /// <c>addition_embed_type</c>: null (SD 1.x/2.x) or <c>text_time</c> (SDXL: the UNet also takes <c>text_embeds</c>
    /// [B, P] and <c>time_ids</c> [B, 6], whose embedding is added to the timestep embedding).
    /// </summary>
    public string? AdditionEmbedType { get; init; }

    /// <summary><c>addition_time_embed_dim</c>: width of the sinusoidal embedding of each of the six time ids (SDXL: 256).</summary>
    public int AdditionTimeEmbedDim { get; init; } = 256;

    /// <summary>
    /// <c>projection_class_embeddings_input_dim</c>: input width of <c>add_embedding</c>, the pooled text width plus
    /// 6 × <see cref="AdditionTimeEmbedDim"/> (SDXL: 1280 + 1536 = 2816).
    /// </summary>
    public int? ProjectionClassEmbeddingsInputDim { get; init; }

    /// <summary>Whether this is an SDXL-style UNet (<c>addition_embed_type: text_time</c>).</summary>
    public bool HasTextTimeEmbedding => AdditionEmbedType == "text_time";

    /// <summary>Width of the pooled text embedding <c>text_embeds</c> of a text-time UNet (0 otherwise).</summary>
    public int TextEmbedsDim => HasTextTimeEmbedding ? (ProjectionClassEmbeddingsInputDim ?? 0) - 6 * AdditionTimeEmbedDim : 0;

    /// <summary>Heads of the given down block (the mid block uses the last block's value).</summary>
    public int HeadsOf(int block) => AttentionHeadDim.Count == 1 ? AttentionHeadDim[0] : AttentionHeadDim[block];

    /// <summary>Transformer layers of each Transformer2DModel of the given down block (the mid block uses the last block's value).</summary>
    public int TransformerLayersOf(int block) => TransformerLayersPerBlock.Count == 1 ? TransformerLayersPerBlock[0] : TransformerLayersPerBlock[block];

    /// <summary>Checks the configuration, throwing <see cref="SpmFormatException"/> naming the offending field.</summary>
    public void Validate(string? source = null)
    {
        void Fail(string key, string detail) => throw new SpmFormatException(source, key, detail);
        int n = BlockOutChannels.Count;
        if (n == 0) Fail("block_out_channels", "at least one block is needed");
        if (DownBlockTypes.Count != n) Fail("down_block_types", $"{DownBlockTypes.Count} down blocks for {n} block_out_channels");
        if (UpBlockTypes.Count != n) Fail("up_block_types", $"{UpBlockTypes.Count} up blocks for {n} block_out_channels");
        if (AttentionHeadDim.Count != 1 && AttentionHeadDim.Count != n) Fail("attention_head_dim", $"{AttentionHeadDim.Count} values for {n} blocks");
        foreach (var t in DownBlockTypes)
            if (t is not ("CrossAttnDownBlock2D" or "DownBlock2D")) Fail("down_block_types", $"unsupported block type '{t}'");
        foreach (var t in UpBlockTypes)
            if (t is not ("CrossAttnUpBlock2D" or "UpBlock2D")) Fail("up_block_types", $"unsupported block type '{t}'");
        if (InChannels is <= 0 or > 1024) Fail("in_channels", $"out of range: {InChannels}");
        if (OutChannels is <= 0 or > 1024) Fail("out_channels", $"out of range: {OutChannels}");
        if (LayersPerBlock is <= 0 or > 16) Fail("layers_per_block", $"out of range: {LayersPerBlock}");
        if (TransformerLayersPerBlock.Count != 1 && TransformerLayersPerBlock.Count != n)
            Fail("transformer_layers_per_block", $"{TransformerLayersPerBlock.Count} values for {n} blocks (give one value or one per down block)");
        foreach (var layers in TransformerLayersPerBlock)
            if (layers is <= 0 or > 64) Fail("transformer_layers_per_block", $"out of range: {layers} (1 to 64)");
        if (CrossAttentionDim is <= 0 or > 16384) Fail("cross_attention_dim", $"out of range: {CrossAttentionDim}");
        if (ConvInKernel is <= 0 or > 7 || ConvInKernel % 2 == 0) Fail("conv_in_kernel", $"must be odd and at most 7: {ConvInKernel}");
        if (ConvOutKernel is <= 0 or > 7 || ConvOutKernel % 2 == 0) Fail("conv_out_kernel", $"must be odd and at most 7: {ConvOutKernel}");
        if (NormNumGroups <= 0) Fail("norm_num_groups", $"must be positive: {NormNumGroups}");
        if (AdditionEmbedType is not (null or "text_time")) Fail("addition_embed_type", $"unsupported value '{AdditionEmbedType}' (only text_time)");
        if (HasTextTimeEmbedding)
        {
            if (AdditionTimeEmbedDim is <= 0 or > 4096 || AdditionTimeEmbedDim % 2 != 0) Fail("addition_time_embed_dim", $"must be even, 2 to 4096: {AdditionTimeEmbedDim}");
            if (ProjectionClassEmbeddingsInputDim is null) Fail("projection_class_embeddings_input_dim", "needed with addition_embed_type text_time");
            if (TextEmbedsDim is <= 0 or > 16384) Fail("projection_class_embeddings_input_dim", $"{ProjectionClassEmbeddingsInputDim} leaves {TextEmbedsDim} for text_embeds after 6 time ids of {AdditionTimeEmbedDim}");
        }
        if (BlockOutChannels[0] % 2 != 0) Fail("block_out_channels", "the first block's channels (timestep embedding width) must be even");
        for (int i = 0; i < n; i++)
        {
            int c = BlockOutChannels[i];
            if (c is <= 0 or > 8192) Fail("block_out_channels", $"out of range: {c}");
            if (c % NormNumGroups != 0) Fail("block_out_channels", $"{c} channels are not divisible into {NormNumGroups} groups");
            int heads = HeadsOf(i);
            if (heads <= 0 || c % heads != 0) Fail("attention_head_dim", $"{c} channels are not divisible into {heads} heads");
        }
    }

    /// <summary>Reads a diffusers unet config.json.</summary>
    /// <exception cref="SpmFormatException">Malformed JSON, a field of the wrong type, or an unsupported architecture option.</exception>
    public static UNetConfig Load(string path)
    {
        JsonNode? root;
        try
        {
            var info = new FileInfo(path);
            if (info.Exists && info.Length > 1 << 20) throw new SpmFormatException(path, null, "config file larger than 1 MB");
            root = JsonNode.Parse(File.ReadAllText(path));
        }
        catch (JsonException ex)
        {
            throw new SpmFormatException(path, null, $"not valid JSON: {ex.Message}", ex);
        }
        if (root is not JsonObject o) throw new SpmFormatException(path, null, "the config must be a JSON object");
        var c = FromJson(o, path);
        c.Validate(path);
        return c;
    }

    /// <summary>Builds a config from a parsed diffusers config object (missing fields keep SD 1.5 defaults).</summary>
    public static UNetConfig FromJson(JsonObject o, string? source = null)
    {
        var d = new UNetConfig();
        try
        {
            foreach (var key in new[] { "only_cross_attention", "dual_cross_attention" })
                if (o[key] is JsonValue v && v.GetValueKind() == JsonValueKind.True)
                    throw new SpmFormatException(source, key, "unsupported: only false is implemented");
            CheckString(o, "resnet_time_scale_shift", "default", source);
            CheckString(o, "time_embedding_type", "positional", source);
            CheckString(o, "mid_block_type", "UNetMidBlock2DCrossAttn", source);
            var addType = o["addition_embed_type"] is JsonValue at && at.GetValueKind() == JsonValueKind.String ? at.GetValue<string>() : null;
            if (o["class_embed_type"] is JsonValue ce && ce.GetValueKind() != JsonValueKind.Null)
                throw new SpmFormatException(source, "class_embed_type", "class embeddings are not supported");
            return d with
            {
                SampleSize = Int(o, "sample_size", d.SampleSize),
                InChannels = Int(o, "in_channels", d.InChannels),
                OutChannels = Int(o, "out_channels", d.OutChannels),
                FlipSinToCos = Bool(o, "flip_sin_to_cos", d.FlipSinToCos),
                FreqShift = Int(o, "freq_shift", d.FreqShift),
                DownBlockTypes = Strings(o, "down_block_types") ?? d.DownBlockTypes,
                UpBlockTypes = Strings(o, "up_block_types") ?? d.UpBlockTypes,
                BlockOutChannels = Ints(o, "block_out_channels") ?? d.BlockOutChannels,
                LayersPerBlock = Int(o, "layers_per_block", d.LayersPerBlock),
                DownsamplePadding = Int(o, "downsample_padding", d.DownsamplePadding),
                NormNumGroups = Int(o, "norm_num_groups", d.NormNumGroups),
                NormEps = (float)Double(o, "norm_eps", d.NormEps),
                CrossAttentionDim = Int(o, "cross_attention_dim", d.CrossAttentionDim),
                AttentionHeadDim = Ints(o, "attention_head_dim") ?? d.AttentionHeadDim,
                UseLinearProjection = Bool(o, "use_linear_projection", d.UseLinearProjection),
                ConvInKernel = Int(o, "conv_in_kernel", d.ConvInKernel),
                ConvOutKernel = Int(o, "conv_out_kernel", d.ConvOutKernel),
                TransformerLayersPerBlock = Ints(o, "transformer_layers_per_block") ?? d.TransformerLayersPerBlock,
                AdditionEmbedType = addType,
                AdditionTimeEmbedDim = o["addition_time_embed_dim"] is JsonValue { } atd && atd.GetValueKind() == JsonValueKind.Number ? atd.GetValue<int>() : d.AdditionTimeEmbedDim,
                ProjectionClassEmbeddingsInputDim = o["projection_class_embeddings_input_dim"] is JsonValue { } pc && pc.GetValueKind() == JsonValueKind.Number ? pc.GetValue<int>() : null,
            };
        }
        catch (Exception ex) when (ex is InvalidOperationException or FormatException)
        {
            throw new SpmFormatException(source, null, $"a field has the wrong type: {ex.Message}", ex);
        }
        catch (ArgumentException ex)
        {
            // JsonObject builds its dictionary on first access: a key written twice surfaces here.
            throw new SpmFormatException(source, null, $"a key appears twice: {ex.Message}", ex);
        }
    }

    /// <summary>Writes this config as a diffusers unet config.json object.</summary>
    public JsonObject ToJson()
    {
        var o = new JsonObject
        {
        ["_class_name"] = "UNet2DConditionModel",
        ["sample_size"] = SampleSize,
        ["in_channels"] = InChannels,
        ["out_channels"] = OutChannels,
        ["center_input_sample"] = false,
        ["flip_sin_to_cos"] = FlipSinToCos,
        ["freq_shift"] = FreqShift,
        ["down_block_types"] = new JsonArray(DownBlockTypes.Select(s => (JsonNode)JsonValue.Create(s)!).ToArray()),
        ["mid_block_type"] = "UNetMidBlock2DCrossAttn",
        ["up_block_types"] = new JsonArray(UpBlockTypes.Select(s => (JsonNode)JsonValue.Create(s)!).ToArray()),
        ["only_cross_attention"] = false,
        ["block_out_channels"] = new JsonArray(BlockOutChannels.Select(s => (JsonNode)JsonValue.Create(s)!).ToArray()),
        ["layers_per_block"] = LayersPerBlock,
        ["downsample_padding"] = DownsamplePadding,
        ["mid_block_scale_factor"] = 1,
        ["act_fn"] = "silu",
        ["norm_num_groups"] = NormNumGroups,
        ["norm_eps"] = NormEps,
        ["cross_attention_dim"] = CrossAttentionDim,
        ["attention_head_dim"] = AttentionHeadDim.Count == 1 ? JsonValue.Create(AttentionHeadDim[0]) : new JsonArray(AttentionHeadDim.Select(s => (JsonNode)JsonValue.Create(s)!).ToArray()),
        ["dual_cross_attention"] = false,
        ["use_linear_projection"] = UseLinearProjection,
        ["class_embed_type"] = null,
        ["resnet_time_scale_shift"] = "default",
        ["time_embedding_type"] = "positional",
        ["conv_in_kernel"] = ConvInKernel,
        ["conv_out_kernel"] = ConvOutKernel,
        ["transformer_layers_per_block"] = TransformerLayersPerBlock.Count == 1 ? JsonValue.Create(TransformerLayersPerBlock[0]) : new JsonArray(TransformerLayersPerBlock.Select(s => (JsonNode)JsonValue.Create(s)!).ToArray()),
        ["addition_embed_type"] = AdditionEmbedType,
        ["projection_class_embeddings_input_dim"] = ProjectionClassEmbeddingsInputDim,
        };
        if (HasTextTimeEmbedding)
        {
            o["addition_time_embed_dim"] = AdditionTimeEmbedDim;
            o["addition_embed_type_num_heads"] = 64;
        }
        return o;
    }

    private static void CheckString(JsonObject o, string key, string expected, string? source)
    {
        if (o[key] is JsonValue v && v.GetValueKind() == JsonValueKind.String && v.GetValue<string>() != expected)
            throw new SpmFormatException(source, key, $"unsupported value '{v.GetValue<string>()}' (only '{expected}')");
    }

    internal static int Int(JsonObject o, string key, int fallback) => Value(o, key, JsonValueKind.Number) is { } v ? v.GetValue<int>() : fallback;

    internal static double Double(JsonObject o, string key, double fallback) => Value(o, key, JsonValueKind.Number) is { } v ? v.GetValue<double>() : fallback;

    internal static bool Bool(JsonObject o, string key, bool fallback)
    {
        var node = o[key];
        if (node is null) return fallback;
        if (node is JsonValue v && v.GetValueKind() is JsonValueKind.True or JsonValueKind.False) return v.GetValue<bool>();
        throw new FormatException($"'{key}' must be true or false");
    }

    internal static IReadOnlyList<string>? Strings(JsonObject o, string key) => o[key] switch
    {
        null => null,
        JsonArray a => a.Select(x => x is JsonValue v && v.GetValueKind() == JsonValueKind.String ? v.GetValue<string>() : throw new FormatException($"'{key}' must be a list of strings")).ToArray(),
        _ => throw new FormatException($"'{key}' must be a list of strings"),
    };

    internal static IReadOnlyList<int>? Ints(JsonObject o, string key) => o[key] switch
    {
        null => null,
        JsonArray a => a.Select(x => x is JsonValue v && v.GetValueKind() == JsonValueKind.Number ? v.GetValue<int>() : throw new FormatException($"'{key}' must be a list of integers")).ToArray(),
        JsonValue v when v.GetValueKind() == JsonValueKind.Number => [v.GetValue<int>()],
        _ => throw new FormatException($"'{key}' must be an integer or a list of integers"),
    };

    private static JsonValue? Value(JsonObject o, string key, JsonValueKind kind)
    {
        var node = o[key];
        if (node is null) return null;
        if (node is JsonValue v && v.GetValueKind() == kind) return v;
        throw new FormatException($"'{key}' must be a {kind.ToString().ToLowerInvariant()}");
    }
}
