using Spm.Core;
using Spm.Diffusion.Runtime;

namespace Spm.Diffusion.Pipelines.Families;

/// <summary>The model families the pipeline runs.</summary>
public enum ModelFamily
{
    /// <summary>Stable Diffusion 1.x: one CLIP ViT-L text encoder (768 wide), its last hidden state conditions the UNet.</summary>
    StableDiffusion1,

    /// <summary>Stable Diffusion 2.x: one OpenCLIP ViT-H text encoder (1024 wide); conditioned like 1.x.</summary>
    StableDiffusion2,

    /// <summary>
    /// Stable Diffusion XL (base): two text encoders whose penultimate hidden states are concatenated, plus the pooled
    /// embedding of the second (<c>text_embeds</c>) and the six size/crop ids (<c>time_ids</c>).
    /// </summary>
    StableDiffusionXL,
}

/// <summary>
/// Which family a model folder holds: read from <c>model_index.json</c>'s <c>_class_name</c> (and, when it has none,
/// from the folder: a <c>text_encoder_2/</c> means SDXL), then confirmed against the UNet's inputs once it is open
/// (<see cref="CheckUNet"/>). Pipelines spm does not run (SD3, Flux, the SDXL refiner, inpainting...) are refused
/// here with their class named, before any model is loaded.
/// </summary>
public static class ModelFamilies
{
    /// <summary>The UNet inputs SDXL adds to sample/timestep/encoder_hidden_states.</summary>
    public static IReadOnlyList<string> SdxlUNetInputs { get; } = ["text_embeds", "time_ids"];

    // diffusers' class names and the ONNX/optimum variants of them.
    private static readonly string[] Sd1Classes = ["StableDiffusionPipeline", "OnnxStableDiffusionPipeline", "ORTStableDiffusionPipeline"];
    private static readonly string[] SdxlClasses = ["StableDiffusionXLPipeline", "ORTStableDiffusionXLPipeline", "OnnxStableDiffusionXLPipeline"];

    /// <summary>The model's display name of a family (for messages and docs).</summary>
    public static string DisplayName(this ModelFamily family) => family switch
    {
        ModelFamily.StableDiffusion1 => "Stable Diffusion 1.x",
        ModelFamily.StableDiffusion2 => "Stable Diffusion 2.x",
        ModelFamily.StableDiffusionXL => "Stable Diffusion XL",
        _ => family.ToString(),
    };

    /// <summary>The family's short id as SPM files and libraries record it (<see cref="Spm.Core.Membranes.SpmModelFamily"/>).</summary>
    public static string Id(this ModelFamily family) => family switch
    {
        ModelFamily.StableDiffusion1 => Spm.Core.Membranes.SpmModelFamily.Sd1,
        ModelFamily.StableDiffusion2 => Spm.Core.Membranes.SpmModelFamily.Sd2,
        ModelFamily.StableDiffusionXL => Spm.Core.Membranes.SpmModelFamily.Sdxl,
        _ => family.ToString().ToLowerInvariant(),
    };

    /// <summary>
    /// The family named by a pipeline class (<c>_class_name</c> of <c>model_index.json</c>); null class: decided by
    /// <paramref name="hasSecondTextEncoder"/>. SD 1.x and 2.x share class names and are told apart by
    /// <paramref name="crossAttentionDim"/> (1024 for 2.x) when it is known.
    /// </summary>
    /// <exception cref="SpmFormatException">The class is one spm does not run; the message names it and what is supported.</exception>
    public static ModelFamily FromPipelineClass(string? className, bool hasSecondTextEncoder, int? crossAttentionDim, string modelIndexPath)
    {
        if (className is null)
            return hasSecondTextEncoder ? ModelFamily.StableDiffusionXL : Sd1Or2(crossAttentionDim);
        if (SdxlClasses.Contains(className, StringComparer.Ordinal)) return ModelFamily.StableDiffusionXL;
        if (Sd1Classes.Contains(className, StringComparer.Ordinal)) return Sd1Or2(crossAttentionDim);
        throw new SpmFormatException(modelIndexPath, "_class_name", $"pipeline class '{className}' ({Describe(className)}) is not supported: spm runs text-to-image Stable Diffusion 1.x/2.x and SDXL base pipelines ({string.Join(", ", Sd1Classes.Concat(SdxlClasses))}).");
    }

    private static ModelFamily Sd1Or2(int? crossAttentionDim) => crossAttentionDim == 1024 ? ModelFamily.StableDiffusion2 : ModelFamily.StableDiffusion1;

