using System.Text.Json;
using System.Text.Json.Nodes;
using Spm.Core;
using Spm.Core.IO;

namespace Spm.Shapes.Building;

/// <summary>The networks of a text-to-image pipeline, sized consistently.</summary>
/// <param name="Name">Preset name (recorded in the models' metadata).</param>
/// <param name="UNet">The UNet.</param>
/// <param name="TextEncoder">The text encoder; its width must equal the UNet's cross-attention width (SDXL: with the second's).</param>
/// <param name="VaeDecoder">The VAE decoder; its latent channels must equal the UNet's channels.</param>
public sealed record PipelinePreset(string Name, UNetConfig UNet, ClipTextConfig TextEncoder, VaeDecoderConfig VaeDecoder)
{
    /// <summary>
    /// SDXL's second text encoder (<c>text_encoder_2/</c>, with projection); set for a UNet with
    /// <see cref="UNetConfig.HasTextTimeEmbedding"/>, null otherwise.
    /// </summary>
    public ClipTextConfig? TextEncoder2 { get; init; }

    /// <summary>Whether this is an SDXL pipeline (two encoders, pooled text and time ids).</summary>
    public bool IsSdxl => UNet.HasTextTimeEmbedding;

    /// <summary>Checks each network and that they fit together, naming the first mismatch.</summary>
    public void Validate()
    {
        UNet.Validate("unet");
        TextEncoder.Validate("text_encoder");
        VaeDecoder.Validate("vae_decoder");
        if (IsSdxl || TextEncoder2 is not null)
        {
            if (TextEncoder2 is null || !IsSdxl)
                throw new SpmMismatchException("An SDXL pipeline needs both a text-time UNet (addition_embed_type text_time) and a second text encoder.", TextEncoder2 is null ? "text_encoder_2" : "unet");
            TextEncoder2.Validate("text_encoder_2");
            if (!TextEncoder.OutputHiddenStates || !TextEncoder2.OutputHiddenStates)
                throw new SpmMismatchException("SDXL's text encoders must output their hidden states (the UNet reads the penultimate ones).", TextEncoder.OutputHiddenStates ? "text_encoder_2" : "text_encoder");
            if (TextEncoder.Width + TextEncoder2.Width != UNet.CrossAttentionDim)
                throw new SpmMismatchException($"The text encoders' widths {TextEncoder.Width} + {TextEncoder2.Width} differ from the UNet's cross_attention_dim {UNet.CrossAttentionDim}.", "text_encoder");
            if (TextEncoder2.ProjectionDim != UNet.TextEmbedsDim)
                throw new SpmMismatchException($"text_encoder_2's projection_dim {TextEncoder2.ProjectionDim?.ToString() ?? "(none)"} differs from the UNet's text_embeds width {UNet.TextEmbedsDim}.", "text_encoder_2");
        }
        else if (TextEncoder.Width != UNet.CrossAttentionDim)
            throw new SpmMismatchException($"The text encoder's width {TextEncoder.Width} differs from the UNet's cross_attention_dim {UNet.CrossAttentionDim}.", "text_encoder");
        if (VaeDecoder.LatentChannels != UNet.OutChannels || UNet.InChannels != UNet.OutChannels)
            throw new SpmMismatchException($"The VAE's latent channels {VaeDecoder.LatentChannels} differ from the UNet's in/out channels {UNet.InChannels}/{UNet.OutChannels}.", "vae_decoder");
    }
}

/// <summary>Named pipeline sizes.</summary>
public static class PipelinePresets
{
    /// <summary>The tiny fixture's sizes (UNet 32/64, text width 32 with 2 layers, VAE 8/16/16/16).</summary>
    public static PipelinePreset TinySd1 => new("tiny-sd1", UNetPresets.TinySd1, ClipTextConfig.Tiny, VaeDecoderConfig.Tiny);

    /// <summary>Stable Diffusion 1.5 sizes (UNet 860M, CLIP ViT-L text encoder 123M, VAE decoder 49M).</summary>
    public static PipelinePreset Sd15 => new("sd15", UNetPresets.Sd15, new ClipTextConfig(), new VaeDecoderConfig());

    /// <summary>Stable Diffusion 2.1 sizes (OpenCLIP ViT-H text encoder: width 1024, 23 layers, gelu).</summary>
    public static PipelinePreset Sd21 => new("sd21", UNetPresets.Sd21,
        new ClipTextConfig { Width = 1024, Layers = 23, Heads = 16, IntermediateSize = 4096, Activation = "gelu" }, new VaeDecoderConfig());

