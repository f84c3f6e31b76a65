using System.Text.Json;
using Spm.Core;

namespace Spm.Training.LatentAnchoring;

/// <summary>
/// Trainer settings a model folder recommends for itself (<c>spm_train_defaults.json</c> at its root): the spec's
/// defaults (anchor strength 1000, lr 1e-4, 3000 iterations, warm-up 500) are tuned for SD 1.x, and other bases need
/// their own ("other bases need tuning"). <c>spm train</c> uses them for options the user did not give.
/// </summary>
/// <param name="AnchorStrength">Anchoring strength lambda, or null.</param>
/// <param name="LearningRate">AdamW learning rate, or null.</param>
/// <param name="Iterations">Training iterations, or null.</param>
/// <param name="WarmupSteps">Warm-up steps, or null.</param>
public sealed record ModelTrainingDefaults(double? AnchorStrength, double? LearningRate, int? Iterations, int? WarmupSteps)
{
    /// <summary>The file name, at the root of a pipeline folder.</summary>
    public const string FileName = "spm_train_defaults.json";

    /// <summary>The values set, for logs: e.g. <c>anchor strength 10, lr 0.01, 200 iterations, warm-up 15</c>.</summary>
    public override string ToString()
    {
        var parts = new List<string>();
        var c = System.Globalization.CultureInfo.InvariantCulture;
        if (AnchorStrength is { } a) parts.Add(string.Create(c, $"anchor strength {a}"));
        if (LearningRate is { } l) parts.Add(string.Create(c, $"lr {l}"));
        if (Iterations is { } i) parts.Add(string.Create(c, $"{i} iterations"));
        if (WarmupSteps is { } w) parts.Add(string.Create(c, $"warm-up {w}"));
        return parts.Count == 0 ? "nothing set" : string.Join(", ", parts);
    }

    /// <summary>Reads the folder's defaults; null when it has none.</summary>
    /// <exception cref="SpmFormatException">The file is not a JSON object of the known keys with valid values (names the key).</exception>
    public static ModelTrainingDefaults? Load(string modelFolder)
    {
        ArgumentNullException.ThrowIfNull(modelFolder);
        var path = Path.Combine(modelFolder, FileName);
        if (!File.Exists(path)) return null;
        if (new FileInfo(path).Length > 64 * 1024) throw new SpmFormatException(path, "", "is larger than 64 KB.");
        JsonDocument doc;
        try { doc = JsonDocument.Parse(File.ReadAllText(path), new JsonDocumentOptions { MaxDepth = 8 }); }
        catch (JsonException e) { throw new SpmFormatException(path, "", $"is not valid JSON ({e.Message})."); }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new SpmFormatException(path, "", "must be a JSON object.");
            double? anchor = null, lr = null;
            int? iterations = null, warmup = null;
            foreach (var p in doc.RootElement.EnumerateObject())
            {
                switch (p.Name)
                {
                    case "anchor_strength": anchor = Number(path, p, 0, 1e9); break;
                    case "lr": lr = Number(path, p, double.Epsilon, 10); break;
                    case "iterations": iterations = (int)Number(path, p, 1, 10_000_000, integer: true); break;
                    case "warmup": warmup = (int)Number(path, p, 0, 10_000_000, integer: true); break;
                    default:
                        if (!p.Name.StartsWith('_')) throw new SpmFormatException(path, p.Name, "is not a known key (anchor_strength, lr, iterations, warmup; keys starting with '_' are comments).");
                        break;
                }
            }
            return new ModelTrainingDefaults(anchor, lr, iterations, warmup);
        }
    }

    private static double Number(string path, JsonProperty p, double min, double max, bool integer = false)
    {
        if (p.Value.ValueKind != JsonValueKind.Number || !p.Value.TryGetDouble(out double v) || !double.IsFinite(v))
            throw new SpmFormatException(path, p.Name, "must be a number.");
        if (v < min || v > max || (integer && v != Math.Floor(v)))
            throw new SpmFormatException(path, p.Name, $"is out of range: {p.Value.GetRawText()}.");
        return v;
    }
}
