using Spm.Diffusion.Runtime;

namespace Spm.Diffusion.Pipelines;

/// <summary>How <see cref="StableDiffusionPipeline.Load"/> builds its sessions.</summary>
public sealed record PipelineOptions
{
    /// <summary>Provider, threads, optimization level and determinism for every session.</summary>
    public OnnxRuntimeOptions Runtime { get; init; } = new();

    /// <summary>
    /// Run the denoising loop through IOBinding (constant inputs bound once per loop). Null = only on CUDA,
    /// where it saves the per-step upload of the conditioning; on the CPU both paths compute the same numbers.
    /// </summary>
    public bool? UseIoBinding { get; init; }

    /// <summary>
    /// A replacement UNet (e.g. an in-memory graph with injected membrane inputs, whose weights stay in the
    /// folder's external data); null loads <c>unet/model.onnx</c>.
    /// </summary>
    public OnnxModelSource? UNetSource { get; init; }
}
