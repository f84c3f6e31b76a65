using System.Numerics.Tensors;
using Spm.Core;
using Spm.Diffusion.Onnx;

namespace Spm.Diffusion.Membranes;

/// <summary>
/// Merging membranes into a layer's weight: <c>W += sum_i m_i s_i up_i down_i</c>, in the layout the graph stores W:
/// MatMul [in, out] (the transpose of PyTorch's), Gemm [out, in] with transB=1 or [in, out] without, Conv
/// [out, in, kh, kw] with down flattened to [r, in*kh*kw]. Grouped convs cannot absorb a full conv membrane (it mixes
/// channels across groups), so they are refused: use the branch mode.
/// </summary>
public static class MembraneMerge
{
    /// <summary>Adds <c>coefficient * up · down</c> (in the layer's weight layout) into <paramref name="weight"/>.</summary>
    /// <param name="weight">The layer's weight elements, in graph layout.</param>
    /// <param name="layer">The layer (decides the layout).</param>
    /// <param name="transB">For Gemm: whether the weight is stored [out, in].</param>
    /// <param name="membrane">The membrane (shapes already checked against the layer by <see cref="MembraneLayout"/>).</param>
    /// <param name="coefficient">multiplier * alpha / rank.</param>
    /// <exception cref="SpmMismatchException">The layer is a grouped conv, or the sizes disagree.</exception>
    public static void AddInto(Span<float> weight, AdaptableLayer layer, bool transB, LayerMembrane membrane, float coefficient)
    {
        ArgumentNullException.ThrowIfNull(layer);
        ArgumentNullException.ThrowIfNull(membrane);
        if (layer.IsConv && layer.Group != 1)
            throw new SpmMismatchException($"Layer '{layer.ModulePath}' is a grouped conv (group {layer.Group}); its membrane cannot be merged into the weights. Use --mode branch.", layer.ModulePath);
        int r = membrane.Rank, outF = layer.OutFeatures;
        int rowLen = membrane.Down.Length / r; // in, or in*kh*kw for convs
        if ((long)outF * rowLen != weight.Length)
            throw new SpmMismatchException($"Layer '{layer.ModulePath}': weight has {weight.Length} elements, the membrane implies {outF}x{rowLen}.", layer.ModulePath);
        var down = membrane.Down.Data;
        var up = membrane.Up.Data; // [out, r] (or [out, r, 1, 1]: same element order)
        bool outMajor = layer.IsConv || (layer.Kind == LayerKind.Gemm && transB);
        if (outMajor)
        {
            // W[o, :] += sum_k (c * up[o, k]) * down[k, :]
            for (int o = 0; o < outF; o++)
            {
                var row = weight.Slice(o * rowLen, rowLen);
                for (int k = 0; k < r; k++)
                {
                    float f = coefficient * up[o * r + k];
                    if (f != 0f) TensorPrimitives.MultiplyAdd(down.AsSpan(k * rowLen, rowLen), f, row, row);
                }
            }
        }
        else
        {
            // W[i, :] += sum_k down[k, i] * (c * up[:, k]); the scaled up columns are gathered once.
            var cols = new float[r * outF];
            for (int k = 0; k < r; k++)
                for (int o = 0; o < outF; o++) cols[k * outF + o] = coefficient * up[o * r + k];
            for (int i = 0; i < rowLen; i++)
            {
                var row = weight.Slice(i * outF, outF);
                for (int k = 0; k < r; k++)
                {
                    float d = down[k * rowLen + i];
                    if (d != 0f) TensorPrimitives.MultiplyAdd(cols.AsSpan(k * outF, outF), d, row, row);
                }
            }
        }
    }
}
