namespace Spm.Shapes.Building;

/// <summary>Named UNet sizes.</summary>
public static class UNetPresets
{
    /// <summary>
    /// The tiny fixture's UNet (shared/fixtures/tiny-sd1/unet/config.json): channels 32/64, DownBlock2D then
    /// CrossAttnDownBlock2D, 8 heads, cross-attention width 32 — about 1.5M parameters.
    /// </summary>
    public static UNetConfig TinySd1 => new()
    {
        SampleSize = 32,
        DownBlockTypes = ["DownBlock2D", "CrossAttnDownBlock2D"],
        UpBlockTypes = ["CrossAttnUpBlock2D", "UpBlock2D"],
        BlockOutChannels = [32, 64],
        LayersPerBlock = 2,
        CrossAttentionDim = 32,
        AttentionHeadDim = [8],
    };

    /// <summary>Stable Diffusion 1.x (1.4/1.5): 320/640/1280/1280 channels, 8 heads, width 768 — about 860M parameters.</summary>
    public static UNetConfig Sd15 => new();

    /// <summary>Stable Diffusion 2.x: linear projections, heads 5/10/20/20 (64-wide), cross-attention width 1024.</summary>
    public static UNetConfig Sd21 => new()
    {
        SampleSize = 96,
        AttentionHeadDim = [5, 10, 20, 20],
        CrossAttentionDim = 1024,
        UseLinearProjection = true,
    };

    /// <summary>
    /// A tiny SDXL-structured UNet (the sizes of diffusers' own SDXL test pipeline): channels 32/64, DownBlock2D then
    /// CrossAttnDownBlock2D, heads 2/4, linear projections, two transformer layers per block, cross-attention width
    /// 64 (two 32-wide encoders), text_time addition with 8-wide time-id embeddings and 32-wide pooled text.
    /// </summary>
    public static UNetConfig TinySdxl => new()
    {
        SampleSize = 32,
        DownBlockTypes = ["DownBlock2D", "CrossAttnDownBlock2D"],
        UpBlockTypes = ["CrossAttnUpBlock2D", "UpBlock2D"],
        BlockOutChannels = [32, 64],
        LayersPerBlock = 2,
        CrossAttentionDim = 64,
        AttentionHeadDim = [2, 4],
        UseLinearProjection = true,
        TransformerLayersPerBlock = [2],
        AdditionEmbedType = "text_time",
        AdditionTimeEmbedDim = 8,
        ProjectionClassEmbeddingsInputDim = 32 + 6 * 8,
    };

    /// <summary>
    /// Stable Diffusion XL base 1.0's UNet (its unet/config.json): 320/640/1280 channels, DownBlock2D then two
    /// CrossAttnDownBlock2D, transformer layers [1, 2, 10] (the mid block 10), heads 5/10/20 (64-wide), linear
    /// projections, cross-attention width 2048 (768 + 1280), text_time addition (256-wide time-id embeddings, 1280-wide
    /// pooled text: 2816 into add_embedding), sample size 128 — about 2.6B parameters, 10.3 GB of float32, so it is
    /// only ever written with external data.
    /// </summary>
    public static UNetConfig Sdxl => new()
    {
        SampleSize = 128,
        DownBlockTypes = ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        UpBlockTypes = ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        BlockOutChannels = [320, 640, 1280],
        LayersPerBlock = 2,
        CrossAttentionDim = 2048,
        AttentionHeadDim = [5, 10, 20],
        UseLinearProjection = true,
        TransformerLayersPerBlock = [1, 2, 10],
        AdditionEmbedType = "text_time",
        AdditionTimeEmbedDim = 256,
        ProjectionClassEmbeddingsInputDim = 2816,
    };

    /// <summary>The preset names understood by <see cref="Get"/>.</summary>
    public static IReadOnlyList<string> Names { get; } = ["tiny-sd1", "sd15", "sd21", "tiny-sdxl", "sdxl"];

    /// <summary>A preset by name (case-insensitive).</summary>
    /// <exception cref="ArgumentException">Unknown name; the message lists the known ones.</exception>
    public static UNetConfig Get(string name) => name.ToLowerInvariant() switch
    {
        "tiny-sd1" => TinySd1,
        "sd15" or "sd1" or "sd14" => Sd15,
        "sd21" or "sd2" => Sd21,
        "tiny-sdxl" or "sdxl-tiny" => TinySdxl,
        "sdxl" => Sdxl,
        _ => throw new ArgumentException($"Unknown UNet preset '{name}' (known: {string.Join(", ", Names)})."),
    };
}
