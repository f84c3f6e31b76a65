using Spm.Core.Tensors;

namespace Spm.Core.Membranes;

/// <summary>
/// One membrane: a rank-r branch beside a Linear or Conv layer that adds <c>m · s · up(down(x))</c> to its output,
/// where <c>s = <see cref="Scale"/> = alpha / r</c> and <c>m</c> is the gate or a fixed multiplier.
/// </summary>
/// <remarks>
/// Linear: <see cref="Down"/> is [r, in], <see cref="Up"/> is [out, r]. Conv: <see cref="Down"/> is [r, in, kh, kw]
/// (a conv with the layer's kernel, stride and padding), <see cref="Up"/> is [out, r, 1, 1] (a 1x1 conv).
/// The tensors are shared, not copied: treat them as read-only once the membrane is built.
/// </remarks>
public sealed class Membrane
{
    /// <summary>Creates a membrane after checking that the shapes agree.</summary>
    /// <param name="key">The file key (e.g. <c>lora_unet_..._attn2_to_k</c>).</param>
    /// <param name="down">[r, in] or [r, in, kh, kw].</param>
    /// <param name="up">[out, r] or [out, r, 1, 1].</param>
    /// <param name="alpha">The stored alpha; null or 0 means "absent" and gives alpha = r (scale 1).</param>
    /// <param name="modulePath">The model module path the key resolved to, if known.</param>
    /// <param name="alphaShape">The shape the alpha tensor is stored with: [] (the usual 0-d scalar, default) or [1].</param>
    /// <exception cref="ArgumentException">The shapes are inconsistent (see <see cref="ShapeProblem"/>).</exception>
    public Membrane(string key, FloatTensor down, FloatTensor up, float? alpha = null, string? modulePath = null, int[]? alphaShape = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(key);
        ArgumentNullException.ThrowIfNull(down);
        ArgumentNullException.ThrowIfNull(up);
        var problem = ShapeProblem(down.Shape, up.Shape);
        if (problem is not null) throw new ArgumentException($"Membrane '{key}': {problem}");
        alphaShape ??= Array.Empty<int>();
        if (!(alphaShape.Length == 0 || (alphaShape.Length == 1 && alphaShape[0] == 1)))
            throw new ArgumentException($"Membrane '{key}': alpha shape must be [] or [1].", nameof(alphaShape));
        Key = key;
        Down = down;
        Up = up;
        ModulePath = modulePath;
        Rank = down.Shape[0];
        Alpha = alpha is null or 0 ? Rank : alpha.Value;
        AlphaShape = alphaShape;
    }

    /// <summary>The key in the file, without the <c>.lora_down.weight</c>/<c>.lora_up.weight</c>/<c>.alpha</c> suffix.</summary>
    public string Key { get; }

    /// <summary>The model module path (e.g. <c>down_blocks.1.attentions.0.proj_in</c>) when resolved against a model; otherwise null.</summary>
    public string? ModulePath { get; }

    /// <summary>The down weight, [r, in] or [r, in, kh, kw].</summary>
    public FloatTensor Down { get; }

    /// <summary>The up weight, [out, r] or [out, r, 1, 1].</summary>
    public FloatTensor Up { get; }

    /// <summary>The effective alpha: the stored value, or <see cref="Rank"/> when it was absent or 0.</summary>
    public float Alpha { get; }

    /// <summary>Shape of the stored alpha tensor ([] or [1]); saving writes the same so files round-trip exactly.</summary>
    public IReadOnlyList<int> AlphaShape { get; }

    /// <summary>The rank r (the membrane's width).</summary>
    public int Rank { get; }

    /// <summary>True for a conv membrane (4-D weights).</summary>
    public bool IsConv => Down.Rank == 4;

    /// <summary>Input features (linear) or input channels (conv).</summary>
    public int InFeatures => Down.Shape[1];

    /// <summary>Output features (linear) or output channels (conv).</summary>
    public int OutFeatures => Up.Shape[0];

    /// <summary>The down conv's kernel (kh, kw); (1, 1) for a linear membrane.</summary>
    public (int Height, int Width) Kernel => IsConv ? (Down.Shape[2], Down.Shape[3]) : (1, 1);

    /// <summary>The scale s = alpha / r applied to <c>up(down(x))</c>.</summary>
    public float Scale => Alpha / Rank;

    /// <summary>Number of weights (down + up; alpha not counted).</summary>
    public long ParameterCount => (long)Down.Length + Up.Length;

    /// <summary>A copy resolved to <paramref name="modulePath"/> (tensors shared).</summary>
    public Membrane WithModulePath(string? modulePath) => new(Key, Down, Up, Alpha, modulePath, AlphaShape.ToArray());

    /// <summary>
    /// Why a pair of shapes cannot form a membrane, or null when they can: dimensions 2 (linear) or 4 (conv) for
    /// both, ranks equal and positive, sizes positive, a conv up weight ending in [1, 1].
    /// </summary>
    public static string? ShapeProblem(IReadOnlyList<int> down, IReadOnlyList<int> up)
    {
        ArgumentNullException.ThrowIfNull(down);
        ArgumentNullException.ThrowIfNull(up);
        if (down.Count is not (2 or 4)) return $"down weight must be 2-D [r,in] or 4-D [r,in,kh,kw], got {Fmt(down)}";
        if (up.Count is not (2 or 4)) return $"up weight must be 2-D [out,r] or 4-D [out,r,1,1], got {Fmt(up)}";
        if (down.Count != up.Count)
            return $"conv/linear mismatch: down {Fmt(down)} is {(down.Count == 4 ? "conv" : "linear")} but up {Fmt(up)} is {(up.Count == 4 ? "conv" : "linear")}";
        if (down[0] != up[1]) return $"rank mismatch: down {Fmt(down)} has rank {down[0]}, up {Fmt(up)} has rank {up[1]}";
        foreach (var d in down) if (d <= 0) return $"down weight has an empty dimension: {Fmt(down)}";
        foreach (var d in up) if (d <= 0) return $"up weight has an empty dimension: {Fmt(up)}";
        if (up.Count == 4 && (up[2] != 1 || up[3] != 1)) return $"conv up weight must be 1x1, got {Fmt(up)}";
        return null;
    }

    private static string Fmt(IReadOnlyList<int> s) => "[" + string.Join(",", s) + "]";

    /// <inheritdoc />
    public override string ToString() => $"{ModulePath ?? Key} r={Rank} alpha={Alpha} {(IsConv ? "conv" : "linear")} {InFeatures}->{OutFeatures}";
}
