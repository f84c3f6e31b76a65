using Spm.Core;
using Spm.Diffusion.Onnx;

namespace Spm.Diffusion.Membranes;

/// <summary>
/// Which layers of a model get a membrane branch and where each loaded SPM sits along the stacked rank axis.
/// SPM <c>i</c> owns columns <c>[ColumnOffset(i), ColumnOffset(i) + Rank_i)</c> of every membrane input; a layer an SPM
/// does not cover gets zero columns there. The layout decides the injected graph; which SPMs are active and their
/// gates are per-request inputs.
/// </summary>
public sealed class MembraneLayout
{
    private readonly int[] _offsets;
    private readonly Dictionary<string, AdaptableLayer> _layers;
    private readonly HashSet<(int Set, string Path)> _applied;

    private MembraneLayout(IReadOnlyList<MembraneSet> sets, int[] offsets, int totalRank, List<AdaptableLayer> layers,
        HashSet<(int, string)> applied, List<string> warnings)
    {
        Sets = sets;
        _offsets = offsets;
        TotalRank = totalRank;
        Layers = layers;
        _layers = layers.ToDictionary(l => l.ModulePath, StringComparer.Ordinal);
        _applied = applied;
        Warnings = warnings;
    }

    /// <summary>The loaded SPMs, in column order.</summary>
    public IReadOnlyList<MembraneSet> Sets { get; }

    /// <summary>R: the sum of the SPMs' ranks.</summary>
    public int TotalRank { get; }

    /// <summary>The model layers that get a branch (those covered by at least one SPM), in graph order.</summary>
    public IReadOnlyList<AdaptableLayer> Layers { get; }

    /// <summary>Messages about membranes skipped under <c>allowPartial</c>.</summary>
    public IReadOnlyList<string> Warnings { get; }

    /// <summary>First column of SPM <paramref name="set"/>.</summary>
    public int ColumnOffset(int set) => _offsets[set];

    /// <summary>Whether SPM <paramref name="set"/>'s membrane on <paramref name="modulePath"/> is applied.</summary>
    public bool IsApplied(int set, string modulePath) => _applied.Contains((set, modulePath));

    /// <summary>The layer at <paramref name="modulePath"/>, if it has a branch.</summary>
    public AdaptableLayer? Layer(string modulePath) => _layers.GetValueOrDefault(modulePath);

    /// <summary>
    /// Matches every membrane of every SPM to the model's layers by module path and shape.
    /// </summary>
    /// <param name="modelLayers">The model's adaptable layers (from the layer finder).</param>
    /// <param name="sets">The SPMs to load, in column order.</param>
    /// <param name="allowPartial">Skip membranes that do not fit (listed in <see cref="Warnings"/>) instead of failing.</param>
    /// <exception cref="SpmMismatchException">
    /// A membrane names a layer the model lacks or whose shape differs (without <paramref name="allowPartial"/>),
    /// or an SPM has no fitting membrane at all. The message names the first such layer and the counts.
    /// </exception>
    public static MembraneLayout Create(IReadOnlyList<AdaptableLayer> modelLayers, IReadOnlyList<MembraneSet> sets, bool allowPartial = false)
    {
        ArgumentNullException.ThrowIfNull(modelLayers);
        ArgumentNullException.ThrowIfNull(sets);
        if (sets.Count == 0) throw new ArgumentException("At least one SPM is needed for a membrane layout.", nameof(sets));
        var byPath = new Dictionary<string, AdaptableLayer>(StringComparer.Ordinal);
        foreach (var l in modelLayers) byPath.TryAdd(l.ModulePath, l);

        var offsets = new int[sets.Count];
        int total = 0;
        var used = new HashSet<string>(StringComparer.Ordinal);
        var applied = new HashSet<(int, string)>();
        var warnings = new List<string>();
        for (int s = 0; s < sets.Count; s++)
        {
            var set = sets[s];
            offsets[s] = total;
            total = checked(total + set.Rank);
            var problems = new List<(string Path, string Why)>();
            foreach (var m in set.Membranes)
            {
                var why = Misfit(m, byPath.GetValueOrDefault(m.ModulePath));
                if (why is null) { applied.Add((s, m.ModulePath)); used.Add(m.ModulePath); }
                else problems.Add((m.ModulePath, why));
            }
            if (problems.Count == 0) continue;
            int fit = set.Membranes.Count - problems.Count;
            var first = problems[0];
            var summary = $"SPM '{set.Name}' does not fit the model: {problems.Count} of its {set.Membranes.Count} layers do not match " +
                          $"(first: '{first.Path}': {first.Why}); {fit} match";
            if (!allowPartial)
                throw new SpmMismatchException(summary + ". Nothing was applied; --allow-partial applies the matching layers.", first.Path);
            if (fit == 0)
                throw new SpmMismatchException(summary + ", so there is nothing to apply.", first.Path);
            warnings.Add(summary + $"; applying those {fit} and skipping the rest.");
        }
        var layers = modelLayers.Where(l => used.Contains(l.ModulePath)).DistinctBy(l => l.ModulePath).ToList();
        return new MembraneLayout(sets, offsets, total, layers, applied, warnings);
    }

    /// <summary>Why membrane <paramref name="m"/> does not fit <paramref name="layer"/>, or null when it fits.</summary>
    private static string? Misfit(LayerMembrane m, AdaptableLayer? layer)
    {
        if (layer is null) return "the model has no such layer";
        string Shape(IEnumerable<int> dims) => "[" + string.Join(",", dims) + "]";
        var down = m.Down.Shape;
        var up = m.Up.Shape;
        // Both shapes in the message: a file made for another model family (SD 1.x on SDXL) fails here first.
        string ModelShape() => layer.IsConv
            ? $"[{layer.OutFeatures},{layer.InFeatures},{MembraneShapes.Kernel(layer).Height},{MembraneShapes.Kernel(layer).Width}]"
            : $"[{layer.OutFeatures},{layer.InFeatures}]";
        if (m.IsConv != layer.IsConv)
            return $"the membrane is {(m.IsConv ? "a conv" : "linear")} but the model's layer is {(layer.IsConv ? "a conv" : "linear")} (membrane down {Shape(down)}, up {Shape(up)}; layer weight {ModelShape()})";
        if (layer.IsConv)
        {
            var (kh, kw) = MembraneShapes.Kernel(layer);
            if (down.Length != 4 || down[1] != layer.InFeatures || down[2] != kh || down[3] != kw)
                return $"down {Shape(down)} vs model [r,{layer.InFeatures},{kh},{kw}]";
            bool upOk = (up.Length == 2 || (up.Length == 4 && up[2] == 1 && up[3] == 1)) && up[0] == layer.OutFeatures && up[1] == m.Rank;
            if (!upOk) return $"up {Shape(up)} vs model [{layer.OutFeatures},{m.Rank},1,1]";
        }
        else
        {
            if (down.Length != 2 || down[1] != layer.InFeatures)
                return $"down {Shape(down)} vs model [r,{layer.InFeatures}]";
            if (up.Length != 2 || up[0] != layer.OutFeatures || up[1] != m.Rank)
                return $"up {Shape(up)} vs model [{layer.OutFeatures},{m.Rank}]";
        }
        return null;
    }
}
