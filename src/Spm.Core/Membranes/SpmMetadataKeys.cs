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

    /// <summary>Training settings as a compact JSON object string.</summary>
    public const string Training = "training";

    /// <summary>The library and version that wrote the file, e.g. <c>Spm 0.1.0</c>.</summary>
    public const string Writer = "writer";
}
