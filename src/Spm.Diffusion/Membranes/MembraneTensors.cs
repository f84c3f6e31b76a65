using Spm.Core.Tensors;

namespace Spm.Diffusion.Membranes;

/// <summary>
/// The constant membrane inputs of a layout: per layer the stacked down [R, in(, kh, kw)] and up [out, R] tensors
/// (zero rows/columns where an SPM does not cover the layer), and <c>spm.scales</c> [R]. Built once per loaded set
/// of SPMs; per request only the gates change (<see cref="Gates(ReadOnlySpan{float})"/>).
/// </summary>
public sealed class MembraneTensors
{
    private MembraneTensors(MembraneLayout layout, Dictionary<string, FloatTensor> inputs)
    {
        Layout = layout;
        Inputs = inputs;
    }

    /// <summary>The layout the tensors belong to.</summary>
    public MembraneLayout Layout { get; }

    /// <summary>Input name to tensor, for every down/up input and <see cref="MembraneNames.Scales"/>.</summary>
    public IReadOnlyDictionary<string, FloatTensor> Inputs { get; }

    /// <summary>Stacks the membranes of every SPM of <paramref name="layout"/> along the rank axis.</summary>
    public static MembraneTensors Build(MembraneLayout layout)
    {
        ArgumentNullException.ThrowIfNull(layout);
        int r = layout.TotalRank;
        var inputs = new Dictionary<string, FloatTensor>(StringComparer.Ordinal);
        foreach (var layer in layout.Layers)
        {
            int inF = layer.InFeatures, outF = layer.OutFeatures;
            int rowLen = MembraneShapes.FanIn(layer);
            var down = new FloatTensor(MembraneShapes.Down(layer, r));
            var up = new FloatTensor(MembraneShapes.Up(layer, r));
            for (int s = 0; s < layout.Sets.Count; s++)
            {
                if (!layout.IsApplied(s, layer.ModulePath)) continue;
                var m = layout.Sets[s].ByPath[layer.ModulePath];
                int off = layout.ColumnOffset(s), rank = m.Rank;
                // down rows are contiguous: [rank, in*kh*kw] goes to rows off..off+rank.
                m.Down.Data.AsSpan(0, rank * rowLen).CopyTo(down.Data.AsSpan(off * rowLen));
                // up [out, rank] (or [out, rank, 1, 1]) goes to columns off..off+rank of [out, R].
                // A layer whose alpha differs from its set's (rare; the format allows it) has the ratio folded into up,
                // because spm.scales holds one value per column.
                float ratio = m.Scale / layout.Sets[s].Membranes[0].Scale;
                for (int o = 0; o < outF; o++)
                {
                    var dst = up.Data.AsSpan(o * r + off, rank);
                    m.Up.Data.AsSpan(o * rank, rank).CopyTo(dst);
                    if (ratio != 1f) System.Numerics.Tensors.TensorPrimitives.Multiply(dst, ratio, dst);
                }
            }
            inputs[MembraneNames.Down(layer.ModulePath)] = down;
            inputs[MembraneNames.Up(layer.ModulePath)] = up;
        }
        var scales = new FloatTensor(r);
        for (int s = 0; s < layout.Sets.Count; s++)
        {
            var set = layout.Sets[s];
            // Every membrane of a set shares alpha in the official format; take each set's first scale.
            scales.Data.AsSpan(layout.ColumnOffset(s), set.Rank).Fill(set.Membranes[0].Scale);
        }
        inputs[MembraneNames.Scales] = scales;
        return new MembraneTensors(layout, inputs);
    }

    /// <summary>
    /// The <c>spm.gates</c> tensor [B, R] for per-row, per-SPM multipliers: <paramref name="multipliers"/> is
    /// [B, number of SPMs] row-major; SPM i's value fills its rank columns. A multiplier of 0 switches an SPM off.
    /// </summary>
    /// <exception cref="ArgumentException">The length is not a multiple of the SPM count.</exception>
    public FloatTensor Gates(ReadOnlySpan<float> multipliers)
    {
        int n = Layout.Sets.Count;
        if (multipliers.Length == 0 || multipliers.Length % n != 0)
            throw new ArgumentException($"Expected batch x {n} multipliers, got {multipliers.Length}.", nameof(multipliers));
        int b = multipliers.Length / n, r = Layout.TotalRank;
        var gates = new FloatTensor(b, r);
        for (int row = 0; row < b; row++)
            for (int s = 0; s < n; s++)
                gates.Data.AsSpan(row * r + Layout.ColumnOffset(s), Layout.Sets[s].Rank).Fill(multipliers[row * n + s]);
        return gates;
    }