    // What the refused class is, in words, for the error: the families users most often try.
    private static string Describe(string className)
    {
        if (className.Contains("StableDiffusion3", StringComparison.Ordinal)) return "Stable Diffusion 3, a transformer (MMDiT) model with three text encoders";
        if (className.Contains("Flux", StringComparison.Ordinal)) return "Flux, a transformer model with T5 and CLIP encoders";
        if (className.Contains("XLImg2Img", StringComparison.Ordinal) || className.Contains("Refiner", StringComparison.Ordinal)) return "the SDXL refiner / image-to-image pipeline";
        if (className.Contains("Inpaint", StringComparison.Ordinal)) return "an inpainting pipeline";
        if (className.Contains("Img2Img", StringComparison.Ordinal)) return "an image-to-image pipeline";
        if (className.Contains("XL", StringComparison.Ordinal)) return "an SDXL variant";
        return "an unknown pipeline";
    }

    /// <summary>The verbs that run on SDXL, for the refusal of the others (kept in step with docs/sdxl.md).</summary>
    public const string SdxlVerbs = "generate, tokenize, inspect, bake, train and grad";

    /// <summary>
    /// Refuses an SDXL model folder for a feature that does not take SDXL conditioning yet, before anything is loaded.
    /// A path that is not a readable model folder is left alone (the feature's own loading reports what is wrong).
    /// </summary>
    /// <param name="modelPath">The model folder the feature was given.</param>
    /// <param name="feature">What refuses, as the user called it (e.g. <c>spm eval</c>, <c>spm train --robust-rounds</c>).</param>
    /// <exception cref="SpmException">The folder is SDXL; the message names the folder and the feature.</exception>
    public static void RefuseSdxl(string modelPath, string feature)
    {
        ArgumentNullException.ThrowIfNull(modelPath);
        ArgumentNullException.ThrowIfNull(feature);
        if (!Directory.Exists(modelPath)) return;
        ModelFamily family;
        try
        {
            family = Pipelines.ModelFolder.Open(modelPath).Family;
        }
        catch (SpmException)
        {
            return;
        }
        if (family == ModelFamily.StableDiffusionXL)
            throw new SpmException($"'{modelPath}' is a Stable Diffusion XL model: SDXL is not supported by {feature} yet (it conditions the UNet with hidden states only, without SDXL's pooled text_embeds and time_ids). On SDXL, use {SdxlVerbs} (docs/sdxl.md).");
    }

    /// <summary>
    /// Checks that the UNet's inputs are those of <paramref name="family"/>: an SDXL UNet takes <c>text_embeds</c> and
    /// <c>time_ids</c>, an SD 1.x/2.x UNet neither.
    /// </summary>
    /// <exception cref="SpmFormatException">They are not; the message names the UNet, the input and the folder's class.</exception>
    public static void CheckUNet(ModelFamily family, ModelSignature unet, string? className)
    {
        ArgumentNullException.ThrowIfNull(unet);
        var present = SdxlUNetInputs.Where(n => unet.FindInput(n) is not null).ToArray();
        var what = className is null ? "the folder" : $"model_index.json's '{className}'";
        if (family == ModelFamily.StableDiffusionXL)
        {
            var missing = SdxlUNetInputs.Except(present).ToArray();
            if (missing.Length > 0)
                throw new SpmFormatException(unet.ModelName, missing[0], $"{what} is SDXL, but the UNet has no input '{string.Join("', '", missing)}' (an SDXL UNet takes text_embeds [B,P] and time_ids [B,6]).");
            var t = unet.FindInput("time_ids")!;
            if (t.Rank != 2 || (t.Dimensions[1] >= 0 && t.Dimensions[1] != 6))
                throw new SpmFormatException(unet.ModelName, "time_ids", $"input 'time_ids' is {t.ShapeString}; SDXL's is [batch, 6].");
            var e = unet.FindInput("text_embeds")!;
            if (e.Rank != 2) throw new SpmFormatException(unet.ModelName, "text_embeds", $"input 'text_embeds' is {e.ShapeString}; SDXL's is [batch, width].");
        }
        else if (present.Length > 0)
        {
            throw new SpmFormatException(unet.ModelName, present[0], $"{what} is {family.DisplayName()}, but the UNet takes '{present[0]}' like an SDXL UNet: the folder mixes model families.");
        }
    }
}
