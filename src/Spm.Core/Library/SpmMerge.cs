using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using MathNet.Numerics.LinearAlgebra;
using Spm.Core.Membranes;
using Spm.Core.Tensors;

namespace Spm.Core.Library;

/// <summary>One SPM to merge.</summary>
/// <param name="Concept">Its concept (library key).</param>
/// <param name="Adapter">The loaded SPM.</param>
/// <param name="Sha256">Its file's SHA-256, recorded in the merged file (optional).</param>
public sealed record MergeComponent(string Concept, SpmAdapter Adapter, string? Sha256 = null);

/// <summary>One layer of a merged SPM.</summary>
/// <param name="Key">The membrane key.</param>
/// <param name="Rank">The merged membrane's rank on this layer (before zero padding to the file's rank).</param>
/// <param name="FullRank">The rank of the summed delta's factors: the sum of the components' ranks on this layer.</param>
/// <param name="RelativeError">
/// <c>‖ΔW − ΔW_merged‖_F / ‖ΔW‖_F</c> for the summed delta <c>ΔW = Σ_i s_i up_i down_i</c> (0 for an exact merge, and
/// for a zero delta).
/// </param>
public sealed record LayerMerge(string Key, int Rank, int FullRank, double RelativeError);

/// <summary>What <see cref="SpmMerge"/> made.</summary>
/// <param name="Adapter">The merged SPM (save it with <see cref="SpmFile.Save"/>).</param>
/// <param name="Kind"><see cref="SpmMerge.ExactKind"/> or <see cref="SpmMerge.SvdKind"/>.</param>
/// <param name="Layers">Every layer, in file order.</param>
public sealed record MergeResult(SpmAdapter Adapter, string Kind, IReadOnlyList<LayerMerge> Layers)
{
    /// <summary>The largest relative Frobenius error over the layers.</summary>
    public double MaxRelativeError => Layers.Count == 0 ? 0 : Layers.Max(l => l.RelativeError);
}

/// <summary>One SPM inside an exactly merged file (its <see cref="SpmMerge.MetadataKey"/> record).</summary>
/// <param name="Concept">The concept.</param>
/// <param name="Prompts">Its prompts (what its gate reads).</param>
/// <param name="Offset">Its first column on the merged rank axis (the same on every layer).</param>
/// <param name="Rank">Its number of columns.</param>
/// <param name="GateProbe">Its learned gate's JSON (<see cref="SpmMetadataKeys.GateProbe"/>), if its file had one.</param>
public sealed record MergedComponent(string Concept, IReadOnlyList<string> Prompts, int Offset, int Rank, string? GateProbe);

/// <summary>
/// Merges many SPMs into one file. <see cref="Exact"/> concatenates their ranks: on every layer the merged membrane is
/// <c>down = [down_1; down_2; ...]</c>, <c>up = [r_1 up_1, r_2 up_2, ...]</c> (each SPM's scale, relative to the first
/// one's, folded into its columns), so at multiplier 1 its delta is exactly the sum of the SPMs' deltas, and each SPM
/// keeps its columns, prompts and gate probe in the metadata: a loader that knows the record
/// (<see cref="Components"/>) gates every concept separately, and any other reads it as one SPM.
/// <see cref="Compressed"/> replaces each layer's summed delta by its best approximation of a given rank (truncated SVD,
/// Eckart–Young) and reports each layer's relative Frobenius error; the concepts are then one membrane, gated as one.
/// </summary>
public static class SpmMerge
{
    /// <summary>The metadata key holding the merge record (JSON).</summary>
    public const string MetadataKey = SpmMetadataKeys.Merge;

    /// <summary>The record's kind for an exact merge.</summary>
    public const string ExactKind = "exact";

    /// <summary>The record's kind for a merge compressed by truncated SVD.</summary>
    public const string SvdKind = "svd";

