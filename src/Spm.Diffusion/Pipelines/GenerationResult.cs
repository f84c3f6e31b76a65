using Spm.Core.Tensors;

namespace Spm.Diffusion.Pipelines;

/// <summary>One generated image.</summary>
/// <param name="Index">Position in the request (0-based).</param>
/// <param name="Seed">The seed its noise came from.</param>
/// <param name="Width">Width in pixels.</param>
/// <param name="Height">Height in pixels.</param>
/// <param name="Rgb">Pixels, row-major, 3 bytes (R,G,B) per pixel; empty when the request did not decode images.</param>
/// <param name="Parameters">The generation parameters text (prompt, negative prompt, settings line, SPM information).</param>
public sealed record GeneratedImage(int Index, ulong Seed, int Width, int Height, byte[] Rgb, string Parameters);

/// <summary>Where the time of a generation went (wall clock, measured around each piece; the benchmark can ask for CPU time instead).</summary>
/// <param name="TextEncoder">Text encoder runs.</param>
/// <param name="UNet">UNet runs (all steps).</param>
/// <param name="VaeDecoder">VAE decoder runs.</param>
/// <param name="Total">The whole call, wall clock.</param>
/// <param name="UNetCalls">Number of UNet runs.</param>
/// <param name="Tokenizer">Tokenizing the prompts.</param>
/// <param name="Sampling">Outside the UNet in the denoising loop: initial noise, input scaling, guidance, scheduler steps, adapter hook.</param>
/// <param name="ImageConversion">VAE output to 8-bit pixels and parameters text.</param>
public sealed record GenerationTimings(TimeSpan TextEncoder, TimeSpan UNet, TimeSpan VaeDecoder, TimeSpan Total, int UNetCalls,
    TimeSpan Tokenizer = default, TimeSpan Sampling = default, TimeSpan ImageConversion = default)
{
    /// <summary>Time in the three models.</summary>
    public TimeSpan Models => TextEncoder + UNet + VaeDecoder;

    /// <summary>Time outside the three models (tokenizer, noise, scheduler, guidance, conversions, adapter hook, thread hand-offs).</summary>
    public TimeSpan Outside => Total - Models;

    /// <summary>The measured work outside the models: <see cref="Tokenizer"/> + <see cref="Sampling"/> + <see cref="ImageConversion"/>.</summary>
    public TimeSpan OutsideWork => Tokenizer + Sampling + ImageConversion;
}

/// <summary>The result of <see cref="StableDiffusionPipeline.GenerateAsync"/>.</summary>
/// <param name="Images">The images in request order.</param>
/// <param name="Latents">The final latents [Count,4,h,w] before the VAE (not divided by the scaling factor).</param>
/// <param name="SchedulerName">The scheduler used.</param>
/// <param name="Timings">Where the time went.</param>
public sealed record GenerationResult(IReadOnlyList<GeneratedImage> Images, FloatTensor Latents, string SchedulerName, GenerationTimings Timings);

/// <summary>What a generation is doing.</summary>
public enum GenerationStage
{
    /// <summary>Tokenizing and encoding the prompts.</summary>
    Encoding,

    /// <summary>Denoising (one report per UNet call).</summary>
    Denoising,

    /// <summary>Decoding latents into images.</summary>
    Decoding,

    /// <summary>All done.</summary>
    Done,
}

/// <summary>Progress of a generation: <paramref name="Step"/> of <paramref name="TotalSteps"/> UNet calls over all batches.</summary>
/// <param name="Stage">The current stage.</param>
/// <param name="Step">UNet calls finished so far (over all batches).</param>
/// <param name="TotalSteps">UNet calls in the whole request.</param>
/// <param name="ImagesDone">Images whose latents are final.</param>
/// <param name="ImageCount">Images requested.</param>
public readonly record struct GenerationProgress(GenerationStage Stage, int Step, int TotalSteps, int ImagesDone, int ImageCount);
