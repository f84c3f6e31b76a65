using System.Globalization;
using System.Text.Json;
using Spm.Core;

namespace Spm.Diffusion.Pipelines;

/// <summary>
/// Reads the small JSON files in which a model folder recommends settings for itself (<c>spm_generate_defaults.json</c>,
/// <c>spm_train_defaults.json</c>): one object of known keys with numeric values; keys starting with <c>_</c> are
/// comments. Errors name the file and the key.
/// </summary>
public static class ModelDefaultsFile
{
    /// <summary>Largest file accepted (these files hold a handful of numbers).</summary>
    public const int MaxBytes = 64 * 1024;

    /// <summary>Reads <paramref name="path"/>; null when it does not exist.</summary>
    /// <param name="path">The file.</param>
    /// <param name="keys">The known keys with their allowed range and whether they must be whole numbers.</param>
    /// <returns>The values found, by key.</returns>
    /// <exception cref="SpmFormatException">Not a JSON object, an unknown key, a value that is not a number or is out of range.</exception>
    public static IReadOnlyDictionary<string, double>? Read(string path, IReadOnlyDictionary<string, (double Min, double Max, bool Integer)> keys)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(keys);
        if (!File.Exists(path)) return null;
        if (new FileInfo(path).Length > MaxBytes) throw new SpmFormatException(path, "", $"is larger than {MaxBytes / 1024} KB.");
        JsonDocument doc;
        try { doc = JsonDocument.Parse(File.ReadAllText(path), new JsonDocumentOptions { MaxDepth = 8 }); }
        catch (JsonException e) { throw new SpmFormatException(path, "", $"is not valid JSON ({e.Message})."); }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new SpmFormatException(path, "", "must be a JSON object.");
            var values = new Dictionary<string, double>(StringComparer.Ordinal);
            foreach (var p in doc.RootElement.EnumerateObject())
            {
                if (p.Name.StartsWith('_')) continue;
                if (!keys.TryGetValue(p.Name, out var range))
                    throw new SpmFormatException(path, p.Name, $"is not a known key ({string.Join(", ", keys.Keys)}; keys starting with '_' are comments).");
                if (p.Value.ValueKind != JsonValueKind.Number || !p.Value.TryGetDouble(out double v) || !double.IsFinite(v))
                    throw new SpmFormatException(path, p.Name, "must be a number.");
                if (v < range.Min || v > range.Max || (range.Integer && v != Math.Floor(v)))
                    throw new SpmFormatException(path, p.Name, $"is out of range: {p.Value.GetRawText()}.");
                values[p.Name] = v;
            }
            return values;
        }
    }

    /// <summary>Formats a value for logs with the invariant culture.</summary>
    internal static string Format(double v) => v.ToString(CultureInfo.InvariantCulture);
}