    /// <summary>Merges exactly: ranks concatenated (every layer padded with zero columns to the total rank), gates kept per concept.</summary>
    /// <exception cref="ArgumentException">No components, or two with the same concept.</exception>
    /// <exception cref="SpmMismatchException">Two SPMs' membranes on one key differ in kind or layer shape.</exception>
    public static MergeResult Exact(IReadOnlyList<MergeComponent> components)
    {
        var keys = Prepare(components);
        var widths = components.Select(c => c.Adapter.Membranes.Max(m => m.Rank)).ToArray();
        var offsets = new int[components.Count];
        for (int i = 1; i < offsets.Length; i++) offsets[i] = offsets[i - 1] + widths[i - 1];
        int total = offsets[^1] + widths[^1];
        float s0 = components[0].Adapter.Membranes[0].Scale;
        var membranes = new List<Membrane>();
        var layers = new List<LayerMerge>();
        foreach (var (key, shape) in keys)
        {
            var down = new FloatTensor(shape.Down(total));
            var up = new FloatTensor(shape.Up(total));
            int full = 0;
            for (int i = 0; i < components.Count; i++)
            {
                if (components[i].Adapter.FindByKey(key) is not { } m) continue;
                full += m.Rank;
                m.Down.Data.AsSpan(0, m.Rank * shape.FanIn).CopyTo(down.Data.AsSpan(offsets[i] * shape.FanIn));
                // Each SPM's scale relative to the first one's goes into its up columns, because the merged membrane has one
                // alpha; a ratio of 1 (the usual case: equal rank and alpha) copies the values unchanged.
                float ratio = m.Scale / s0;
                for (int o = 0; o < shape.Out; o++)
                {
                    var dst = up.Data.AsSpan(o * total + offsets[i], m.Rank);
                    m.Up.Data.AsSpan(o * m.Rank, m.Rank).CopyTo(dst);
                    if (ratio != 1f) System.Numerics.Tensors.TensorPrimitives.Multiply(dst, ratio, dst);
                }
            }
            membranes.Add(new Membrane(key, down, up, s0 * total));
            layers.Add(new LayerMerge(key, full, full, 0));
        }
        var record = new JsonObject
        {
            ["kind"] = ExactKind,
            ["version"] = 1,
            ["components"] = new JsonArray(components.Select((c, i) =>
            {
                var o = ComponentJson(c);
                o["offset"] = offsets[i];
                o["rank"] = widths[i];
                if (c.Adapter.Config.Extra.TryGetValue(SpmMetadataKeys.GateProbe, out var probe)) o["gate_probe"] = probe;
                return (JsonNode?)o;
            }).ToArray()),
        };
        return new MergeResult(new SpmAdapter(Config(components, total, s0 * total, record), membranes), ExactKind, layers);
    }

