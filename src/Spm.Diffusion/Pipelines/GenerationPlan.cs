using Spm.Core;
using Spm.Diffusion.Schedulers;

namespace Spm.Diffusion.Pipelines;

/// <summary>A request or its inputs do not make sense (size, steps, counts, latents shape, unknown scheduler).</summary>
public sealed class InvalidGenerationRequestException : SpmException
{
    /// <summary>Creates the error.</summary>
    public InvalidGenerationRequestException(string message) : base(message) { }
}

/// <summary>A validated request with everything derived from it, computed before any work starts.</summary>
internal sealed record GenerationPlan(
    GenerationRequest Request,
    ISchedulerFactory Factory,
    string SchedulerName,
    bool Guidance,
    int Width,
    int Height,
    int LatentWidth,
    int LatentHeight,
    int TotalUNetCalls,
    Families.SizeConditioning Sizes)
{
    public static GenerationPlan Create(StableDiffusionPipeline pipeline, GenerationRequest r)
    {
        if (r.Prompt is null) throw new InvalidGenerationRequestException("the prompt is missing.");
        if (r.NegativePrompt is null) throw new InvalidGenerationRequestException("the negative prompt must not be null (use \"\").");
        if (r.Steps is < 1 or > 1000) throw new InvalidGenerationRequestException($"steps must be 1..1000, got {r.Steps}.");
        if (r.Count is < 1 or > 10_000) throw new InvalidGenerationRequestException($"count must be 1..10000, got {r.Count}.");
        if (r.BatchSize is < 1 or > 256) throw new InvalidGenerationRequestException($"batch size must be 1..256, got {r.BatchSize}.");
        if (!double.IsFinite(r.GuidanceScale)) throw new InvalidGenerationRequestException($"guidance scale must be finite, got {r.GuidanceScale}.");
        int f = pipeline.Folder.VaeScaleFactor;
        int c = pipeline.UNet.InChannels;
        int width, height;
        if (r.InitLatents is { } init)
        {
            if (init.Rank != 4 || init.Shape[0] != r.Count || init.Shape[1] != c)
                throw new InvalidGenerationRequestException($"initial latents are {init.ShapeString}; expected [{r.Count},{c},h,w] (one per image).");
            width = init.Shape[3] * f;
            height = init.Shape[2] * f;
            if ((r.Width is { } rw && rw != width) || (r.Height is { } rh && rh != height))
                throw new InvalidGenerationRequestException($"initial latents {init.ShapeString} give {width}x{height} images, but {r.Width ?? width}x{r.Height ?? height} was requested.");
        }
        else
        {
            width = r.Width ?? pipeline.Folder.DefaultImageSize;
            height = r.Height ?? pipeline.Folder.DefaultImageSize;
        }
        // The model's real constraint (VAE factor x UNet down-sampling), checked here so that a bad size is a
        // message naming it rather than a shape error deep inside ONNX Runtime.
        var folder = pipeline.Folder;
        if ((folder.DescribeInvalidImageSide("width", width) ?? folder.DescribeInvalidImageSide("height", height)) is { } problem)
            throw new InvalidGenerationRequestException(r.InitLatents is null ? problem : $"initial latents {r.InitLatents.ShapeString} give {width}x{height} images: {problem}");

        ISchedulerFactory factory;
        string name;
        if (r.SchedulerFactory is not null)
        {
            factory = r.SchedulerFactory;
            name = factory.Name;
        }
        else
        {
            name = r.Scheduler ?? pipeline.DefaultSchedulerName;
            if (!SchedulerRegistry.TryGet(name, out factory))
                throw new InvalidGenerationRequestException($"unknown scheduler '{name}' (known: {string.Join(", ", SchedulerRegistry.Names)}).");
            name = factory.Name;
        }
        const int maxSizeId = 1 << 16;
        var original = r.OriginalSize ?? (height, width);
        var target = r.TargetSize ?? (height, width);
        if (original.Height is < 1 or > maxSizeId || original.Width is < 1 or > maxSizeId)
            throw new InvalidGenerationRequestException($"original size must be 1..{maxSizeId} pixels per side, got {original.Height}x{original.Width} (height x width).");
        if (target.Height is < 1 or > maxSizeId || target.Width is < 1 or > maxSizeId)
            throw new InvalidGenerationRequestException($"target size must be 1..{maxSizeId} pixels per side, got {target.Height}x{target.Width} (height x width).");
        if (r.CropTopLeft.Top is < 0 or > maxSizeId || r.CropTopLeft.Left is < 0 or > maxSizeId)
            throw new InvalidGenerationRequestException($"crop top/left must be 0..{maxSizeId}, got {r.CropTopLeft.Top},{r.CropTopLeft.Left}.");
        var sizes = new Families.SizeConditioning(original.Height, original.Width, r.CropTopLeft.Top, r.CropTopLeft.Left, target.Height, target.Width);
        bool guidance = r.GuidanceScale > 1.0;
        // Steps per batch come from a scheduler instance (PNDM repeats a timestep, so calls can exceed steps).
        var probe = factory.Create(pipeline.Folder.SchedulerConfig);
        probe.SetTimesteps(r.Steps);
        int batches = (r.Count + r.BatchSize - 1) / r.BatchSize;
        return new GenerationPlan(r, factory, name, guidance, width, height, width / f, height / f, checked(probe.Timesteps.Count * batches), sizes);
    }
}