    /// <summary>
    /// The membrane inputs of a subset of the loaded SPMs, for the same injected graph (its rank axis is symbolic, so
    /// one session serves any subset): each layer's down rows and up columns of <paramref name="sets"/> only, in the
    /// order given, their scales, and <c>spm.gates</c> from <paramref name="multipliers"/> ([B, sets] row-major). With
    /// the subset in layout order, a layer's values equal those of a layout that loaded exactly these SPMs; layers none
    /// of them covers get zero columns, which add exactly 0. An empty subset gets one zero column with gate 0 (ONNX
    /// Runtime is not given empty tensors), which leaves the UNet's output as without membranes.
    /// </summary>
    /// <exception cref="ArgumentException">An index out of range or repeated, or the multipliers are not [B, sets].</exception>
    public Dictionary<string, FloatTensor> Select(IReadOnlyList<int> sets, ReadOnlySpan<float> multipliers)
    {
        ArgumentNullException.ThrowIfNull(sets);
        if (sets.Distinct().Count() != sets.Count || sets.Any(s => s < 0 || s >= Layout.Sets.Count))
            throw new ArgumentException($"The subset must name distinct SPMs among 0..{Layout.Sets.Count - 1}.", nameof(sets));
        int n = Math.Max(1, sets.Count);
        if (multipliers.Length == 0 || multipliers.Length % n != 0)
            throw new ArgumentException($"Expected batch x {n} multipliers, got {multipliers.Length}.", nameof(multipliers));
        int batch = multipliers.Length / n;
        int r = sets.Count == 0 ? 1 : sets.Sum(s => Layout.Sets[s].Rank);
        int R = Layout.TotalRank;
        var inputs = new Dictionary<string, FloatTensor>(StringComparer.Ordinal);
        foreach (var layer in Layout.Layers)
        {
            int rowLen = MembraneShapes.FanIn(layer), outF = layer.OutFeatures;
            var downAll = Inputs[MembraneNames.Down(layer.ModulePath)];
            var upAll = Inputs[MembraneNames.Up(layer.ModulePath)];
            var down = new FloatTensor(MembraneShapes.Down(layer, r));
            var up = new FloatTensor(MembraneShapes.Up(layer, r));
            int at = 0;
            foreach (var s in sets)
            {
                int off = Layout.ColumnOffset(s), rank = Layout.Sets[s].Rank;
                downAll.Data.AsSpan(off * rowLen, rank * rowLen).CopyTo(down.Data.AsSpan(at * rowLen));
                for (int o = 0; o < outF; o++) upAll.Data.AsSpan(o * R + off, rank).CopyTo(up.Data.AsSpan(o * r + at));
                at += rank;
            }
            inputs[MembraneNames.Down(layer.ModulePath)] = down;
            inputs[MembraneNames.Up(layer.ModulePath)] = up;
        }
        var scales = new FloatTensor(r);
        var gates = new FloatTensor(batch, r);
        int col = 0;
        for (int k = 0; k < sets.Count; k++)
        {
            int s = sets[k], off = Layout.ColumnOffset(s), rank = Layout.Sets[s].Rank;
            Inputs[MembraneNames.Scales].Data.AsSpan(off, rank).CopyTo(scales.Data.AsSpan(col));
            for (int row = 0; row < batch; row++) gates.Data.AsSpan(row * r + col, rank).Fill(multipliers[row * n + k]);
            col += rank;
        }
        inputs[MembraneNames.Scales] = scales;
        inputs[MembraneNames.Gates] = gates;
        return inputs;
    }

    /// <summary>Gates with the same multipliers on every one of <paramref name="batch"/> rows.</summary>
    public FloatTensor Gates(int batch, ReadOnlySpan<float> perSpm)
    {
        if (perSpm.Length != Layout.Sets.Count)
            throw new ArgumentException($"Expected {Layout.Sets.Count} multipliers, got {perSpm.Length}.", nameof(perSpm));
        var all = new float[batch * perSpm.Length];
        for (int row = 0; row < batch; row++) perSpm.CopyTo(all.AsSpan(row * perSpm.Length));
        return Gates(all);
    }
}
