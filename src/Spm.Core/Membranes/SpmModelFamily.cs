namespace Spm.Core.Membranes;

/// <summary>The model family an SPM was made for, as a library records it.</summary>
public static class SpmModelFamily
{
    /// <summary>Stable Diffusion 1.x (CLIP ViT-L text, 768 wide).</summary>
    public const string Sd1 = "sd1";

    /// <summary>Stable Diffusion 2.x (OpenCLIP ViT-H text, 1024 wide).</summary>
    public const string Sd2 = "sd2";

    /// <summary>Stable Diffusion XL (two text encoders, 2048 wide together).</summary>
    public const string Sdxl = "sdxl";

    /// <summary>
    /// The family recorded in the file's <see cref="SpmMetadataKeys.ModelFamily"/> metadata; for files without it (the
    /// official release, other tools), the family whose text width the cross-attention key/value membranes read
    /// (768, 1024 or 2048 input features on an <c>attn2</c> <c>to_k</c>/<c>to_v</c> layer); null when neither tells.
    /// </summary>
    public static string? Of(SpmAdapter adapter)
    {
        ArgumentNullException.ThrowIfNull(adapter);
        if (adapter.Config.Extra.TryGetValue(SpmMetadataKeys.ModelFamily, out var recorded) && !string.IsNullOrWhiteSpace(recorded))
            return recorded;
        foreach (var m in adapter.Membranes)
        {
            var name = m.ModulePath ?? m.Key;
            if (!name.Contains("attn2", StringComparison.Ordinal) || !(name.EndsWith("to_k", StringComparison.Ordinal) || name.EndsWith("to_v", StringComparison.Ordinal)))
                continue;
            return m.InFeatures switch { 768 => Sd1, 1024 => Sd2, 2048 => Sdxl, _ => null };
        }
        return null;
    }
}
