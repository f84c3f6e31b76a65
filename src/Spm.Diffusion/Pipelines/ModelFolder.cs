using System.Text.Json;
using Spm.Core;
using Spm.Diffusion.Pipelines.Families;
using Spm.Diffusion.Schedulers;

namespace Spm.Diffusion.Pipelines;

/// <summary>
/// A diffusers/optimum ONNX Stable Diffusion folder: <c>model_index.json</c>, <c>scheduler/scheduler_config.json</c>,
/// <c>tokenizer/</c>, <c>text_encoder/model.onnx</c>, <c>unet/model.onnx</c> (+ external data), <c>vae_decoder/model.onnx</c>,
/// with the configuration the pipeline needs; an SDXL folder also has <c>tokenizer_2/</c> and <c>text_encoder_2/</c>.
/// Opening decides the <see cref="Family"/> and checks that every part is present; a missing or broken part, or a
/// pipeline class spm does not run, is an <see cref="SpmFormatException"/> naming the file.
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

    /// <summary>SDXL's second tokenizer folder (<c>tokenizer_2/</c>).</summary>
    public string Tokenizer2Folder => Path.Combine(Root, "tokenizer_2");

    /// <summary>SDXL's second text encoder (<c>text_encoder_2/model.onnx</c>).</summary>
    public string TextEncoder2Path => Path.Combine(Root, "text_encoder_2", "model.onnx");

    /// <summary>The model family (from <c>model_index.json</c>, see <see cref="ModelFamilies"/>).</summary>
    public ModelFamily Family { get; private set; }

    /// <summary><c>_class_name</c> of <c>model_index.json</c>, or null when it has none.</summary>
    public string? PipelineClassName { get; private set; }

    /// <summary>
    /// SDXL's <c>force_zeros_for_empty_prompt</c> (model_index.json, default true): an empty negative prompt gives
    /// all-zero embeddings instead of the encoding of "".
    /// </summary>
    public bool ForceZerosForEmptyPrompt { get; private set; } = true;

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

    /// <summary>Largest image side the pipeline accepts, in pixels.</summary>
    public const int MaxImageSide = 8192;

    /// <summary>
    /// How many times the UNet halves the latent on its way down (its down blocks that downsample; 3 for SD 1.x).
    /// Read from <c>unet/config.json</c> (<c>down_block_types</c>, else <c>block_out_channels</c>: every block but the
    /// last downsamples, as in diffusers), else counted from the UNet graph (its strided convolutions), read once on
    /// first use.
    /// </summary>
    public int UNetDownsampleCount => _unetDownsampleCount.Value;

    /// <summary>
    /// Latent sides must be a multiple of this (2^<see cref="UNetDownsampleCount"/>): the UNet's skip connections
    /// join each level's features with the upsampled ones of the level below, and an odd side at any level makes
    /// them differ by one (ONNX Runtime then fails in a Concat node).
    /// </summary>
    public int LatentSizeMultiple => 1 << UNetDownsampleCount;

    /// <summary>
    /// Image sides must be a multiple of this: <see cref="VaeScaleFactor"/> × <see cref="LatentSizeMultiple"/>
    /// (64 for SD 1.x, 16 for tiny-shapes and the tiny-sd1 fixture).
    /// </summary>
    public int ImageSizeMultiple => VaeScaleFactor * LatentSizeMultiple;

    /// <summary>Whether <paramref name="pixels"/> is a valid image side: a positive multiple of <see cref="ImageSizeMultiple"/> up to <see cref="MaxImageSide"/>.</summary>
    public bool IsValidImageSide(int pixels) => pixels >= ImageSizeMultiple && pixels <= MaxImageSide && pixels % ImageSizeMultiple == 0;

    /// <summary>
    /// Why <paramref name="pixels"/> cannot be an image side of this model, in words that name
    /// <paramref name="what"/> (e.g. "--width") and the nearest valid sides; null when it can.
    /// </summary>
    public string? DescribeInvalidImageSide(string what, int pixels)
    {
        ArgumentNullException.ThrowIfNull(what);
        if (IsValidImageSide(pixels)) return null;
        int m = ImageSizeMultiple;
        int max = MaxImageSide / m * m;
        var why = $"model '{Name}' needs multiples of {m}: the VAE scales by {VaeScaleFactor} and the UNet halves the latent {UNetDownsampleCount} time(s)";
        if (pixels < m) return $"{what} must be at least {m}, got {pixels} ({why}).";
        if (pixels > max) return $"{what} must be at most {max}, got {pixels} ({why}).";
        int below = pixels / m * m;
        return $"{what} must be a multiple of {m}, got {pixels} ({why}); try {below} or {below + m}.";
    }

    private Lazy<int> _unetDownsampleCount = new(() => 0);

    /// <summary>Opens and validates a model folder.</summary>
    /// <exception cref="SpmInputNotFoundException">The folder does not exist.</exception>
    /// <exception cref="SpmFormatException">One of its parts is missing or malformed.</exception>
    public static ModelFolder Open(string folder)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        var root = Path.GetFullPath(folder);
        if (!Directory.Exists(root)) throw new SpmInputNotFoundException(root, "model folder");
        var m = new ModelFolder(root);
        RequireFile(m.ModelIndexPath, "the pipeline index");
        using (var index = ParseJson(m.ModelIndexPath))
        {
            var r = index.RootElement;
            if (r.TryGetProperty("_class_name", out var cls) && cls.ValueKind != JsonValueKind.Null)
            {
                if (cls.ValueKind != JsonValueKind.String) throw new SpmFormatException(m.ModelIndexPath, "_class_name", "must be a string.");
                m.PipelineClassName = ReadString(cls, m.ModelIndexPath, "_class_name");
            }
            if (r.TryGetProperty("force_zeros_for_empty_prompt", out var fz) && fz.ValueKind != JsonValueKind.Null)
            {
                if (fz.ValueKind is not (JsonValueKind.True or JsonValueKind.False)) throw new SpmFormatException(m.ModelIndexPath, "force_zeros_for_empty_prompt", "must be true or false.");
                m.ForceZerosForEmptyPrompt = fz.GetBoolean();
            }
        }
        RequireFile(m.SchedulerConfigPath, "the scheduler configuration");
        if (!Directory.Exists(m.TokenizerFolder)) throw new SpmFormatException(m.TokenizerFolder, null, "tokenizer folder not found.");
        RequireFile(m.TextEncoderPath, "the text encoder");
        int? crossAttentionDim = null;
        RequireFile(m.UNetPath, "the UNet");
        RequireFile(m.VaeDecoderPath, "the VAE decoder");

        m.SchedulerConfig = SchedulerConfig.Load(m.SchedulerConfigPath);
        using (var doc = ParseJson(m.SchedulerConfigPath))
            m.SchedulerClassName = doc.RootElement.TryGetProperty("_class_name", out var cn) && cn.ValueKind == JsonValueKind.String ? ReadString(cn, m.SchedulerConfigPath, "_class_name") : null;
        var unetConfig = Path.Combine(root, "unet", "config.json");
        int? downsamples = null;
        if (File.Exists(unetConfig))
        {
            using var doc = ParseJson(unetConfig);
            if (doc.RootElement.TryGetProperty("sample_size", out var ss) && ss.ValueKind == JsonValueKind.Number)
            {
                if (!ss.TryGetInt32(out var v) || v < 1 || v > 4096) throw new SpmFormatException(unetConfig, "sample_size", $"invalid value {ss.GetRawText()}.");
                m.UNetSampleSize = v;
            }
            downsamples = UNetDepth.FromConfig(doc.RootElement, unetConfig);
            if (doc.RootElement.TryGetProperty("cross_attention_dim", out var cad) && cad.ValueKind == JsonValueKind.Number && cad.TryGetInt32(out var width))
                crossAttentionDim = width;
        }
        m.Family = ModelFamilies.FromPipelineClass(m.PipelineClassName, File.Exists(m.TextEncoder2Path), crossAttentionDim, m.ModelIndexPath);
        if (m.Family == ModelFamily.StableDiffusionXL)
        {
            if (!Directory.Exists(m.Tokenizer2Folder)) throw new SpmFormatException(m.Tokenizer2Folder, null, "SDXL's second tokenizer folder not found.");
            RequireFile(m.TextEncoder2Path, "SDXL's second text encoder");
        }
        var unetPath = m.UNetPath;
        m._unetDownsampleCount = downsamples is { } known ? new Lazy<int>(known) : new Lazy<int>(() => UNetDepth.FromGraph(unetPath));
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
