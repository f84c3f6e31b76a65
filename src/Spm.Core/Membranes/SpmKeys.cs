namespace Spm.Core.Membranes;

/// <summary>
/// The key layout of SPM (and kohya-style LoRA) files: <c>lora_unet_&lt;module path with '.' → '_'&gt;</c> followed by
/// <see cref="DownSuffix"/>, <see cref="UpSuffix"/> or <see cref="AlphaSuffix"/>.
/// </summary>
/// <remarks>
/// The mapping from module path to key is not reversible (module names contain underscores), so keys are never
/// split on '_': build the key of every real module path with <see cref="KeyFor"/> and look keys up
/// (<see cref="BuildIndex"/>).
/// </remarks>
public static class SpmKeys
{
    /// <summary>Prefix of every UNet membrane key.</summary>
    public const string UnetPrefix = "lora_unet_";

    /// <summary>Suffix of the down (in → r) weight.</summary>
    public const string DownSuffix = ".lora_down.weight";

    /// <summary>Suffix of the up (r → out) weight.</summary>
    public const string UpSuffix = ".lora_up.weight";

    /// <summary>Suffix of the scalar alpha.</summary>
    public const string AlphaSuffix = ".alpha";

    /// <summary>The key of a UNet module path, e.g. <c>down_blocks.0.attentions.0.proj_in</c> → <c>lora_unet_down_blocks_0_attentions_0_proj_in</c>.</summary>
    public static string KeyFor(string modulePath)
    {
        ArgumentException.ThrowIfNullOrEmpty(modulePath);
        return UnetPrefix + modulePath.Replace('.', '_');
    }

    /// <summary>
    /// Maps the key of every module path to that path. Two paths with the same key (possible in principle, e.g.
    /// <c>a.b_c</c> and <c>a_b.c</c>) are kept out of the index and listed in <paramref name="ambiguous"/>, so that
    /// a key never silently resolves to the wrong layer.
    /// </summary>
    public static Dictionary<string, string> BuildIndex(IEnumerable<string> modulePaths, out IReadOnlyDictionary<string, IReadOnlyList<string>> ambiguous)
    {
        ArgumentNullException.ThrowIfNull(modulePaths);
        var index = new Dictionary<string, string>(StringComparer.Ordinal);
        var clashes = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        foreach (var path in modulePaths)
        {
            var key = KeyFor(path);
            if (clashes.TryGetValue(key, out var list)) { if (!list.Contains(path)) list.Add(path); continue; }
            if (index.TryGetValue(key, out var other))
            {
                if (other == path) continue;
                index.Remove(key);
                clashes[key] = new List<string> { other, path };
                continue;
            }
            index[key] = path;
        }
        ambiguous = clashes.ToDictionary(kv => kv.Key, kv => (IReadOnlyList<string>)kv.Value, StringComparer.Ordinal);
        return index;
    }

    /// <summary>Splits a tensor name into its membrane key and part, by the known suffixes only.</summary>
    /// <returns>False when the name ends in none of the three suffixes or the key before it is empty.</returns>
    public static bool TrySplitTensorName(string tensorName, out string key, out MembranePart part)
    {
        ArgumentNullException.ThrowIfNull(tensorName);
        (string suffix, MembranePart p)[] suffixes = { (DownSuffix, MembranePart.Down), (UpSuffix, MembranePart.Up), (AlphaSuffix, MembranePart.Alpha) };
        foreach (var (suffix, p) in suffixes)
        {
            if (tensorName.Length > suffix.Length && tensorName.EndsWith(suffix, StringComparison.Ordinal))
            {
                key = tensorName[..^suffix.Length];
                part = p;
                return true;
            }
        }
        key = "";
        part = default;
        return false;
    }

    /// <summary>The tensor name of one part of membrane <paramref name="key"/>.</summary>
    public static string TensorName(string key, MembranePart part) => key + part switch
    {
        MembranePart.Down => DownSuffix,
        MembranePart.Up => UpSuffix,
        MembranePart.Alpha => AlphaSuffix,
        _ => throw new ArgumentOutOfRangeException(nameof(part)),
    };
}

/// <summary>The three tensors of a membrane in a file.</summary>
public enum MembranePart
{
    /// <summary>The down weight, [r, in] or [r, in, kh, kw].</summary>
    Down,
    /// <summary>The up weight, [out, r] or [out, r, 1, 1].</summary>
    Up,
    /// <summary>The scalar alpha.</summary>
    Alpha,
}
