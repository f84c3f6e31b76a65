using System.Runtime.InteropServices;
using Google.Protobuf;
using Spm.Core;
using Spm.Diffusion.Onnx;
using Spm.Diffusion.Onnx.Proto;

namespace Spm.Diffusion.Membranes;

/// <summary>How <see cref="MembraneBaker"/> makes membranes permanent.</summary>
public enum BakeMode
{
    /// <summary>Add <c>sum_i m_i s_i up_i down_i</c> into the weights: a plain model with the original inputs, outputs and cost.</summary>
    Merge,

    /// <summary>Keep the branches, with membranes, scales and multipliers as constants: exact for any layer (grouped convs too).</summary>
    Branch,
}

/// <summary>
/// Bakes membranes into a UNet so that any ONNX runtime can use the erased model without this library.
/// The result has exactly the original graph inputs and outputs.
/// </summary>
public static class MembraneBaker
{
    /// <summary>Name of the data file that holds the baked (changed or added) initializers next to the baked model.</summary>
    public const string BakedDataFileName = "spm_baked.pb";

    /// <summary>
    /// Returns a baked copy of <paramref name="unet"/> (in memory; external data of unchanged weights still refers to
    /// the original folder). <paramref name="multipliers"/> holds one fixed multiplier per SPM of <paramref name="layout"/>.
    /// </summary>
    /// <exception cref="SpmMismatchException">Merge mode on a grouped conv, or a layer's weight is not as the layout says.</exception>
    public static OnnxModel Bake(OnnxModel unet, MembraneLayout layout, IReadOnlyList<float> multipliers, BakeMode mode,
        IProgress<(int Done, int Total)>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(unet);
        ArgumentNullException.ThrowIfNull(layout);
        ArgumentNullException.ThrowIfNull(multipliers);
        if (multipliers.Count != layout.Sets.Count)
            throw new ArgumentException($"Expected {layout.Sets.Count} multipliers (one per SPM), got {multipliers.Count}.", nameof(multipliers));
        return mode == BakeMode.Merge
            ? Merge(unet, layout, multipliers, progress, cancellationToken)
            : Branch(unet, layout, multipliers);
    }

    private static OnnxModel Merge(OnnxModel unet, MembraneLayout layout, IReadOnlyList<float> multipliers,
        IProgress<(int Done, int Total)>? progress, CancellationToken ct)
    {
        var proto = unet.Proto.Clone();
        var index = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < proto.Graph.Initializer.Count; i++) index.TryAdd(proto.Graph.Initializer[i].Name, i);
        var nodes = proto.Graph.Node.Where(n => n.Name.Length > 0).GroupBy(n => n.Name).ToDictionary(g => g.Key, g => g.First(), StringComparer.Ordinal);
        int done = 0;
        // Slices of one packed projection share a weight: each merges into the copy the previous one changed.
        var merged = new Dictionary<string, Core.Tensors.FloatTensor>(StringComparer.Ordinal);
        foreach (var layer in layout.Layers)
        {
            ct.ThrowIfCancellationRequested();
            if (!index.TryGetValue(layer.WeightName, out int at))
                throw new SpmMismatchException($"Layer '{layer.ModulePath}': weight '{layer.WeightName}' is not an initializer.", layer.ModulePath);
            var original = unet.GetInitializer(layer.WeightName);
            if (!merged.TryGetValue(layer.WeightName, out var weight)) merged[layer.WeightName] = weight = unet.ReadFloat(layer.WeightName);
            bool transB = nodes.TryGetValue(layer.NodeName, out var node) && node.Attribute.Any(a => a.Name == "transB" && a.I != 0);
            for (int s = 0; s < layout.Sets.Count; s++)
            {
                if (!layout.IsApplied(s, layer.ModulePath) || multipliers[s] == 0f) continue;
                var m = layout.Sets[s].ByPath[layer.ModulePath];
                if (layer.Packing is { } packing)
                    MergePackedSlice(weight.Data, layer, packing, m, multipliers[s] * m.Scale);
                else
                    MembraneMerge.AddInto(weight.Data, layer, transB, m, multipliers[s] * m.Scale);
            }
            proto.Graph.Initializer[at] = WithData(original, weight.Data);
            progress?.Report((++done, layout.Layers.Count));
        }
        return OnnxModel.FromProto(proto, unet.BaseDirectory, unet.FilePath);
    }

    /// <summary>
    /// Merges a membrane into its slice of a packed [in, N·Count·H] weight: the delta is formed as for a plain [in, N·H]
    /// MatMul weight, then each of its columns is added to the packed column <see cref="Onnx.Fused.PackedProjection.PackedColumn"/>.
    /// </summary>
    private static void MergePackedSlice(float[] packed, AdaptableLayer layer, Onnx.Fused.PackedProjection packing, LayerMembrane m, float coefficient)
    {
        int rows = layer.InFeatures, dim = layer.OutFeatures, packedCols = packing.PackedFeatures;
        if ((long)rows * packedCols != packed.Length)
            throw new SpmMismatchException($"Layer '{layer.ModulePath}': packed weight '{layer.WeightName}' has {packed.Length} elements, expected {rows}x{packedCols}.", layer.ModulePath);
        var delta = new float[rows * dim];
        MembraneMerge.AddInto(delta, layer, false, m, coefficient);
        var columns = new int[dim];
        for (int c = 0; c < dim; c++) columns[c] = packing.PackedColumn(c);
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < dim; c++)
                packed[r * packedCols + columns[c]] += delta[r * dim + c];
    }

    private static OnnxModel Branch(OnnxModel unet, MembraneLayout layout, IReadOnlyList<float> multipliers)
    {
        var proto = MembraneInjector.Inject(unet.Proto, layout);
        var tensors = MembraneTensors.Build(layout);
        var g = proto.Graph;
        var constants = tensors.Inputs.ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
        // One gates row broadcasts over any batch: the reshapes in the graph keep the leading 1.
        constants[MembraneNames.Gates] = tensors.Gates(1, multipliers.ToArray());
        foreach (var (name, t) in constants.OrderBy(kv => kv.Key, StringComparer.Ordinal))
            g.Initializer.Add(MembraneInjector.FloatInitializer(name, t.Shape, t.Data));
        var keep = g.Input.Where(i => !MembraneNames.IsMembraneInput(i.Name)).ToList();
        g.Input.Clear();
        g.Input.AddRange(keep);
        return OnnxModel.FromProto(proto, unet.BaseDirectory, unet.FilePath);
    }

    /// <summary>A copy of <paramref name="original"/> (name, dims, dtype FLOAT or FLOAT16 kept) holding <paramref name="data"/> inline.</summary>
    private static TensorProto WithData(TensorProto original, float[] data)
    {
        var t = new TensorProto { Name = original.Name, DataType = original.DataType };
        t.Dims.AddRange(original.Dims);
        switch ((TensorProto.Types.DataType)original.DataType)
        {
            case TensorProto.Types.DataType.Float:
                t.RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(data.AsSpan()));
                break;
            case TensorProto.Types.DataType.Float16:
                var half = new Half[data.Length];
                for (int i = 0; i < data.Length; i++) half[i] = (Half)data[i];
                t.RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(half.AsSpan()));
                break;
            default:
                throw new SpmMismatchException($"Weight '{original.Name}' has data type {original.DataType}; merging supports FLOAT and FLOAT16 (use --mode branch).", original.Name);
        }
        return t;
    }
}
