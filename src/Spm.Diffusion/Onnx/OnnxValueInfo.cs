using Spm.Diffusion.Onnx.Proto;

namespace Spm.Diffusion.Onnx;

/// <summary>A graph input or output: name, element type and shape (symbolic dimensions by name).</summary>
/// <param name="Name">The value's name.</param>
/// <param name="ElementType">ONNX element type name (FLOAT, INT64, ...), or the kind of a non-tensor type (sequence, map, ...).</param>
/// <param name="Dims">One entry per dimension: the number, the symbolic name, or <c>?</c> when unknown; null when the rank is unknown.</param>
public sealed record OnnxValueInfo(string Name, string ElementType, IReadOnlyList<string>? Dims)
{
    /// <summary>Shape as text, e.g. <c>[batch,4,height,width]</c>, or <c>?</c> when the rank is unknown.</summary>
    public string ShapeString => Dims is null ? "?" : "[" + string.Join(",", Dims) + "]";

    /// <summary>Reads a value's type from the graph.</summary>
    public static OnnxValueInfo From(ValueInfoProto value)
    {
        ArgumentNullException.ThrowIfNull(value);
        var type = value.Type;
        if (type is null) return new OnnxValueInfo(value.Name, "?", null);
        return type.ValueCase switch
        {
            TypeProto.ValueOneofCase.TensorType => new OnnxValueInfo(value.Name, OnnxDataTypes.Name(type.TensorType.ElemType), DimsOf(type.TensorType.Shape)),
            TypeProto.ValueOneofCase.SparseTensorType => new OnnxValueInfo(value.Name, "sparse " + OnnxDataTypes.Name(type.SparseTensorType.ElemType), DimsOf(type.SparseTensorType.Shape)),
            TypeProto.ValueOneofCase.SequenceType => new OnnxValueInfo(value.Name, "sequence", null),
            TypeProto.ValueOneofCase.MapType => new OnnxValueInfo(value.Name, "map", null),
            TypeProto.ValueOneofCase.OptionalType => new OnnxValueInfo(value.Name, "optional", null),
            _ => new OnnxValueInfo(value.Name, "?", null),
        };
    }

    private static IReadOnlyList<string>? DimsOf(TensorShapeProto? shape) =>
        shape?.Dim.Select(d => d.ValueCase switch
        {
            TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue => d.DimValue.ToString(System.Globalization.CultureInfo.InvariantCulture),
            TensorShapeProto.Types.Dimension.ValueOneofCase.DimParam => d.DimParam,
            _ => "?",
        }).ToList();
}