    /// <summary>
    /// A tiny SDXL-structured pipeline: <see cref="UNetPresets.TinySdxl"/>, a 32-wide 2-layer CLIP encoder and a 32-wide
    /// 3-layer OpenCLIP-style one (gelu, projection to 32), both with hidden-state outputs, and the tiny VAE decoder
    /// with SDXL's latent scaling 0.13025.
    /// </summary>
    public static PipelinePreset TinySdxl => new("tiny-sdxl", UNetPresets.TinySdxl,
        ClipTextConfig.Tiny with { OutputHiddenStates = true }, VaeDecoderConfig.Tiny with { ScalingFactor = 0.13025 })
    {
        TextEncoder2 = ClipTextConfig.Tiny with { Layers = 3, Activation = "gelu", ProjectionDim = 32, OutputHiddenStates = true },
    };

    /// <summary>
    /// Stable Diffusion XL base 1.0 sizes: <see cref="UNetPresets.Sdxl"/> (2.6B), CLIP ViT-L (768 wide, 12 layers,
    /// quick_gelu) and OpenCLIP bigG (1280 wide, 32 layers, 20 heads, MLP 5120, gelu, projection 1280), both with
    /// hidden-state outputs, and the SD VAE decoder with SDXL's latent scaling 0.13025. Random weights, for benchmarks;
    /// <c>spm bench injection --preset sdxl</c> builds only its UNet.
    /// </summary>
    public static PipelinePreset Sdxl => new("sdxl", UNetPresets.Sdxl,
        new ClipTextConfig { OutputHiddenStates = true }, new VaeDecoderConfig { ScalingFactor = 0.13025 })
    {
        TextEncoder2 = new ClipTextConfig
        {
            Width = 1280, Layers = 32, Heads = 20, IntermediateSize = 5120, Activation = "gelu", ProjectionDim = 1280, OutputHiddenStates = true,
        },
    };

    /// <summary>The names <see cref="Get"/> knows.</summary>
    public static IReadOnlyList<string> Names { get; } = ["tiny-sd1", "sd15", "sd21", "tiny-sdxl", "sdxl"];

    /// <summary>A preset by name (case-insensitive).</summary>
    /// <exception cref="ArgumentException">Unknown name; the message lists the known ones.</exception>
    public static PipelinePreset Get(string name) => name.ToLowerInvariant() switch
    {
        "tiny-sd1" => TinySd1,
        "sd15" or "sd1" or "sd14" => Sd15,
        "sd21" or "sd2" => Sd21,
        "tiny-sdxl" or "sdxl-tiny" => TinySdxl,
        "sdxl" => Sdxl,
        _ => throw new ArgumentException($"Unknown model preset '{name}' (known: {string.Join(", ", Names)})."),
    };
}

/// <summary>Options of <see cref="PipelineWriter.Write"/>.</summary>
public sealed record PipelineWriteOptions
{
    /// <summary>Folder with the CLIP tokenizer's <c>vocab.json</c> and <c>merges.txt</c> (copied into <c>tokenizer/</c>).</summary>
    public required string TokenizerFolder { get; init; }

    /// <summary>
    /// Whether the UNet's weights go to <c>unet/weights.pb</c> (as in the fixture and in large exports).
    /// Null: only when the UNet's weights exceed 64 MB. Models over protobuf's 2 GB limit always use it.
    /// </summary>
    public bool? UNetExternalData { get; init; }

    /// <summary>Replace an existing folder (it is swapped out only after the new one is complete).</summary>
    public bool Overwrite { get; init; }

    /// <summary>Write only the <c>unet/</c> folder (for benchmarks).</summary>
    public bool UNetOnly { get; init; }

    /// <summary>
    /// Called with each component's name (<c>unet</c>, <c>text_encoder</c>, <c>vae_decoder</c>) and its declared graph
    /// before it is written, e.g. to load trained weights with <see cref="GraphBuilder.SetInitializer"/>.
    /// </summary>
    public Action<string, GraphBuilder>? Customize { get; init; }

    /// <summary>
    /// A VAE encoder to ship as <c>vae_encoder/</c> (<see cref="VaeEncoderBuilder.CreatePipelineEncoder"/>, weights set), or
    /// null for none: diffusers' ONNX pipelines carry one for image-to-image; the project's builds use it to continue
    /// from a pipeline with the encoder its UNet was trained on.
    /// </summary>
    public GraphBuilder? VaeEncoder { get; init; }

