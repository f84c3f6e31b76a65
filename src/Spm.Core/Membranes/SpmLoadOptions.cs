namespace Spm.Core.Membranes;

/// <summary>Options for <see cref="SpmFile.Load"/>.</summary>
public sealed record SpmLoadOptions
{
    /// <summary>
    /// The module paths of the target model. When given, each membrane key is resolved to the path whose key it is
    /// (<see cref="SpmKeys.KeyFor"/>); when null, membranes keep their raw keys and a null module path.
    /// </summary>
    public IEnumerable<string>? ModulePaths { get; init; }

    /// <summary>With <see cref="ModulePaths"/>: throw <see cref="SpmMismatchException"/> naming the first key the model lacks (default false: leave it unresolved).</summary>
    public bool RequireAllResolved { get; init; }

    /// <summary>The erased concepts, overriding (or supplying a missing) <c>prompts</c> metadata.</summary>
    public IReadOnlyList<string>? Prompts { get; init; }

    /// <summary>Overrides or supplies the <c>rank</c> metadata.</summary>
    public int? Rank { get; init; }

    /// <summary>Overrides or supplies the <c>alpha</c> metadata.</summary>
    public float? Alpha { get; init; }

    /// <summary>
    /// Load weights holding NaN or infinities (default false: such a file is rejected with a
    /// <see cref="SpmFormatException"/>, because a single non-finite weight turns every generated image into NaN).
    /// </summary>
    public bool AllowNonFinite { get; init; }

    /// <summary>Skip tensors whose names are not membrane parts (default false: they are an error).</summary>
    public bool IgnoreUnknownTensors { get; init; }
}
