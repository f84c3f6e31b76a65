using Spm.Core.SafeTensors;

namespace Spm.Core.Membranes;

/// <summary>An SPM: its <see cref="SpmConfig"/> plus its membranes (the state dict), in file order.</summary>
public sealed class SpmAdapter
{
    private readonly Dictionary<string, Membrane> _byKey;

    /// <summary>Creates an adapter; membrane keys must be unique.</summary>
    /// <param name="config">Concepts, rank, alpha and extra metadata.</param>
    /// <param name="membranes">The membranes.</param>
    /// <param name="storageDType">The float type the weights were stored in (informational; saving writes F32 unless told otherwise).</param>
    /// <param name="sourcePath">The file it was loaded from, if any.</param>
    public SpmAdapter(SpmConfig config, IReadOnlyList<Membrane> membranes, SafeTensorDType storageDType = SafeTensorDType.F32, string? sourcePath = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(membranes);
        _byKey = new Dictionary<string, Membrane>(membranes.Count, StringComparer.Ordinal);
        foreach (var m in membranes)
            if (!_byKey.TryAdd(m.Key, m)) throw new ArgumentException($"Duplicate membrane key '{m.Key}'.", nameof(membranes));
        Config = config;
        Membranes = membranes;
        StorageDType = storageDType;
        SourcePath = sourcePath;
    }

    /// <summary>Concepts, rank, alpha, extra metadata.</summary>
    public SpmConfig Config { get; }

    /// <summary>The membranes in file order.</summary>
    public IReadOnlyList<Membrane> Membranes { get; }

    /// <summary>The float type of the weights in the file.</summary>
    public SafeTensorDType StorageDType { get; }

    /// <summary>The file this adapter came from, if any.</summary>
    public string? SourcePath { get; }

    /// <summary>Total number of weights.</summary>
    public long ParameterCount => Membranes.Sum(m => m.ParameterCount);

    /// <summary>Keys that did not resolve to a module path (all keys when no model was given).</summary>
    public IEnumerable<string> UnresolvedKeys => Membranes.Where(m => m.ModulePath is null).Select(m => m.Key);

    /// <summary>The membrane with file key <paramref name="key"/>, or null.</summary>
    public Membrane? FindByKey(string key) => _byKey.GetValueOrDefault(key);

    /// <summary>The membrane resolved to <paramref name="modulePath"/>, or null.</summary>
    public Membrane? FindByModulePath(string modulePath) => Membranes.FirstOrDefault(m => m.ModulePath == modulePath);

    /// <summary>
    /// A copy whose membranes are resolved against a model's module paths (by building the key of each path and
    /// looking it up; keys are never split). Keys the model lacks keep a null <see cref="Membrane.ModulePath"/>.
    /// </summary>
    /// <exception cref="SpmMismatchException">A key matches two different module paths.</exception>
    public SpmAdapter Resolve(IEnumerable<string> modulePaths)
    {
        var index = SpmKeys.BuildIndex(modulePaths, out var ambiguous);
        var resolved = new List<Membrane>(Membranes.Count);
        foreach (var m in Membranes)
        {
            if (ambiguous.TryGetValue(m.Key, out var paths))
                throw new SpmMismatchException($"Key '{m.Key}' matches several module paths ({string.Join(", ", paths)}).", m.Key);
            resolved.Add(m.WithModulePath(index.GetValueOrDefault(m.Key)));
        }
        return new SpmAdapter(Config, resolved, StorageDType, SourcePath);
    }
}
