using Spm.Core;
using Spm.Diffusion.Pipelines;

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

    private static readonly Dictionary<string, (double, double, bool)> Keys = new(StringComparer.Ordinal)
    {
        ["anchor_strength"] = (0, 1e9, false),
        ["lr"] = (double.Epsilon, 10, false),
        ["iterations"] = (1, 10_000_000, true),
        ["warmup"] = (0, 10_000_000, true),
    };

    /// <summary>Reads the folder's defaults; null when it has none.</summary>
    /// <exception cref="SpmFormatException">The file is not a JSON object of the known keys with valid values (names the key).</exception>
    public static ModelTrainingDefaults? Load(string modelFolder)
    {
        ArgumentNullException.ThrowIfNull(modelFolder);
        var values = ModelDefaultsFile.Read(Path.Combine(modelFolder, FileName), Keys);
        if (values is null) return null;
        double? Get(string key) => values.TryGetValue(key, out var v) ? v : null;
        return new ModelTrainingDefaults(Get("anchor_strength"), Get("lr"), (int?)Get("iterations"), (int?)Get("warmup"));
    }
}
