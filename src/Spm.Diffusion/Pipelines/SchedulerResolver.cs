using Spm.Diffusion.Schedulers;

namespace Spm.Diffusion.Pipelines;

/// <summary>Finds scheduler factories by CLI name (the scheduler registry of <c>Spm.Diffusion.Schedulers</c>).</summary>
internal static class SchedulerResolver
{
    public static IReadOnlyList<string> Names => [];

    public static ISchedulerFactory? Find(string name) => null;
}
