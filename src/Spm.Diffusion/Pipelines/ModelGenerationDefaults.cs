using Spm.Core;

namespace Spm.Diffusion.Pipelines;

/// <summary>
/// Sampling settings a model folder recommends for itself (<c>spm_generate_defaults.json</c> at its root). SD 1.x's
/// usual guidance 7.5 and 30 steps suit SD; a small model trained here may draw best at another guidance (the built-in
/// tiny-shapes model: 3). <c>spm generate</c> and <c>spm eval</c> use them for options the user did not give.
/// </summary>
/// <param name="GuidanceScale">Classifier-free guidance scale, or null.</param>
/// <param name="Steps">Denoising steps, or null.</param>
public sealed record ModelGenerationDefaults(double? GuidanceScale, int? Steps)
{
    /// <summary>The file name, at the root of a pipeline folder.</summary>
    public const string FileName = "spm_generate_defaults.json";

    private static readonly Dictionary<string, (double, double, bool)> Keys = new(StringComparer.Ordinal)
    {
        ["guidance_scale"] = (0, 100, false),
        ["steps"] = (1, 1000, true),
    };

    /// <summary>Reads the folder's defaults; null when it has none.</summary>
    /// <exception cref="SpmFormatException">The file is not a JSON object of the known keys with valid values (names the key).</exception>
    public static ModelGenerationDefaults? Load(string modelFolder)
    {
        ArgumentNullException.ThrowIfNull(modelFolder);
        var values = ModelDefaultsFile.Read(Path.Combine(modelFolder, FileName), Keys);
        if (values is null) return null;
        return new ModelGenerationDefaults(
            values.TryGetValue("guidance_scale", out var g) ? g : null,
            values.TryGetValue("steps", out var s) ? (int)s : null);
    }

    /// <summary>The values set, for logs: e.g. <c>guidance 3, 20 steps</c>.</summary>
    public override string ToString()
    {
        var parts = new List<string>();
        if (GuidanceScale is { } g) parts.Add("guidance " + ModelDefaultsFile.Format(g));
        if (Steps is { } s) parts.Add($"{s} steps");
        return parts.Count == 0 ? "nothing set" : string.Join(", ", parts);
    }
}
