using System.Text.Json;
using System.Text.Json.Nodes;
using Spm.Core.Membranes;

namespace Spm.Training.LatentAnchoring;

/// <summary>What an SPM file records about its training (the <c>training</c> metadata the trainer writes).</summary>
public static class TrainingRecord
{
    /// <summary>The action the SPM was trained with (<c>erase</c>, <c>erase_with_la</c>); null when the file does not say or the record is unreadable.</summary>
    /// <param name="metadata">The file's metadata (<c>SafeTensorsFile.Metadata</c> or <c>SpmConfig.Extra</c>).</param>
    public static string? ActionOf(IReadOnlyDictionary<string, string> metadata)
    {
        ArgumentNullException.ThrowIfNull(metadata);
        if (!metadata.TryGetValue(SpmMetadataKeys.Training, out var json)) return null;
        try
        {
            return JsonNode.Parse(json)?["action"]?.GetValue<string>();
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException or FormatException)
        {
            // A hand-edited or foreign record: no verdict rather than a failed evaluation.
            return null;
        }
    }

    /// <summary>
    /// The concept prompts of a family membrane (<c>spm train --concept-family</c> records them as <c>family</c>); null
    /// when the file was not trained as a family, does not say, or the record is unreadable.
    /// </summary>
    /// <param name="metadata">The file's metadata (<c>SafeTensorsFile.Metadata</c> or <c>SpmConfig.Extra</c>).</param>
    public static IReadOnlyList<string>? FamilyOf(IReadOnlyDictionary<string, string> metadata)
    {
        ArgumentNullException.ThrowIfNull(metadata);
        if (!metadata.TryGetValue(SpmMetadataKeys.Training, out var json)) return null;
        try
        {
            if (JsonNode.Parse(json)?["family"] is not JsonArray family) return null;
            var prompts = family.Select(p => p?.GetValue<string>()).OfType<string>().ToArray();
            return prompts.Length == 0 ? null : prompts;
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException or FormatException)
        {
            return null;
        }
    }
}
