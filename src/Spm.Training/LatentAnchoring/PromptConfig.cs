using Spm.Core;
using YamlDotNet.RepresentationModel;

namespace Spm.Training.LatentAnchoring;

/// <summary>
/// Reads prompt configs in the reference implementation's YAML layout (a list of entries with
/// <c>target, positive, unconditional, neutral, action, guidance_scale, resolution, batch_size,
/// dynamic_resolution, la_strength, sampling_batch_size</c>) so existing configs work unchanged.
/// </summary>
public static class PromptConfig
{
    private const long MaxFileBytes = 1 << 20;

    /// <summary>Loads every entry of <paramref name="path"/> as options layered over <paramref name="defaults"/>.</summary>
    /// <exception cref="SpmFormatException">The file is not valid YAML of that layout; the message names the file and field.</exception>
    public static IReadOnlyList<LatentAnchoringOptions> Load(string path, LatentAnchoringOptions defaults)
    {
        var info = new FileInfo(path);
        if (!info.Exists) throw new SpmFormatException(path, null, "prompt config not found.");
        if (info.Length > MaxFileBytes) throw new SpmFormatException(path, null, $"prompt config is {info.Length} bytes; at most {MaxFileBytes} are accepted.");
        return Parse(File.ReadAllText(path), defaults, path);
    }

    /// <summary>Parses YAML text (see <see cref="Load"/>).</summary>
    public static IReadOnlyList<LatentAnchoringOptions> Parse(string yaml, LatentAnchoringOptions defaults, string? fileName = null)
    {
        var stream = new YamlStream();
        try
        {
            YamlDepthGuard.Check(yaml, fileName, MaxDepth);
            stream.Load(new StringReader(yaml));
        }
        catch (Exception ex) when (ex is YamlDotNet.Core.YamlException or InvalidOperationException or ArgumentException)
        {
            throw new SpmFormatException(fileName, null, $"invalid YAML: {ex.Message}", ex);
        }
        if (stream.Documents.Count == 0) throw new SpmFormatException(fileName, null, "the prompt config is empty.");
        var root = stream.Documents[0].RootNode;
        var entries = root switch
        {
            YamlSequenceNode seq => seq.Children.ToList(),
            YamlMappingNode map => new List<YamlNode> { map },
            _ => throw new SpmFormatException(fileName, null, "expected a list of prompt entries."),
        };
        var result = new List<LatentAnchoringOptions>();
        for (int i = 0; i < entries.Count; i++)
        {
            if (entries[i] is not YamlMappingNode map) throw new SpmFormatException(fileName, $"[{i}]", "each entry must be a mapping.");
            result.Add(ParseEntry(map, defaults, fileName, i));
        }
        return result;
    }

    /// <summary>Deepest nesting a prompt config needs is 2 (a list of mappings); anything far deeper is hostile.</summary>
    private const int MaxDepth = 16;

    private static LatentAnchoringOptions ParseEntry(YamlMappingNode map, LatentAnchoringOptions defaults, string? file, int index)
    {
        var o = defaults;
        string? target = null;
        foreach (var (k, v) in map.Children)
        {
            var key = (k as YamlScalarNode)?.Value ?? throw new SpmFormatException(file, $"[{index}]", "keys must be plain strings.");
            string where = $"[{index}].{key}";
            if (v is not YamlScalarNode scalar) throw new SpmFormatException(file, where, "expected a scalar value.");
            string text = scalar.Value ?? "";
            switch (key)
            {
                case "target": target = text; break;
                case "positive": o = o with { Positive = text }; break;
                case "unconditional": o = o with { Unconditional = text }; break;
                case "neutral": o = o with { Surrogate = text }; break;
                case "action":
                    o = o with
                    {
                        Action = text switch
                        {
                            "erase" => TrainingAction.Erase,
                            "erase_with_la" => TrainingAction.EraseWithAnchoring,
                            _ => throw new SpmFormatException(file, where, $"unknown action '{text}' (expected erase or erase_with_la)."),
                        },
                    };
                    break;
                case "guidance_scale": o = o with { Eta = ParseDouble(text, file, where) }; break;
                case "resolution": o = o with { Resolution = ParseInt(text, file, where) }; break;
                case "batch_size": o = o with { BatchSize = ParseInt(text, file, where) }; break;
                case "dynamic_resolution": o = o with { DynamicResolution = ParseBool(text, file, where) }; break;
                case "la_strength": o = o with { AnchorStrength = ParseDouble(text, file, where) }; break;
                case "sampling_batch_size": o = o with { AnchorCount = ParseInt(text, file, where) }; break;
                default: break; // Unknown keys (e.g. from newer reference versions) are ignored on purpose.
            }
        }
        if (string.IsNullOrWhiteSpace(target)) throw new SpmFormatException(file, $"[{index}].target", "the target concept is missing.");
        o = o with { Concept = target };
        if (o.Positive == target) o = o with { Positive = null };
        try { o.Validate(); }
        catch (ArgumentException ex) { throw new SpmFormatException(file, $"[{index}]", ex.Message); }
        return o;
    }

    private static double ParseDouble(string s, string? file, string where)
        => double.TryParse(s, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var d) && double.IsFinite(d)
            ? d : throw new SpmFormatException(file, where, $"'{s}' is not a number.");

    private static int ParseInt(string s, string? file, string where)
        => int.TryParse(s, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out var i)
            ? i : throw new SpmFormatException(file, where, $"'{s}' is not an integer.");

    private static bool ParseBool(string s, string? file, string where) => s.ToLowerInvariant() switch
    {
        "true" or "yes" or "1" => true,
        "false" or "no" or "0" => false,
        _ => throw new SpmFormatException(file, where, $"'{s}' is not a boolean."),
    };
}
