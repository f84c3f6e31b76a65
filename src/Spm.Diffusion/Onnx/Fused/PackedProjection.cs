namespace Spm.Diffusion.Onnx.Fused;

/// <summary>
/// Where one projection (<c>to_q</c>, <c>to_k</c> or <c>to_v</c>) sits inside a packed projection MatMul written by
/// ONNX Runtime's transformer optimizer.
/// </summary>
/// <remarks>
/// The optimizer packs Q/K/V (self-attention) or K/V (cross-attention) weights of shape [in, N·H] into one weight
/// [in, N·Count·H] interleaved per head (numpy: <c>dstack([q.reshape(in, N, H), k.reshape(in, N, H), ...]).reshape(in, -1)</c>),
/// so the packed MatMul's output reshapes to [B, S, N, Count, H] as <c>MultiHeadAttention</c>'s packed input expects.
/// Output column <c>n·H + d</c> of projection <see cref="Index"/> is therefore packed column
/// <c>n·Count·H + Index·H + d</c> (<see cref="PackedColumn"/>).
/// </remarks>
/// <param name="Heads">Number of attention heads N.</param>
/// <param name="HeadSize">Head size H (the projection has N·H outputs).</param>
/// <param name="Count">Projections in the pack: 3 for Q/K/V, 2 for K/V.</param>
/// <param name="Index">This projection's place in the pack (Q = 0, K = 1, V = 2 for QKV; K = 0, V = 1 for KV).</param>
public sealed record PackedProjection(int Heads, int HeadSize, int Count, int Index)
{
    /// <summary>Output features of the whole packed MatMul (N · Count · H).</summary>
    public int PackedFeatures => Heads * Count * HeadSize;

    /// <summary>The packed output column holding this projection's output column <paramref name="column"/> (0 ≤ column &lt; N·H).</summary>
    public int PackedColumn(int column)
    {
        int n = column / HeadSize, d = column % HeadSize;
        return (n * Count + Index) * HeadSize + d;
    }

    /// <summary>A short description for reports, e.g. <c>slice 1 of 3 of packed QKV, 8 heads x 8</c>.</summary>
    public string Describe() => $"slice {Index} of {Count} of packed {(Count == 3 ? "QKV" : "KV")}, {Heads} heads x {HeadSize}";
}
