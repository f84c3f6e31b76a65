using System.Globalization;

namespace Spm.Core.Membranes;

/// <summary>
/// The configuration half of an SPM adapter (PEFT-like: an adapter is a config plus a state dict): the erased
/// concepts and the nominal rank and alpha, plus any extra metadata strings (surrogate, base model, training settings...).
/// </summary>
/// <param name="Prompts">The erased concepts (the file's comma-separated <c>prompts</c>).</param>
/// <param name="Rank">Nominal rank (metadata <c>rank</c>); each membrane's own rank comes from its tensors.</param>
/// <param name="Alpha">Nominal alpha (metadata <c>alpha</c>).</param>
/// <param name="Extra">Metadata other than <c>prompts</c>, <c>rank</c>, <c>alpha</c>; written back verbatim.</param>
public sealed record SpmConfig(IReadOnlyList<string> Prompts, int Rank, float Alpha, IReadOnlyDictionary<string, string>? Extra = null)
{
    /// <summary>Metadata key of the comma-separated concepts.</summary>
    public const string PromptsKey = "prompts";

    /// <summary>Metadata key of the rank.</summary>
    public const string RankKey = "rank";

    /// <summary>Metadata key of alpha.</summary>
    public const string AlphaKey = "alpha";

    /// <summary>Extra metadata (never null).</summary>
    public IReadOnlyDictionary<string, string> Extra { get; init; } = Extra ?? new Dictionary<string, string>();

    /// <summary>The library that wrote the file (<c>writer</c>, or <c>generator</c> in older files); null when not recorded.</summary>
    public string? Writer => SpmMetadataKeys.WriterOf(Extra);

    /// <summary>Splits a <c>prompts</c> string on commas, trimming blanks and dropping empty items.</summary>
    public static IReadOnlyList<string> ParsePrompts(string prompts)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        return prompts.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
    }

    /// <summary>The complete metadata to write: <c>prompts</c> (joined with ","), <c>rank</c>, <c>alpha</c> (Python float text, e.g. "1.0"), then <see cref="Extra"/>.</summary>
    public Dictionary<string, string> ToMetadata()
    {
        var md = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var kv in Extra) md[kv.Key] = kv.Value;
        md[PromptsKey] = string.Join(",", Prompts);
        md[RankKey] = Rank.ToString(CultureInfo.InvariantCulture);
        md[AlphaKey] = FormatFloat(Alpha);
        return md;
    }

    /// <summary>Formats like Python's <c>str(float)</c> for ordinary values (1 → "1.0", 0.5 → "0.5", 1e-05 → "1e-05"), which is what official files hold.</summary>
    internal static string FormatFloat(float value)
    {
        var s = value.ToString("R", CultureInfo.InvariantCulture);
        int e = s.IndexOf('E');
        if (e >= 0)
        {
            var mantissa = s[..e];
            var exp = int.Parse(s[(e + 1)..], CultureInfo.InvariantCulture);
            return $"{mantissa}e{(exp < 0 ? "-" : "+")}{Math.Abs(exp):00}";
        }
        return s.Contains('.') || !float.IsFinite(value) ? s : s + ".0";
    }
}
