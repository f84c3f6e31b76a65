namespace Spm.Core.Membranes;

/// <summary>
/// Metadata keys of SPM files. The first three are the official ones every reader needs; the others are this
/// project's extras (optional; other tools ignore them). Keep extras in <see cref="SpmConfig.Extra"/>.
/// </summary>
public static class SpmMetadataKeys
{
    /// <summary>Comma-separated erased concepts (official, required).</summary>
    public const string Prompts = SpmConfig.PromptsKey;

    /// <summary>Rank (official, required).</summary>
    public const string Rank = SpmConfig.RankKey;

    /// <summary>Alpha (official, required).</summary>
    public const string Alpha = SpmConfig.AlphaKey;

    /// <summary>The surrogate concept used in training (default the empty prompt).</summary>
    public const string Surrogate = "surrogate";

    /// <summary>The base model the SPM was trained on (folder name or identifier).</summary>
    public const string BaseModel = "base_model";

    /// <summary>
    /// The model family the SPM's layers belong to: <c>sd1</c>, <c>sd2</c> or <c>sdxl</c> (written by the trainer;
    /// <see cref="SpmModelFamily.Of"/> reads it, or infers it from the cross-attention width for files without it).
    /// </summary>
    public const string ModelFamily = "model_family";

    /// <summary>Training settings as a compact JSON object string.</summary>
    public const string Training = "training";

    /// <summary>The library and version that wrote the file, e.g. <c>Spm 0.1.0</c>.</summary>
    public const string Writer = "writer";

    /// <summary>The key files written before the format doc settled on <see cref="Writer"/> used (read, never written).</summary>
    public const string LegacyWriter = "generator";

    /// <summary>The learned gate (<see cref="Gating.ConceptProbe"/>) as a JSON object string.</summary>
    public const string GateProbe = "gate_probe";

    /// <summary>The record of a merged library (<see cref="Library.SpmMerge"/>) as a JSON object string: kind, components, per-layer errors.</summary>
    public const string Merge = "spm_merge";

    /// <summary>What this library writes under <see cref="Writer"/>: <c>Spm &lt;version&gt;</c> (no commit hash, so files stay byte-identical across builds of one version).</summary>
    public static string CurrentWriter { get; } = "Spm " + (typeof(SpmMetadataKeys).Assembly.GetName().Version is { } v ? $"{v.Major}.{v.Minor}.{v.Build}" : "unknown");

    /// <summary>The writer recorded in <paramref name="metadata"/>: <see cref="Writer"/>, else the older <see cref="LegacyWriter"/>; null when neither is there.</summary>
    public static string? WriterOf(IReadOnlyDictionary<string, string> metadata)
    {
        ArgumentNullException.ThrowIfNull(metadata);
        return metadata.TryGetValue(Writer, out var w) ? w : metadata.TryGetValue(LegacyWriter, out var g) ? g : null;
    }
}