    /// <summary>
    /// Merges by truncated SVD: on every layer the summed delta <c>ΔW = Σ_i s_i up_i down_i</c> is replaced by its best
    /// rank-<c>k</c> approximation (<c>k = min(rankBudget, the layer's total rank)</c>), written as
    /// <c>up = U_k √Σ_k</c>, <c>down = √Σ_k V_kᵀ</c> with alpha = rank (scale 1), every layer padded with zero columns to the
    /// file's rank. The SVD is taken of the factors (QR of the stacked ups and downs, then the SVD of a small core), not
    /// of the full matrix.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="rankBudget"/> is below 1.</exception>
    /// <exception cref="ArgumentException">No components, or two with the same concept.</exception>
    /// <exception cref="SpmMismatchException">Two SPMs' membranes on one key differ in kind or layer shape.</exception>
    public static MergeResult Compressed(IReadOnlyList<MergeComponent> components, int rankBudget, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(rankBudget, 1);
        var keys = Prepare(components);
        var parts = new List<(string Key, LayerShape Shape, float[] Up, float[] Down, int K, int Full, double Error)>();
        foreach (var (key, shape) in keys)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var held = components.Select(c => c.Adapter.FindByKey(key)).Where(m => m is not null).Select(m => m!).ToList();
            int full = held.Sum(m => m.Rank);
            // The stacked factors: A = [s_1 up_1, s_2 up_2, ...] (out × full), B = [down_1; down_2; ...] (full × fanIn): ΔW = A B.
            var a = Matrix<double>.Build.Dense(shape.Out, full);
            var b = Matrix<double>.Build.Dense(full, shape.FanIn);
            int col = 0;
            foreach (var m in held)
            {
                for (int o = 0; o < shape.Out; o++)
                    for (int j = 0; j < m.Rank; j++) a[o, col + j] = (double)m.Scale * m.Up.Data[o * m.Rank + j];
                for (int j = 0; j < m.Rank; j++)
                    for (int f = 0; f < shape.FanIn; f++) b[col + j, f] = m.Down.Data[j * shape.FanIn + f];
                col += m.Rank;
            }
            var (u, s, vt) = FactorSvd(a, b);
            int k = Math.Min(rankBudget, s.Count);
            double all = 0, dropped = 0;
            for (int j = 0; j < s.Count; j++) { all += s[j] * s[j]; if (j >= k) dropped += s[j] * s[j]; }
            double error = all > 0 ? Math.Sqrt(dropped / all) : 0;
            var upK = new float[shape.Out * k];
            var downK = new float[k * shape.FanIn];
            for (int j = 0; j < k; j++)
            {
                double root = Math.Sqrt(s[j]);
                for (int o = 0; o < shape.Out; o++) upK[o * k + j] = (float)(u[o, j] * root);
                for (int f = 0; f < shape.FanIn; f++) downK[j * shape.FanIn + f] = (float)(vt[j, f] * root);
            }
            parts.Add((key, shape, upK, downK, k, full, error));
        }
        // One rank for the whole file (loaders expect it), the largest layer's; smaller layers get zero columns.
        int rank = Math.Max(1, parts.Max(p => p.K));
        var membranes = new List<Membrane>();
        var layers = new List<LayerMerge>();
        foreach (var p in parts)
        {
            var down = new FloatTensor(p.Shape.Down(rank));
            var up = new FloatTensor(p.Shape.Up(rank));
            p.Down.CopyTo(down.Data.AsSpan());
            for (int o = 0; o < p.Shape.Out; o++) p.Up.AsSpan(o * p.K, p.K).CopyTo(up.Data.AsSpan(o * rank));
            membranes.Add(new Membrane(p.Key, down, up, rank));
            layers.Add(new LayerMerge(p.Key, p.K, p.Full, p.Error));
        }
        var record = new JsonObject
        {
            ["kind"] = SvdKind,
            ["version"] = 1,
            ["rank_budget"] = rankBudget,
            ["components"] = new JsonArray(components.Select(c => (JsonNode?)ComponentJson(c)).ToArray()),
            ["layers"] = new JsonArray(layers.Select(l => (JsonNode?)new JsonObject
            {
                ["key"] = l.Key, ["rank"] = l.Rank, ["full_rank"] = l.FullRank, ["relative_error"] = l.RelativeError,
            }).ToArray()),
        };
        return new MergeResult(new SpmAdapter(Config(components, rank, rank, record), membranes), SvdKind, layers);
    }

    /// <summary>
    /// The SPMs inside an exactly merged adapter, from its <see cref="MetadataKey"/> record; null for any other SPM
    /// (including a merge compressed by SVD, which gates as one).
    /// </summary>
    /// <param name="adapter">A loaded SPM.</param>
    /// <exception cref="SpmFormatException">The record is present but broken (names the file and the key).</exception>
    public static IReadOnlyList<MergedComponent>? Components(SpmAdapter adapter)
    {
        ArgumentNullException.ThrowIfNull(adapter);
        if (!adapter.Config.Extra.TryGetValue(MetadataKey, out var json)) return null;
        var source = adapter.SourcePath ?? "(merged SPM)";
        try
        {
            var o = JsonNode.Parse(json) as JsonObject ?? throw new SpmFormatException(source, MetadataKey, "not a JSON object.");
            if ((string?)o["kind"] != ExactKind) return null;
            var list = new List<MergedComponent>();
            int rank = adapter.Membranes.Max(m => m.Rank);
            foreach (var node in o["components"] as JsonArray ?? throw new SpmFormatException(source, MetadataKey, "no 'components' list."))
            {
                var c = node as JsonObject ?? throw new SpmFormatException(source, MetadataKey, "a component is not an object.");
                var concept = (string?)c["concept"] ?? throw new SpmFormatException(source, MetadataKey, "a component has no concept.");
                var prompts = (c["prompts"] as JsonArray)?.Select(p => (string?)p ?? "").Where(p => p.Length > 0).ToList() ?? [concept];
                int offset = (int?)c["offset"] ?? -1, r = (int?)c["rank"] ?? 0;
                if (offset < 0 || r < 1 || offset + r > rank)
                    throw new SpmFormatException(source, MetadataKey, $"component '{concept}': columns {offset}..{offset + r} do not fit the file's rank {rank}.");
                list.Add(new MergedComponent(concept, prompts, offset, r, (string?)c["gate_probe"]));
            }
            if (adapter.Membranes.Any(m => m.Rank != rank))
                throw new SpmFormatException(source, MetadataKey, "an exact merge has the same rank on every layer; this file's ranks differ.");
            return list;
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException)
        {
            throw new SpmFormatException(source, MetadataKey, $"not a valid merge record: {e.Message}", e);
        }
    }

    /// <summary>
    /// One component's membranes out of an exactly merged adapter: each layer's columns <c>[Offset, Offset + Rank)</c>, with
    /// the merged membrane's alpha scaled to those columns (so the scale is the merged one). Layers where the
    /// component's columns are all zero (it had no membrane there) are left out.
    /// </summary>
    public static IReadOnlyList<Membrane> Slice(SpmAdapter merged, MergedComponent component)
    {
        ArgumentNullException.ThrowIfNull(merged);
        ArgumentNullException.ThrowIfNull(component);
        var result = new List<Membrane>();
        foreach (var m in merged.Membranes)
        {
            int rank = m.Rank, r = component.Rank, off = component.Offset;
            int fanIn = m.Down.Length / rank, outF = m.OutFeatures;
            var downShape = m.Down.Shape.ToArray(); downShape[0] = r;
            var upShape = m.Up.Shape.ToArray(); upShape[1] = r;
            var down = new FloatTensor(downShape);
            var up = new FloatTensor(upShape);
            m.Down.Data.AsSpan(off * fanIn, r * fanIn).CopyTo(down.Data.AsSpan());
            for (int o = 0; o < outF; o++) m.Up.Data.AsSpan(o * rank + off, r).CopyTo(up.Data.AsSpan(o * r));
            if (!down.Data.AsSpan().ContainsAnyExcept(0f) && !up.Data.AsSpan().ContainsAnyExcept(0f)) continue;
            result.Add(new Membrane(m.Key, down, up, m.Scale * r, m.ModulePath));
        }
        return result;
    }

    private readonly record struct LayerShape(int Out, int FanIn, int[] DownTail, bool Conv)
    {
        public int[] Down(int rank) => [rank, .. DownTail];
        public int[] Up(int rank) => Conv ? [Out, rank, 1, 1] : [Out, rank];
    }

    /// <summary>Checks the components and returns every key (first-seen order) with its layer shape.</summary>
    private static List<(string Key, LayerShape Shape)> Prepare(IReadOnlyList<MergeComponent> components)
    {
        ArgumentNullException.ThrowIfNull(components);
        if (components.Count == 0) throw new ArgumentException("Nothing to merge: no SPMs given.", nameof(components));
        var dup = components.GroupBy(c => c.Concept, StringComparer.OrdinalIgnoreCase).FirstOrDefault(g => g.Count() > 1);
        if (dup is not null) throw new ArgumentException($"Concept '{dup.Key}' is given twice.", nameof(components));
        var keys = new List<(string, LayerShape)>();
        var seen = new Dictionary<string, (LayerShape Shape, string Concept)>(StringComparer.Ordinal);
        foreach (var c in components)
            foreach (var m in c.Adapter.Membranes)
            {
                var shape = new LayerShape(m.OutFeatures, m.Down.Length / m.Rank, m.Down.Shape.Skip(1).ToArray(), m.IsConv);
                if (seen.TryGetValue(m.Key, out var first))
                {
                    if (first.Shape.Out != shape.Out || !first.Shape.DownTail.SequenceEqual(shape.DownTail) || first.Shape.Conv != shape.Conv)
                        throw new SpmMismatchException(
                            $"'{m.Key}': SPM '{c.Concept}' has a {(shape.Conv ? "conv" : "linear")} membrane {Describe(shape)}, SPM '{first.Concept}' {Describe(first.Shape)}: they were trained on different models.", m.Key);
                    continue;
                }
                seen[m.Key] = (shape, c.Concept);
                keys.Add((m.Key, shape));
            }
        return keys;
    }

    private static string Describe(LayerShape s) => $"in [{string.Join(",", s.DownTail)}] -> out {s.Out}";

    private static JsonObject ComponentJson(MergeComponent c)
    {
        var o = new JsonObject
        {
            ["concept"] = c.Concept,
            ["prompts"] = new JsonArray(c.Adapter.Config.Prompts.Select(p => (JsonNode?)p).ToArray()),
            ["source_rank"] = c.Adapter.Config.Rank,
            ["source_alpha"] = c.Adapter.Config.Alpha,
        };
        if (c.Sha256 is not null) o["sha256"] = c.Sha256;
        if (c.Adapter.Config.Extra.TryGetValue(SpmMetadataKeys.BaseModel, out var baseModel)) o["base_model"] = baseModel;
        return o;
    }

    private static SpmConfig Config(IReadOnlyList<MergeComponent> components, int rank, float alpha, JsonObject record)
    {
        var prompts = components.SelectMany(c => c.Adapter.Config.Prompts).Distinct(StringComparer.Ordinal).ToList();
        var extra = new Dictionary<string, string>(StringComparer.Ordinal) { [MetadataKey] = record.ToJsonString() };
        var bases = components.Select(c => c.Adapter.Config.Extra.GetValueOrDefault(SpmMetadataKeys.BaseModel)).Distinct().ToList();
        if (bases.Count == 1 && bases[0] is { } b) extra[SpmMetadataKeys.BaseModel] = b;
        var families = components.Select(c => SpmModelFamily.Of(c.Adapter)).Distinct().ToList();
        if (families.Count == 1 && families[0] is { } f) extra[SpmMetadataKeys.ModelFamily] = f;
        return new SpmConfig(prompts, rank, alpha, extra);
    }

    /// <summary>
    /// The SVD of <c>A B</c> without forming it when the inner size is the smaller one: <c>A = Q_a R_a</c>,
    /// <c>Bᵀ = Q_b R_b</c>, <c>A B = Q_a (R_a R_bᵀ) Q_bᵀ</c>, and the SVD of the small core gives the rest.
    /// </summary>
    private static (Matrix<double> U, IReadOnlyList<double> S, Matrix<double> Vt) FactorSvd(Matrix<double> a, Matrix<double> b)
    {
        int inner = a.ColumnCount;
        if (inner > a.RowCount || inner > b.ColumnCount)
        {
            var svd = (a * b).Svd(computeVectors: true);
            return (svd.U, svd.S.ToArray(), svd.VT);
        }
        var qa = a.QR(MathNet.Numerics.LinearAlgebra.Factorization.QRMethod.Thin);
        var qb = b.Transpose().QR(MathNet.Numerics.LinearAlgebra.Factorization.QRMethod.Thin);
        var core = qa.R * qb.R.Transpose();
        var cs = core.Svd(computeVectors: true);
        return (qa.Q * cs.U, cs.S.ToArray(), cs.VT * qb.Q.Transpose());
    }
}
