namespace Spm.Diffusion.Onnx;

/// <summary>How an adaptable layer computes <c>y = W x (+ b)</c> in the ONNX graph.</summary>
public enum LayerKind
{
    /// <summary>A MatMul whose second input is a weight initializer stored [in, out] (PyTorch Linear, transposed by the exporter).</summary>
    MatMul,

    /// <summary>A Gemm (check transB: PyTorch exports keep W as [out, in] with transB=1).</summary>
    Gemm,

    /// <summary>A Conv with a weight initializer [out, in/group, kh, kw].</summary>
    Conv,
}

/// <summary>
/// One layer of a UNet graph that a membrane can attach to, identified by its PyTorch module path
/// (e.g. <c>down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q</c>).
/// </summary>
/// <param name="ModulePath">The diffusers module path, dots as separators.</param>
/// <param name="Kind">MatMul, Gemm or Conv.</param>
/// <param name="InFeatures">Input features (Linear) or input channels (Conv).</param>
/// <param name="OutFeatures">Output features or output channels.</param>
/// <param name="NodeName">Name of the ONNX node computing <c>W x</c>.</param>
/// <param name="InputName">The node's activation input (x).</param>
/// <param name="WeightName">The weight initializer's name.</param>
/// <param name="OutputName">The tensor the membrane's contribution is added to: the output after the bias, if the bias is a separate Add.</param>
/// <param name="KernelShape">Conv kernel [kh, kw]; empty for linear layers.</param>
/// <param name="Strides">Conv strides; empty for linear layers.</param>
/// <param name="Pads">Conv pads [top, left, bottom, right]; empty for linear layers.</param>
/// <param name="Dilations">Conv dilations; empty for linear layers.</param>
/// <param name="Group">Conv groups (1 for linear layers).</param>
/// <param name="InTransformer">Whether the layer lies inside a transformer container (diffusers Transformer2DModel), where SPM places membranes.</param>
public sealed record AdaptableLayer(
    string ModulePath,
    LayerKind Kind,
    int InFeatures,
    int OutFeatures,
    string NodeName,
    string InputName,
    string WeightName,
    string OutputName,
    int[] KernelShape,
    int[] Strides,
    int[] Pads,
    int[] Dilations,
    int Group,
    bool InTransformer)
{
    /// <summary>
    /// Set when the layer is one projection inside a packed Q/K/V or K/V MatMul of a graph fused by ONNX Runtime's
    /// transformer optimizer: <see cref="NodeName"/>, <see cref="WeightName"/> and <see cref="OutputName"/> then name the
    /// packed MatMul, its [in, N·Count·H] weight and its output, and the layer's own outputs are the columns
    /// <see cref="Fused.PackedProjection.PackedColumn"/> gives. Null for an ordinary layer.
    /// </summary>
    public Fused.PackedProjection? Packing { get; init; }

    /// <summary>True when the layer is a slice of a packed projection (see <see cref="Packing"/>).</summary>
    public bool IsPacked => Packing is not null;

    /// <summary>True for Conv layers.</summary>
    public bool IsConv => Kind == LayerKind.Conv;

    /// <summary>The transformer container holding the layer (e.g. <c>down_blocks.1.attentions.0</c>), or null outside one.</summary>
    public string? Container => AdaptableLayerFinder.ContainerOf(ModulePath);
}
