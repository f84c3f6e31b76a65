using Spm.Core;

namespace Spm.Diffusion.Schedulers;

/// <summary>
/// The schedulers available by command-line name. Adding one = its file (scheduler + nested Factory) plus one
/// line in <see cref="Factories"/>.
/// </summary>
public static class SchedulerRegistry
{
    private static readonly ISchedulerFactory[] Factories =
    [
        new PndmScheduler.Factory(),
        new DdimScheduler.Factory(),
        new EulerScheduler.Factory(),
        new EulerAncestralScheduler.Factory(),
        new DpmSolverMultistepScheduler.Factory(),
        new LmsScheduler.Factory(),
    ];

    private static readonly Dictionary<string, ISchedulerFactory> ByName =
        Factories.ToDictionary(f => f.Name, StringComparer.OrdinalIgnoreCase);

    /// <summary>Every registered factory, in a stable order (pndm, ddim, euler, euler-a, dpmpp-2m, lms).</summary>
    public static IReadOnlyList<ISchedulerFactory> All => Factories;

    /// <summary>The registered names.</summary>
    public static IReadOnlyList<string> Names { get; } = Factories.Select(f => f.Name).ToArray();

    /// <summary>The factory registered under <paramref name="name"/> (case-insensitive).</summary>
    /// <exception cref="SpmException">No scheduler has that name; the message lists the available ones.</exception>
    public static ISchedulerFactory Get(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return ByName.TryGetValue(name, out var f) ? f
            : throw new SpmException($"Unknown scheduler '{name}'; available: {string.Join(", ", Names)}.");
    }

    /// <summary>Looks a factory up without throwing.</summary>
    public static bool TryGet(string name, out ISchedulerFactory factory)
    {
        ArgumentNullException.ThrowIfNull(name);
        return ByName.TryGetValue(name, out factory!);
    }

    /// <summary>Creates a fresh scheduler named <paramref name="name"/> for <paramref name="config"/>.</summary>
    public static IScheduler Create(string name, SchedulerConfig config) => Get(name).Create(config);
}
