using System.Globalization;
using Spm.Core;

namespace Spm.Cli.Commands;

/// <summary>
/// One <c>--spm</c> value: <c>FILE</c> or <c>FILE:MULTIPLIER</c>, where FILE may also be a bare name (<c>circle</c>) of
/// an SPM in the model's <c>spm/</c> folder. Parsed and checked before any model loads, so a typo is a message naming
/// the value rather than a "file not found" for a path with the multiplier glued on.
/// </summary>
/// <param name="Path">The SPM file, resolved.</param>
/// <param name="Multiplier">The fixed multiplier after ':', or null (the gate decides).</param>
internal sealed record SpmFileArgument(string Path, float? Multiplier)
{
    /// <summary>The syntax, for the options' help.</summary>
    public const string Syntax =
        "FILE or FILE:MULTIPLIER (the multiplier fixes the gate); a bare name such as 'circle' means MODEL/spm/circle.safetensors when no such file is in the current folder";

    /// <summary>The folder of a model that holds its own SPMs.</summary>
    public const string ModelSpmFolder = "spm";

    /// <summary>Parses and resolves every value of <paramref name="option"/>.</summary>
    /// <exception cref="SpmException">A multiplier is not a number (or is given where none is allowed).</exception>
    /// <exception cref="SpmInputNotFoundException">A file does not exist.</exception>
    public static IReadOnlyList<SpmFileArgument> ParseAll(IEnumerable<string> values, string? modelFolder, string option = "--spm", bool allowMultiplier = true)
        => values.Select(v => Parse(v, modelFolder, option, allowMultiplier)).ToList();

    /// <summary>Parses and resolves one value (see <see cref="ParseAll"/>).</summary>
    public static SpmFileArgument Parse(string value, string? modelFolder, string option = "--spm", bool allowMultiplier = true)
    {
        ArgumentNullException.ThrowIfNull(value);
        // A file whose name holds a colon is taken as it is.
        if (File.Exists(value)) return new SpmFileArgument(value, null);
        var (file, multiplierText) = Split(value);
        float? multiplier = null;
        if (multiplierText is not null)
        {
            if (!allowMultiplier)
                throw new SpmException($"{option} '{value}': this verb takes FILE without a multiplier.");
            if (!float.TryParse(multiplierText, NumberStyles.Float, CultureInfo.InvariantCulture, out var m) || !float.IsFinite(m))
                throw new SpmException($"{option} '{value}': the multiplier after ':' must be a number (got '{multiplierText}'); write FILE or FILE:MULTIPLIER, e.g. circle.safetensors:0.8.");
            multiplier = m;
        }
        return new SpmFileArgument(Resolve(file, modelFolder, option), multiplier);
    }

    // FILE:MULT splits at the last colon; a drive letter ("C:\x") is not a multiplier.
    private static (string File, string? Multiplier) Split(string value)
    {
        int colon = value.LastIndexOf(':');
        if (colon <= 0 || (colon == 1 && char.IsAsciiLetter(value[0]) && value.Length > 2 && value[2] is '\\' or '/')) return (value, null);
        return (value[..colon], value[(colon + 1)..]);
    }

    private static string Resolve(string file, string? modelFolder, string option)
    {
        if (File.Exists(file)) return file;
        bool bareName = file.Length > 0 && System.IO.Path.GetFileName(file) == file;
        string? modelSpms = modelFolder is not null && Directory.Exists(modelFolder) ? System.IO.Path.Combine(modelFolder, ModelSpmFolder) : null;
        if (bareName && modelSpms is not null)
        {
            var named = System.IO.Path.Combine(modelSpms, file.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase) ? file : file + ".safetensors");
            if (File.Exists(named)) return named;
        }
        var known = modelSpms is not null && Directory.Exists(modelSpms)
            ? Directory.EnumerateFiles(modelSpms, "*.safetensors").Select(f => System.IO.Path.GetFileNameWithoutExtension(f)).Order(StringComparer.Ordinal).ToList()
            : [];
        var advice = known.Count > 0 && bareName ? $"not in the current folder nor in the model's {ModelSpmFolder}/ folder (which has: {string.Join(", ", known)})." : null;
        throw new SpmInputNotFoundException(file, $"{option} file", advice);
    }
}
