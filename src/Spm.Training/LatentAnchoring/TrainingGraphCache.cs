using System.Collections.Concurrent;

namespace Spm.Training.LatentAnchoring;

/// <summary>
/// Keeps the gradient graphs of latent-anchoring training for reuse by later trainers of the same model in one process
/// (a sweep over concepts, seeds or settings). Building a graph is the costly part of a run's first iteration (about 11 s
/// for the tiny fixture on one core, minutes for an SD-sized UNet), and the graph depends only on the UNet file, the
/// membrane layout (layers and rank), the batch and latent shape and the session settings, never on the concept, the
/// seed or the membrane values, which are fed at every step. Pass one cache to
/// <see cref="LatentAnchoringTrainer.Create(string, LatentAnchoringOptions, Spm.Diffusion.Runtime.OnnxRuntimeOptions?, TrainingGraphCache?)"/>
/// for each trainer that should share it; sessions are thread-safe, so trainers running at once may share a graph.
/// The cache owns its graphs (trainers do not dispose them) and holds them until it is disposed.
/// </summary>
public sealed class TrainingGraphCache : IDisposable
{
    private readonly ConcurrentDictionary<string, Lazy<MembraneTrainingGraph>> _graphs = new(StringComparer.Ordinal);
    private int _built;
    private bool _disposed;

    /// <summary>How many graphs this cache has built (each key is built once, however many trainers ask for it).</summary>
    public int GraphsBuilt => Volatile.Read(ref _built);

    /// <summary>The graph for <paramref name="key"/>, built by <paramref name="build"/> the first time it is asked for.</summary>
    internal MembraneTrainingGraph GetOrBuild(string key, Func<MembraneTrainingGraph> build)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        // Lazy makes two trainers asking for the same key at once wait for one build instead of building twice.
        var lazy = _graphs.GetOrAdd(key, _ => new Lazy<MembraneTrainingGraph>(() =>
        {
            var graph = build();
            Interlocked.Increment(ref _built);
            return graph;
        }, LazyThreadSafetyMode.ExecutionAndPublication));
        return lazy.Value;
    }

    /// <summary>Releases every graph's session. Trainers that used the cache must not train afterwards.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var lazy in _graphs.Values)
            if (lazy.IsValueCreated) lazy.Value.Dispose();
        _graphs.Clear();
    }
}
