using Spm.Core.Tensors;

namespace Spm.Diffusion.Membranes;

/// <summary>
/// One SPM's membrane on one layer, in file layout: <paramref name="Down"/> [r, in] or [r, in, kh, kw],
/// <paramref name="Up"/> [out, r] or [out, r, 1, 1], <paramref name="Scale"/> = alpha / r.
/// </summary>
/// <param name="ModulePath">The diffusers module path of the layer (dots as separators).</param>
/// <param name="Down">The down projection.</param>
/// <param name="Up">The up projection.</param>
/// <param name="Scale">alpha / rank.</param>
public sealed record LayerMembrane(string ModulePath, FloatTensor Down, FloatTensor Up, float Scale)
{
    /// <summary>The membrane rank r.</summary>
    public int Rank => Down.Shape.Length > 0 ? Down.Shape[0] : 0;

    /// <summary>Whether the down projection is a convolution kernel ([r, in, kh, kw]).</summary>
    public bool IsConv => Down.Rank == 4;

    /// <summary>Input features (conv: input channels).</summary>
    public int InFeatures => Down.Rank >= 2 ? Down.Shape[1] : 0;

    /// <summary>Output features (conv: output channels).</summary>
    public int OutFeatures => Up.Rank >= 1 ? Up.Shape[0] : 0;
}

/// <summary>
/// A loaded SPM as the injection sees it: a name, its concepts (for the gate), its rank and its membranes by module path.
/// Build it from an SPM file with <see cref="MembraneSetLoader"/>, or directly (tests, trainers).
/// </summary>
public sealed class MembraneSet
{
    /// <summary>Creates a set; every membrane must have the same rank.</summary>
    /// <exception cref="ArgumentException">Empty set, duplicate module paths or mixed ranks.</exception>
    public MembraneSet(string name, IReadOnlyList<string> concepts, IEnumerable<LayerMembrane> membranes)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(concepts);
        ArgumentNullException.ThrowIfNull(membranes);
        var byPath = new Dictionary<string, LayerMembrane>(StringComparer.Ordinal);
        var order = new List<LayerMembrane>();
        foreach (var m in membranes)
        {
            if (!byPath.TryAdd(m.ModulePath, m))
                throw new ArgumentException($"SPM '{name}' has two membranes for layer '{m.ModulePath}'.");
            order.Add(m);
        }
        if (order.Count == 0) throw new ArgumentException($"SPM '{name}' has no membranes.");
        Rank = order[0].Rank;
        var odd = order.FirstOrDefault(m => m.Rank != Rank);
        if (odd is not null)
            throw new ArgumentException($"SPM '{name}' mixes ranks: '{order[0].ModulePath}' has {Rank}, '{odd.ModulePath}' has {odd.Rank}.");
        Name = name;
        Concepts = concepts;
        Membranes = order;
        ByPath = byPath;
    }

    /// <summary>A display name (usually the file name).</summary>
    public string Name { get; }

    /// <summary>The erased concepts (the file's comma-separated <c>prompts</c>), used by the gate.</summary>
    public IReadOnlyList<string> Concepts { get; }

    /// <summary>The membrane rank shared by every layer.</summary>
    public int Rank { get; }

    /// <summary>The membranes in file order.</summary>
    public IReadOnlyList<LayerMembrane> Membranes { get; }

    /// <summary>The membranes by module path.</summary>
    public IReadOnlyDictionary<string, LayerMembrane> ByPath { get; }

    /// <summary>
    /// The SPM's learned gate (its file's <c>gate_probe</c> metadata, fitted by <c>spm gate fit</c>), or null: the gate
    /// then falls back to the concept-text similarity of facilitated transport (see <c>docs/gate.md</c>).
    /// </summary>
    public Spm.Core.Gating.ConceptProbe? GateProbe { get; init; }
}