    /// <summary>
    /// A pipeline folder whose sampling choices the written one keeps: its scheduler (<c>scheduler/scheduler_config.json</c>
    /// and the scheduler entry of <c>model_index.json</c>) and the project's <c>spm_generate_defaults.json</c> and
    /// <c>spm_train_defaults.json</c>, each when it has one. A model continued from a shipped one then samples as its base
    /// did; null writes the preset's scheduler and no defaults files.
    /// </summary>
    public string? SamplingFrom { get; init; }
}

/// <summary>Progress of a pipeline write.</summary>
/// <param name="Component">The folder being written (unet, text_encoder, ...).</param>
/// <param name="Fraction">Overall fraction done, 0..1, by weight bytes.</param>
public readonly record struct PipelineWriteProgress(string Component, double Fraction);

/// <summary>
/// Writes a complete pipeline folder in the diffusers/optimum ONNX layout that <c>spm generate</c> loads:
/// <c>model_index.json</c>, <c>scheduler/scheduler_config.json</c> (SD 1.x PNDM), <c>tokenizer/</c>,
/// <c>text_encoder/model.onnx</c>, <c>unet/model.onnx</c> (+ <c>weights.pb</c>) with <c>config.json</c>, and
/// <c>vae_decoder/model.onnx</c>. The folder is assembled beside the target and moved into place at the end,
/// so a failure or cancellation leaves any previous folder untouched.
/// </summary>
public static class PipelineWriter
{
    private const long AutoExternalBytes = 64L << 20;

