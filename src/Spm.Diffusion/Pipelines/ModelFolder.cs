using System.Text.Json;
using Spm.Core;
using Spm.Diffusion.Schedulers;

namespace Spm.Diffusion.Pipelines;

/// <summary>
/// A diffusers/optimum ONNX Stable Diffusion folder: <c>model_index.json</c>, <c>scheduler/scheduler_config.json</c>,
/// <c>tokenizer/</c>, <c>text_encoder/model.onnx</c>, <c>unet/model.onnx</c> (+ external data), <c>vae_decoder/model.onnx</c>,
/// with the configuration the pipeline needs. Opening checks that every part is present; a missing or broken
/// part is an <see cref="SpmFormatException"/> naming the file.
/// </summary>
public sealed class ModelFolder
{
    /// <summary>Scaling factor of the SD VAE latents when no VAE config says otherwise.</summary>
    public const double DefaultVaeScalingFactor = 0.18215;

    private ModelFolder(string root) => Root = root;

    /// <summary>The folder.</summary>
    public string Root { get; }

    /// <summary>The model's name for image metadata: the folder name.</summary>
    public string Name => Path.GetFileName(Root.TrimEnd(Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar));

    /// <summary><c>model_index.json</c>.</summary>
    public string ModelIndexPath => Path.Combine(Root, "model_index.json");

    /// <summary><c>scheduler/scheduler_config.json</c>.</summary>
    public string SchedulerConfigPath => Path.Combine(Root, "scheduler", "scheduler_config.json");

    /// <summary>The tokenizer folder (vocab.json, merges.txt, special_tokens_map.json).</summary>
    public string TokenizerFolder => Path.Combine(Root, "tokenizer");

    /// <summary><c>text_encoder/model.onnx</c>.</summary>
    public string TextEncoderPath => Path.Combine(Root, "text_encoder", "model.onnx");

    /// <summary><c>unet/model.onnx</c>.</summary>
    public string UNetPath => Path.Combine(Root, "unet", "model.onnx");

    /// <summary><c>vae_decoder/model.onnx</c>.</summary>
    public string VaeDecoderPath => Path.Combine(Root, "vae_decoder", "model.onnx");

    /// <summary>The scheduler configuration from <c>scheduler_config.json</c>.</summary>
    public SchedulerConfig SchedulerConfig { get; private set; } = new();

    /// <summary>The <c>_class_name</c> of the configured scheduler (e.g. <c>PNDMScheduler</c>), or null.</summary>
    public string? SchedulerClassName { get; private set; }

    /// <summary>The VAE latent scaling factor (<c>scaling_factor</c> of the VAE config, default 0.18215).</summary>
    public double VaeScalingFactor { get; private set; } = DefaultVaeScalingFactor;

    /// <summary>Pixels per latent cell (2^(number of VAE blocks - 1); 8 for SD).</summary>
    public int VaeScaleFactor { get; private set; } = 8;

    /// <summary>The UNet's native latent size (<c>sample_size</c> of <c>unet/config.json</c>, default 64).</summary>
    public int UNetSampleSize { get; private set; } = 64;

    /// <summary>The default image size in pixels: <see cref="UNetSampleSize"/> × <see cref="VaeScaleFactor"/>.</summary>
    public int DefaultImageSize => UNetSampleSize * VaeScaleFactor;

    /// <summary>Opens and validates a model folder.</summary>
    /// <exception cref="SpmFormatException">The folder or one of its parts is missing or malformed.</exception>
    public static ModelFolder Open(string folder)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        var root = Path.GetFullPath(folder);
        if (!Directory.Exists(root)) throw new SpmFormatException(root, null, "model folder not found.");
        var m = new ModelFolder(root);
        RequireFile(m.ModelIndexPath, "the pipeline index");
        ParseJson(m.ModelIndexPath);
        RequireFile(m.SchedulerConfigPath, "the scheduler configuration");
        if (!Directory.Exists(m.TokenizerFolder)) throw new SpmFormatException(m.TokenizerFolder, null, "tokenizer folder not found.");
        RequireFile(m.TextEncoderPath, "the text encoder");
        RequireFile(m.UNetPath, "the UNet");
        RequireFile(m.VaeDecoderPath, "the VAE decoder");

        m.SchedulerConfig = SchedulerConfig.Load(m.SchedulerConfigPath);
        using (var doc = ParseJson(m.SchedulerConfigPath))
            m.SchedulerClassName = doc.RootElement.TryGetProperty("_class_name", out var cn) && cn.ValueKind == JsonValueKind.String ? ReadString(cn, m.SchedulerConfigPath, "_class_name") : null;
        var unetConfig = Path.Combine(root, "unet", "config.json");
        if (File.Exists(unetConfig))
        {
            using var doc = ParseJson(unetConfig);
            if (doc.RootElement.TryGetProperty("sample_size", out var ss) && ss.ValueKind == JsonValueKind.Number)
            {
                if (!ss.TryGetInt32(out var v) || v < 1 || v > 4096) throw new SpmFormatException(unetConfig, "sample_size", $"invalid value {ss.GetRawText()}.");
                m.UNetSampleSize = v;
            }
        }
        // optimum exports put the VAE config beside the decoder; a full diffusers folder has vae/config.json.
        foreach (var vaeConfig in new[] { Path.Combine(root, "vae_decoder", "config.json"), Path.Combine(root, "vae", "config.json") })
        {
            if (!File.Exists(vaeConfig)) continue;
            using var doc = ParseJson(vaeConfig);
            var r = doc.RootElement;
            if (r.TryGetProperty("scaling_factor", out var sf) && sf.ValueKind == JsonValueKind.Number)
            {
                if (!sf.TryGetDouble(out var v) || !(v > 0) || double.IsInfinity(v)) throw new SpmFormatException(vaeConfig, "scaling_factor", $"invalid value {sf.GetRawText()}.");
                m.VaeScalingFactor = v;
            }
            if (r.TryGetProperty("block_out_channels", out var boc) && boc.ValueKind == JsonValueKind.Array && boc.GetArrayLength() is > 0 and < 12)
                m.VaeScaleFactor = 1 << (boc.GetArrayLength() - 1);
            break;
        }
        return m;
    }

    // JsonDocument checks a string's UTF-8 only when it is read: invalid bytes are a format error of the file.
    private static string? ReadString(JsonElement e, string path, string key)
    {
        try { return e.GetString(); }
        catch (InvalidOperationException ex) { throw new SpmFormatException(path, key, $"not a valid string: {ex.Message}", ex); }
    }

    private static void RequireFile(string path, string what)
    {
        if (!File.Exists(path)) throw new SpmFormatException(path, null, $"{what} is missing.");
    }

    internal static JsonDocument ParseJson(string path)
    {
        try
        {
            var info = new FileInfo(path);
            // Config files are small; refuse anything absurd before reading it into memory.
            if (info.Length > 16 << 20) throw new SpmFormatException(path, null, $"config file is {info.Length} bytes; at most 16 MiB expected.");
            var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
            {
                doc.Dispose();
                throw new SpmFormatException(path, null, "expected a JSON object.");
            }
            return doc;
        }
        catch (JsonException ex)
        {
            throw new SpmFormatException(path, null, $"invalid JSON: {ex.Message}", ex);
        }
    }
}
