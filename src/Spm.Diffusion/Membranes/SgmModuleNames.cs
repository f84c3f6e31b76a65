using System.Globalization;
using System.Text.RegularExpressions;
using Spm.Core.Membranes;

namespace Spm.Diffusion.Membranes;

/// <summary>
/// The other key layout of SDXL membrane files: kohya's SDXL trainer (and files made with it) names UNet modules by
/// Stability's original (SGM/CompVis) UNet instead of diffusers', e.g. <c>lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q</c>
/// for diffusers' <c>down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q</c>. The official SPM trainer uses
/// diffusers' names, which stay the layout spm writes; this maps the SGM names of transformer layers back so such files
/// load too. With L resnets per down block (SDXL: 2): down block i, attention j → <c>input_blocks.{1 + i(L+1) + j}.1</c>;
/// the mid block's attention → <c>middle_block.1</c>; up block i, attention j → <c>output_blocks.{i(L+1) + j}.1</c>;
/// the path inside the transformer (<c>proj_in</c>, <c>transformer_blocks.N.attn2.to_k</c>, ...) is the same in both.
/// </summary>
public static partial class SgmModuleNames
{
    [GeneratedRegex(@"^down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)$", RegexOptions.CultureInvariant)]
    private static partial Regex DownAttention();

    [GeneratedRegex(@"^up_blocks\.(\d+)\.attentions\.(\d+)\.(.+)$", RegexOptions.CultureInvariant)]
    private static partial Regex UpAttention();

    [GeneratedRegex(@"^down_blocks\.\d+\.(resnets|attentions)\.(\d+)\.", RegexOptions.CultureInvariant)]
    private static partial Regex DownLayer();

    /// <summary>
    /// The SGM key (<see cref="SpmKeys.KeyFor"/> of the SGM path) of every transformer-layer module path in
    /// <paramref name="diffusersPaths"/>, mapped to that diffusers path. Resnets per down block are counted from the
    /// paths themselves (the down blocks' resnets, else their attentions).
    /// </summary>
    public static IReadOnlyDictionary<string, string> KeyAliases(IEnumerable<string> diffusersPaths)
    {
        ArgumentNullException.ThrowIfNull(diffusersPaths);
        var paths = diffusersPaths.Distinct(StringComparer.Ordinal).ToList();
        int perBlock = 0;
        foreach (var p in paths)
            if (DownLayer().Match(p) is { Success: true } m)
                perBlock = Math.Max(perBlock, int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture) + 1);
        var aliases = new Dictionary<string, string>(StringComparer.Ordinal);
        if (perBlock == 0) return aliases;
        foreach (var p in paths)
        {
            string? sgm = null;
            if (DownAttention().Match(p) is { Success: true } d)
                sgm = $"input_blocks.{1 + Int(d, 1) * (perBlock + 1) + Int(d, 2)}.1.{d.Groups[3].Value}";
            else if (UpAttention().Match(p) is { Success: true } u)
                sgm = $"output_blocks.{Int(u, 1) * (perBlock + 1) + Int(u, 2)}.1.{u.Groups[3].Value}";
            else if (p.StartsWith("mid_block.attentions.0.", StringComparison.Ordinal))
                sgm = "middle_block.1." + p["mid_block.attentions.0.".Length..];
            if (sgm is not null) aliases.TryAdd(SpmKeys.KeyFor(sgm), p);
        }
        return aliases;
    }

    private static int Int(Match m, int group) => int.Parse(m.Groups[group].Value, CultureInfo.InvariantCulture);

    /// <summary>
    /// Resolves the membranes of <paramref name="adapter"/> that diffusers' names left unresolved through their SGM names
    /// (<see cref="KeyAliases"/>); the others are kept as they are.
    /// </summary>
    public static SpmAdapter ResolveAliases(SpmAdapter adapter, IEnumerable<string> diffusersPaths)
    {
        ArgumentNullException.ThrowIfNull(adapter);
        if (adapter.Membranes.All(m => m.ModulePath is not null)) return adapter;
        var aliases = KeyAliases(diffusersPaths);
        if (aliases.Count == 0) return adapter;
        bool changed = false;
        var membranes = adapter.Membranes.Select(m =>
        {
            if (m.ModulePath is not null || !aliases.TryGetValue(m.Key, out var path)) return m;
            changed = true;
            return m.WithModulePath(path);
        }).ToList();
        return changed ? new SpmAdapter(adapter.Config, membranes, adapter.StorageDType, adapter.SourcePath) : adapter;
    }
}
