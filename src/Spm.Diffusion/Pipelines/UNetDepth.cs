using System.Text.Json;
using Spm.Core;
using Spm.Diffusion.Onnx;

namespace Spm.Diffusion.Pipelines;

/// <summary>How many times a UNet halves its latent, from its diffusers config or, failing that, from its graph.</summary>
internal static class UNetDepth
{
    /// <summary>Largest depth believed: beyond it the image-size multiple would overflow any real size.</summary>
    private const int MaxDepth = 10;

    /// <summary>
    /// From <c>unet/config.json</c>: diffusers gives every down block but the last a downsampler, so the depth is
    /// <c>len(down_block_types) - 1</c> (or <c>len(block_out_channels) - 1</c>); null when the config says neither.
    /// </summary>
    public static int? FromConfig(JsonElement config, string path)
    {
        foreach (var key in new[] { "down_block_types", "block_out_channels" })
        {
            if (!config.TryGetProperty(key, out var list) || list.ValueKind == JsonValueKind.Null) continue;
            if (list.ValueKind != JsonValueKind.Array || list.GetArrayLength() is < 1 or > MaxDepth + 1)
                throw new SpmFormatException(path, key, $"expected a list of 1 to {MaxDepth + 1} blocks, got {Excerpt(list)}.");
            return list.GetArrayLength() - 1;
        }
        return null;
    }

    /// <summary>
    /// From the UNet graph: the number of convolutions with a stride above 1 (an SD UNet's only strided
    /// convolutions are its downsamplers; upsampling is a Resize followed by a stride-1 convolution).
    /// </summary>
    public static int FromGraph(string unetPath)
    {
        var model = OnnxModel.Load(unetPath);
        int count = 0;
        foreach (var node in model.Graph.Node)
        {
            if (node.OpType != "Conv") continue;
            var strides = node.Attribute.FirstOrDefault(a => a.Name == "strides");
            if (strides is not null && strides.Ints.Any(s => s > 1)) count++;
        }
        if (count > MaxDepth) throw new SpmFormatException(unetPath, null, $"the UNet has {count} strided convolutions; at most {MaxDepth} down-sampling levels are supported.");
        return count;
    }

    private static string Excerpt(JsonElement e)
    {
        var raw = e.GetRawText();
        return raw.Length <= 60 ? raw : raw[..60] + "...";
    }
}
