using System.Text.Json.Serialization;

namespace Spm.Core.Library;

/// <summary>One SPM of a library, as its index records it.</summary>
/// <param name="Concept">The concept the SPM erases: the library's key (unique, compared case-insensitively).</param>
/// <param name="Prompts">The SPM's prompts (its metadata 'prompts').</param>
/// <param name="File">The file: a name inside the library folder (a copy), or a full path (a reference).</param>
/// <param name="Sha256">The file's SHA-256, lowercase hex.</param>
/// <param name="Rank">The SPM's rank (metadata).</param>
/// <param name="Alpha">The SPM's alpha (metadata).</param>
/// <param name="BaseModel">The base model the SPM was trained on (metadata 'base_model'), if recorded.</param>
/// <param name="GateCalibration">How its gate can be read: <c>learned</c> when the file holds a gate probe, else <c>cosine</c>.</param>
/// <param name="Version">1 when first added; one more each time the concept is replaced.</param>
/// <param name="Referenced">True when <paramref name="File"/> is a reference to a file outside the folder (not copied).</param>
/// <param name="Training">The SPM's training settings (its metadata 'training', a JSON object string), if recorded.</param>
/// <param name="ModelFamily">The model family the SPM's layers belong to (<see cref="Membranes.SpmModelFamily"/>: sd1, sd2, sdxl), if known.</param>
public sealed record LibraryEntry(
    [property: JsonPropertyName("concept")] string Concept,
    [property: JsonPropertyName("prompts")] IReadOnlyList<string> Prompts,
    [property: JsonPropertyName("file")] string File,
    [property: JsonPropertyName("sha256")] string Sha256,
    [property: JsonPropertyName("rank")] int Rank,
    [property: JsonPropertyName("alpha")] float Alpha,
    [property: JsonPropertyName("base_model")] string? BaseModel,
    [property: JsonPropertyName("gate_calibration")] string GateCalibration,
    [property: JsonPropertyName("version")] int Version,
    [property: JsonPropertyName("referenced")] bool Referenced = false,
    [property: JsonPropertyName("training"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Training = null,
    [property: JsonPropertyName("model_family"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? ModelFamily = null);

/// <summary>The library's index file, as stored.</summary>
/// <param name="Format">Always <see cref="SpmLibrary.FormatName"/>.</param>
/// <param name="FormatVersion">The index layout's version (<see cref="SpmLibrary.FormatVersion"/>).</param>
/// <param name="Entries">The SPMs, in the order they were added.</param>
/// <param name="History">Entries replaced by a newer version of their concept, oldest first (their files are gone unless referenced); absent when none was.</param>
public sealed record LibraryIndex(
    [property: JsonPropertyName("format")] string Format,
    [property: JsonPropertyName("format_version")] int FormatVersion,
    [property: JsonPropertyName("entries")] IReadOnlyList<LibraryEntry> Entries,
    [property: JsonPropertyName("history"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] IReadOnlyList<LibraryEntry>? History = null);

/// <summary>How a concept differs between two libraries (<see cref="SpmLibrary.Diff"/>).</summary>
public enum LibraryChangeKind
{
    /// <summary>Only in the second library.</summary>
    Added,

    /// <summary>Only in the first library.</summary>
    Removed,

    /// <summary>In both, with different recorded fields.</summary>
    Changed,
}

/// <summary>One field of an entry that differs.</summary>
/// <param name="Field">The index field's name (<c>sha256</c>, <c>version</c>, <c>rank</c>, ...).</param>
/// <param name="Old">Its value in the first library.</param>
/// <param name="New">Its value in the second.</param>
public sealed record LibraryFieldChange(string Field, string Old, string New);

/// <summary>One concept that differs between two libraries.</summary>
/// <param name="Concept">The concept.</param>
/// <param name="Kind">Added, removed or changed.</param>
/// <param name="Old">Its entry in the first library (null when added).</param>
/// <param name="New">Its entry in the second library (null when removed).</param>
/// <param name="Fields">For a change, the fields that differ (hash, version, settings), in index order.</param>
public sealed record LibraryChange(string Concept, LibraryChangeKind Kind, LibraryEntry? Old, LibraryEntry? New, IReadOnlyList<LibraryFieldChange> Fields);

/// <summary>One problem <see cref="SpmLibrary.Verify"/> found.</summary>
/// <param name="Concept">The entry's concept.</param>
/// <param name="File">The file involved, as the index names it.</param>
/// <param name="Message">What is wrong, naming the file.</param>
public sealed record LibraryProblem(string Concept, string File, string Message);