    /// <summary>Writes <paramref name="preset"/> with weights drawn from <paramref name="seed"/> into <paramref name="folder"/>.</summary>
    /// <exception cref="SpmException">The folder exists (without <see cref="PipelineWriteOptions.Overwrite"/>), the tokenizer files are missing, or the sizes do not fit together.</exception>
    public static void Write(string folder, PipelinePreset preset, ulong seed, PipelineWriteOptions options,
        IProgress<PipelineWriteProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        preset.Validate();
        var target = Path.GetFullPath(folder);
        if (File.Exists(target)) throw new SpmException($"'{folder}' is a file, not a folder.");
        if (Directory.Exists(target) && Directory.EnumerateFileSystemEntries(target).Any() && !options.Overwrite)
            throw new SpmException($"'{folder}' already exists and is not empty (use --force to replace it).");
        string vocab = Path.Combine(options.TokenizerFolder, "vocab.json"), merges = Path.Combine(options.TokenizerFolder, "merges.txt");
        if (!options.UNetOnly && (!File.Exists(vocab) || !File.Exists(merges)))
            throw new SpmException($"The tokenizer folder '{options.TokenizerFolder}' needs vocab.json and merges.txt.");

        var metadata = new Dictionary<string, string> { ["spm.preset"] = preset.Name, ["spm.seed"] = seed.ToString(System.Globalization.CultureInfo.InvariantCulture) };
        var unet = UNetBuilder.Create(preset.UNet, seed);
        var text = options.UNetOnly ? null : ClipTextEncoderBuilder.Create(preset.TextEncoder, seed);
        // The second encoder draws from its own seed stream: its tensor names equal the first's.
        var text2 = options.UNetOnly || preset.TextEncoder2 is null ? null : ClipTextEncoderBuilder.Create(preset.TextEncoder2, seed ^ 0x5D1_7E47_2UL);
        var vae = options.UNetOnly ? null : VaeDecoderBuilder.Create(preset.VaeDecoder, seed);
        options.Customize?.Invoke("unet", unet);
        if (text is not null) options.Customize?.Invoke("text_encoder", text);
        if (text2 is not null) options.Customize?.Invoke("text_encoder_2", text2);
        if (vae is not null) options.Customize?.Invoke("vae_decoder", vae);
        double total = unet.InitializerBytes + (text?.InitializerBytes ?? 0) + (text2?.InitializerBytes ?? 0) + (vae?.InitializerBytes ?? 0);
        double done = 0;
        IProgress<double> Part(string component, GraphBuilder g)
        {
            double start = done;
            done += g.InitializerBytes;
            return new InlineProgress(f => progress?.Report(new PipelineWriteProgress(component, (start + f * g.InitializerBytes) / total)));
        }

        var parent = Path.GetDirectoryName(target)!;
        Directory.CreateDirectory(parent);
        var staging = Path.Combine(parent, $".{Path.GetFileName(target)}.building-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(staging);
        try
        {
            bool external = options.UNetExternalData ?? unet.InitializerBytes > AutoExternalBytes;
            if (unet.InitializerBytes > 1L << 30) external = true;
            Directory.CreateDirectory(Path.Combine(staging, "unet"));
            unet.Save(Path.Combine(staging, "unet", "model.onnx"), external ? "weights.pb" : null, metadata: metadata,
                progress: Part("unet", unet), cancellationToken: cancellationToken);
            WriteJson(Path.Combine(staging, "unet", "config.json"), preset.UNet.ToJson());

            if (text is not null && vae is not null)
            {
                WriteTextEncoder(staging, "text_encoder", text, preset.TextEncoder, metadata, Part("text_encoder", text), cancellationToken);
                if (text2 is not null)
                    WriteTextEncoder(staging, "text_encoder_2", text2, preset.TextEncoder2!, metadata, Part("text_encoder_2", text2), cancellationToken);

                Directory.CreateDirectory(Path.Combine(staging, "vae_decoder"));
                vae.Save(Path.Combine(staging, "vae_decoder", "model.onnx"), null, metadata: metadata,
                    progress: Part("vae_decoder", vae), cancellationToken: cancellationToken);
                WriteJson(Path.Combine(staging, "vae_decoder", "config.json"), preset.VaeDecoder.ToJson());
                if (options.VaeEncoder is { } encoder)
                {
                    Directory.CreateDirectory(Path.Combine(staging, "vae_encoder"));
                    encoder.Save(Path.Combine(staging, "vae_encoder", "model.onnx"), null, metadata: metadata, cancellationToken: cancellationToken);
                    WriteJson(Path.Combine(staging, "vae_encoder", "config.json"), preset.VaeDecoder.ToJson());
                }

                WriteTokenizer(Path.Combine(staging, "tokenizer"), vocab, merges, preset.TextEncoder.MaxPositions, "<|endoftext|>");
                // SDXL's second tokenizer (OpenCLIP's) pads with "!" (id 0) where the first pads with EOS.
                if (text2 is not null) WriteTokenizer(Path.Combine(staging, "tokenizer_2"), vocab, merges, preset.TextEncoder2!.MaxPositions, "!");

                Directory.CreateDirectory(Path.Combine(staging, "scheduler"));
                WriteJson(Path.Combine(staging, "scheduler", "scheduler_config.json"), preset.IsSdxl ? SdxlScheduler() : Sd1Scheduler());
                var index = preset.IsSdxl ? SdxlIndex() : Sd1Index();
                if (options.VaeEncoder is not null) index["vae_encoder"] = new JsonArray("diffusers", "OnnxRuntimeModel");
                if (options.SamplingFrom is { } from) CarrySampling(from, staging, index);
                WriteJson(Path.Combine(staging, "model_index.json"), index);
            }
            cancellationToken.ThrowIfCancellationRequested();
            SwapIn(staging, target);
        }
        catch
        {
            TryDelete(staging);
            throw;
        }
    }

    /// <summary>Copies <paramref name="from"/>'s scheduler and spm_*_defaults.json into <paramref name="staging"/> (see <see cref="PipelineWriteOptions.SamplingFrom"/>).</summary>
    private static void CarrySampling(string from, string staging, JsonObject index)
    {
        var scheduler = Path.Combine(from, "scheduler", "scheduler_config.json");
        if (File.Exists(scheduler))
        {
            File.Copy(scheduler, Path.Combine(staging, "scheduler", "scheduler_config.json"), overwrite: true);
            var baseIndex = Path.Combine(from, "model_index.json");
            if (File.Exists(baseIndex) && JsonNode.Parse(File.ReadAllText(baseIndex))?["scheduler"] is JsonArray entry)
                index["scheduler"] = entry.DeepClone();
        }
        foreach (var name in new[] { "spm_generate_defaults.json", "spm_train_defaults.json" })
            if (File.Exists(Path.Combine(from, name))) File.Copy(Path.Combine(from, name), Path.Combine(staging, name), overwrite: true);
    }

    private static void WriteTextEncoder(string staging, string name, GraphBuilder g, ClipTextConfig config,
        IReadOnlyDictionary<string, string> metadata, IProgress<double> progress, CancellationToken ct)
    {
        Directory.CreateDirectory(Path.Combine(staging, name));
        g.Save(Path.Combine(staging, name, "model.onnx"), g.InitializerBytes > 1L << 30 ? "weights.pb" : null,
            metadata: metadata, progress: progress, cancellationToken: ct);
        WriteJson(Path.Combine(staging, name, "config.json"), config.ToJson());
    }

    private static void WriteTokenizer(string folder, string vocab, string merges, int maxLength, string padToken)
    {
        Directory.CreateDirectory(folder);
        AtomicFile.WriteAllBytes(Path.Combine(folder, "vocab.json"), File.ReadAllBytes(vocab));
        AtomicFile.WriteAllBytes(Path.Combine(folder, "merges.txt"), File.ReadAllBytes(merges));
        WriteJson(Path.Combine(folder, "special_tokens_map.json"), new JsonObject
        {
            ["bos_token"] = "<|startoftext|>",
            ["eos_token"] = "<|endoftext|>",
            ["pad_token"] = padToken,
            ["unk_token"] = "<|endoftext|>",
        });
        WriteJson(Path.Combine(folder, "tokenizer_config.json"), new JsonObject
        {
            ["model_max_length"] = maxLength,
            ["do_lower_case"] = true,
            ["tokenizer_class"] = "CLIPTokenizer",
        });
    }

    private static JsonObject Sd1Scheduler() => new()
    {
        ["_class_name"] = "PNDMScheduler",
        ["beta_end"] = 0.012,
        ["beta_schedule"] = "scaled_linear",
        ["beta_start"] = 0.00085,
        ["num_train_timesteps"] = 1000,
        ["prediction_type"] = "epsilon",
        ["set_alpha_to_one"] = false,
        ["skip_prk_steps"] = true,
        ["steps_offset"] = 1,
        ["trained_betas"] = null,
        ["clip_sample"] = false,
    };

    // SDXL base's scheduler config: Euler discrete with leading spacing.
    private static JsonObject SdxlScheduler() => new()
    {
        ["_class_name"] = "EulerDiscreteScheduler",
        ["beta_end"] = 0.012,
        ["beta_schedule"] = "scaled_linear",
        ["beta_start"] = 0.00085,
        ["clip_sample"] = false,
        ["interpolation_type"] = "linear",
        ["num_train_timesteps"] = 1000,
        ["prediction_type"] = "epsilon",
        ["sample_max_value"] = 1.0,
        ["set_alpha_to_one"] = false,
        ["skip_prk_steps"] = true,
        ["steps_offset"] = 1,
        ["timestep_spacing"] = "leading",
        ["trained_betas"] = null,
        ["use_karras_sigmas"] = false,
    };

    private static JsonObject Sd1Index() => new()
    {
        ["_class_name"] = "OnnxStableDiffusionPipeline",
        ["text_encoder"] = new JsonArray("diffusers", "OnnxRuntimeModel"),
        ["tokenizer"] = new JsonArray("transformers", "CLIPTokenizer"),
        ["unet"] = new JsonArray("diffusers", "OnnxRuntimeModel"),
        ["vae_decoder"] = new JsonArray("diffusers", "OnnxRuntimeModel"),
        ["scheduler"] = new JsonArray("diffusers", "PNDMScheduler"),
    };

    private static JsonObject SdxlIndex() => new()
    {
        ["_class_name"] = "StableDiffusionXLPipeline",
        ["force_zeros_for_empty_prompt"] = true,
        ["scheduler"] = new JsonArray("diffusers", "EulerDiscreteScheduler"),
        ["text_encoder"] = new JsonArray("transformers", "CLIPTextModel"),
        ["text_encoder_2"] = new JsonArray("transformers", "CLIPTextModelWithProjection"),
        ["tokenizer"] = new JsonArray("transformers", "CLIPTokenizer"),
        ["tokenizer_2"] = new JsonArray("transformers", "CLIPTokenizer"),
        ["unet"] = new JsonArray("diffusers", "UNet2DConditionModel"),
        ["vae"] = new JsonArray("diffusers", "AutoencoderKL"),
    };

    private static void SwapIn(string staging, string target)
    {
        if (!Directory.Exists(target))
        {
            Directory.Move(staging, target);
            return;
        }
        var old = target + $".old-{Guid.NewGuid():N}";
        Directory.Move(target, old);
        try
        {
            Directory.Move(staging, target);
        }
        catch
        {
            Directory.Move(old, target);
            throw;
        }
        TryDelete(old);
    }

    private static void TryDelete(string dir)
    {
        try { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    private static void WriteJson(string path, JsonObject o) => AtomicFile.WriteAllText(path, o.ToJsonString(Indented) + "\n");

    private sealed class InlineProgress(Action<double> report) : IProgress<double>
    {
        public void Report(double value) => report(value);
    }
}
