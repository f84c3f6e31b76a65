using Spm.Diffusion.Onnx;

namespace Spm.Diffusion.Membranes;

/// <summary>
/// The tensor shapes of a membrane on a layer, in one place: a linear layer's down is <c>[r, in]</c>; a conv layer's
/// down reuses the layer's kernel, <c>[r, in, kh, kw]</c> (a missing kernel dimension counts as 1); up is <c>[out, r]</c>
/// as the injected graph takes it (SPM files may store a conv up as <c>[out, r, 1, 1]</c>).
/// </summary>
public static class MembraneShapes
{
    /// <summary>The conv kernel [kh, kw] a membrane's down reuses; [1, 1] for a linear layer.</summary>
    public static (int Height, int Width) Kernel(AdaptableLayer layer)
    {
        ArgumentNullException.ThrowIfNull(layer);
        if (!layer.IsConv) return (1, 1);
        int kh = layer.KernelShape.Length > 0 && layer.KernelShape[0] > 0 ? layer.KernelShape[0] : 1;
        int kw = layer.KernelShape.Length > 1 && layer.KernelShape[1] > 0 ? layer.KernelShape[1] : 1;
        return (kh, kw);
    }

    /// <summary>The down weight's shape at rank <paramref name="rank"/>: <c>[r, in]</c> or <c>[r, in, kh, kw]</c>.</summary>
    public static int[] Down(AdaptableLayer layer, int rank)
    {
        var (kh, kw) = Kernel(layer);
        return layer.IsConv ? [rank, layer.InFeatures, kh, kw] : [rank, layer.InFeatures];
    }

    /// <summary>The up weight's shape at rank <paramref name="rank"/> as the injected graph takes it: <c>[out, r]</c>.</summary>
    public static int[] Up(AdaptableLayer layer, int rank)
    {
        ArgumentNullException.ThrowIfNull(layer);
        return [layer.OutFeatures, rank];
    }

    /// <summary>The fan-in of one down row: <c>in × kh × kw</c>.</summary>
    public static int FanIn(AdaptableLayer layer)
    {
        var (kh, kw) = Kernel(layer);
        return checked(layer.InFeatures * kh * kw);
    }
}
