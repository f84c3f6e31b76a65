using Spm.Core.Gating;
using Spm.Core.Library;
using Spm.Core.Membranes;
using Spm.Diffusion.Onnx;

namespace Spm.Diffusion.Membranes;

/// <summary>Turns SPM files and adapters into <see cref="MembraneSet"/>s resolved against a model's layers.</summary>
public static class MembraneSetLoader
{
    /// <summary>
    /// Loads an SPM file, resolving its keys against the module paths of <paramref name="modelLayers"/> (diffusers' names,
    /// the official layout, or kohya's SDXL names of the same layers: <see cref="SgmModuleNames"/>). Keys the model
    /// lacks stay as raw keys, so <see cref="MembraneLayout.Create"/> reports them as missing layers.
    /// </summary>
    /// <param name="path">The SPM (.safetensors) file.</param>
    /// <param name="modelLayers">All adaptable layers of the target model.</param>
    /// <param name="options">Extra load options (metadata overrides); module paths are filled in here.</param>
    /// <exception cref="Spm.Core.SpmFormatException">The file is malformed (see <see cref="SpmFile.Load"/>).</exception>
    public static MembraneSet Load(string path, IReadOnlyList<AdaptableLayer> modelLayers, SpmLoadOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(modelLayers);
        var opts = (options ?? new SpmLoadOptions()) with { ModulePaths = modelLayers.Select(l => l.ModulePath).Distinct(StringComparer.Ordinal).ToList() };
        var adapter = SgmModuleNames.ResolveAliases(SpmFile.Load(path, opts), opts.ModulePaths!);
        return FromAdapter(adapter, Path.GetFileName(path));
    }

    /// <summary>
    /// Loads an SPM file as the sets it gates separately: one set for an ordinary SPM (as <see cref="Load"/>), one per
    /// concept for an exactly merged file (<see cref="SpmMerge"/>: each concept's columns, prompts and gate probe,
    /// named <c>FILE#CONCEPT</c>).
    /// </summary>
    /// <exception cref="Spm.Core.SpmFormatException">The file, its merge record or a gate probe is malformed.</exception>
    public static IReadOnlyList<MembraneSet> LoadAll(string path, IReadOnlyList<AdaptableLayer> modelLayers, SpmLoadOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(modelLayers);
        // Only the header is read to tell a merged file; every other file goes through Load unchanged (one code path
        // for key resolution).
        bool merged;
        using (var header = Spm.Core.SafeTensors.SafeTensorsFile.Open(path)) merged = header.Metadata.ContainsKey(SpmMerge.MetadataKey);
        if (!merged) return [Load(path, modelLayers, options)];
        var opts = (options ?? new SpmLoadOptions()) with { ModulePaths = modelLayers.Select(l => l.ModulePath).Distinct(StringComparer.Ordinal).ToList() };
        var adapter = SpmFile.Load(path, opts);
        var name = Path.GetFileName(path);
        if (SpmMerge.Components(adapter) is not { } components) return [FromAdapter(adapter, name)];
        return components.Select(c =>
        {
            var membranes = SpmMerge.Slice(adapter, c);
            if (membranes.Count == 0) throw new Spm.Core.SpmFormatException(path, SpmMerge.MetadataKey, $"component '{c.Concept}' has no non-zero membrane.");
            var probe = c.GateProbe is null ? null : ConceptProbe.FromJson(c.GateProbe, $"{path} ({c.Concept})");
            return new MembraneSet($"{name}#{c.Concept}", c.Prompts,
                membranes.Select(m => new LayerMembrane(m.ModulePath ?? m.Key, m.Down, m.Up, m.Scale))) { GateProbe = probe };
        }).ToList();
    }

    /// <summary>Wraps a loaded adapter; unresolved membranes keep their key as path (and will not match any layer).</summary>
    /// <exception cref="Spm.Core.SpmFormatException">The adapter's <c>gate_probe</c> metadata is not a valid probe.</exception>
    public static MembraneSet FromAdapter(SpmAdapter adapter, string name)
    {
        ArgumentNullException.ThrowIfNull(adapter);
        var membranes = adapter.Membranes.Select(m => new LayerMembrane(m.ModulePath ?? m.Key, m.Down, m.Up, m.Scale));
        var probe = adapter.Config.Extra.TryGetValue(ConceptProbe.MetadataKey, out var json)
            ? ConceptProbe.FromJson(json, adapter.SourcePath ?? name)
            : null;
        return new MembraneSet(name, adapter.Config.Prompts, membranes) { GateProbe = probe };
    }
}
