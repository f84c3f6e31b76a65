using Spm.Diffusion.Pipelines;
using Spm.Diffusion.Runtime;
using Spm.Tests.Common;

namespace Spm.Diffusion.Tests.Pipelines;

/// <summary>One pipeline on the tiny fixture shared by the pipeline tests (loading takes a moment; the pipeline is thread-safe).</summary>
internal static class PipelineFixture
{
    private static readonly Lazy<StableDiffusionPipeline> Shared = new(() => Load(threads: 1));

    public static StableDiffusionPipeline Pipeline => Shared.Value;

    public static StableDiffusionPipeline Load(int threads, bool? ioBinding = null, OnnxModelSource? unet = null)
        => StableDiffusionPipeline.Load(TestPaths.TinySd1, new PipelineOptions
        {
            Runtime = new OnnxRuntimeOptions { IntraOpThreads = threads },
            UseIoBinding = ioBinding,
            UNetSource = unet,
        });

    public static GenerationRequest Request(string prompt = "a photo of a cat", int steps = 4, ulong seed = 1) => new()
    {
        Prompt = prompt,
        Steps = steps,
        Seed = seed,
        SchedulerFactory = new TestDdimFactory(),
    };
}
