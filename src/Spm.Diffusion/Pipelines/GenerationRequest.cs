using Spm.Core.Tensors;
using Spm.Diffusion.Schedulers;

namespace Spm.Diffusion.Pipelines;

/// <summary>
/// One text-to-image request. Images are independent of how they are batched: image <c>i</c> starts from
/// the noise of seed <c>Seed + i</c> (see <see cref="LatentNoise"/>) and has its own scheduler.
/// </summary>
public sealed record GenerationRequest
{
    /// <summary>The prompt.</summary>
    public required string Prompt { get; init; }

    /// <summary>The negative prompt (the unconditional row of guidance); empty by default.</summary>
    public string NegativePrompt { get; init; } = "";

    /// <summary>Denoising steps (the scheduler may call the UNet a few more times, e.g. PNDM's repeated step).</summary>
    public int Steps { get; init; } = 30;

    /// <summary>Classifier-free guidance scale; at 1 or below the unconditional half is skipped (one row per image).</summary>
    public double GuidanceScale { get; init; } = 7.5;

    /// <summary>
    /// Scheduler name (pndm, ddim, euler, euler-a, dpmpp-2m, lms); null uses the one named by the model's
    /// scheduler config. Ignored when <see cref="SchedulerFactory"/> is set.
    /// </summary>
    public string? Scheduler { get; init; }

    /// <summary>An explicit scheduler factory (overrides <see cref="Scheduler"/>).</summary>
    public ISchedulerFactory? SchedulerFactory { get; init; }

    /// <summary>The seed of the first image; image i uses <c>Seed + i</c>.</summary>
    public ulong Seed { get; init; }

    /// <summary>Image width in pixels (a multiple of the model's <see cref="ModelFolder.ImageSizeMultiple"/>); null = the model's default size.</summary>
    public int? Width { get; init; }

    /// <summary>Image height in pixels; null = the model's default size.</summary>
    public int? Height { get; init; }

    /// <summary>Number of images.</summary>
    public int Count { get; init; } = 1;

    /// <summary>Images denoised together per UNet call (the UNet batch is twice this with guidance).</summary>
    public int BatchSize { get; init; } = 1;

    /// <summary>
    /// Initial latents [Count,4,h,w] of unit variance instead of seeded noise (multiplied by the scheduler's
    /// InitNoiseSigma, as diffusers does); they fix the image size. Stochastic samplers still draw their step
    /// noise from <c>Seed + i</c>.
    /// </summary>
    public FloatTensor? InitLatents { get; init; }

    /// <summary>Decode the final latents into images (false: latents only, e.g. for tests and training).</summary>
    public bool DecodeImages { get; init; } = true;

    /// <summary>Benchmark mode: <see cref="GenerationResult.Timings"/> pieces in CPU time instead of wall time (Total stays wall).</summary>
    public bool MeasureCpu { get; init; }

    /// <summary>
    /// SDXL: the original image size (height, width) the model is told about (<c>time_ids</c> 0-1); null = the
    /// generated image's size (diffusers' default). Ignored by SD 1.x/2.x.
    /// </summary>
    public (int Height, int Width)? OriginalSize { get; init; }

    /// <summary>SDXL: the crop's top-left corner (top, left) in pixels (<c>time_ids</c> 2-3); diffusers' default (0, 0). Ignored by SD 1.x/2.x.</summary>
    public (int Top, int Left) CropTopLeft { get; init; }

    /// <summary>SDXL: the target size (height, width) (<c>time_ids</c> 4-5); null = the generated image's size. Ignored by SD 1.x/2.x.</summary>
    public (int Height, int Width)? TargetSize { get; init; }

    /// <summary>Supplies the UNet's extra inputs (membranes, gates) and SPM information for the image parameters.</summary>
    public IUNetConditioner? Conditioner { get; init; }
}
