using Spm.Diffusion.Onnx.Proto;

namespace Spm.Diffusion.Onnx;

/// <summary>Facts about ONNX tensor element types (<see cref="TensorProto.Types.DataType"/>).</summary>
public static class OnnxDataTypes
{
    /// <summary>
    /// Bytes per element in <c>raw_data</c> / external data, or 0 for types without a fixed byte size
    /// (STRING, the 4-bit packed types, UNDEFINED and unknown codes).
    /// </summary>
    public static int ElementSize(int dataType) => (TensorProto.Types.DataType)dataType switch
    {
        TensorProto.Types.DataType.Float => 4,
        TensorProto.Types.DataType.Uint8 => 1,
        TensorProto.Types.DataType.Int8 => 1,
        TensorProto.Types.DataType.Uint16 => 2,
        TensorProto.Types.DataType.Int16 => 2,
        TensorProto.Types.DataType.Int32 => 4,
        TensorProto.Types.DataType.Int64 => 8,
        TensorProto.Types.DataType.Bool => 1,
        TensorProto.Types.DataType.Float16 => 2,
        TensorProto.Types.DataType.Double => 8,
        TensorProto.Types.DataType.Uint32 => 4,
        TensorProto.Types.DataType.Uint64 => 8,
        TensorProto.Types.DataType.Complex64 => 8,
        TensorProto.Types.DataType.Complex128 => 16,
        TensorProto.Types.DataType.Bfloat16 => 2,
        TensorProto.Types.DataType.Float8E4M3Fn => 1,
        TensorProto.Types.DataType.Float8E4M3Fnuz => 1,
        TensorProto.Types.DataType.Float8E5M2 => 1,
        TensorProto.Types.DataType.Float8E5M2Fnuz => 1,
        _ => 0,
    };

    /// <summary>Upper-case ONNX name of an element type (FLOAT, FLOAT16, INT64, ...), or <c>TYPE&lt;n&gt;</c> for unknown codes.</summary>
    public static string Name(int dataType) => Enum.IsDefined(typeof(TensorProto.Types.DataType), dataType)
        ? ((TensorProto.Types.DataType)dataType) switch
        {
            TensorProto.Types.DataType.Float => "FLOAT",
            TensorProto.Types.DataType.Float16 => "FLOAT16",
            TensorProto.Types.DataType.Bfloat16 => "BFLOAT16",
            TensorProto.Types.DataType.Double => "DOUBLE",
            var t => t.ToString().ToUpperInvariant(),
        }
        : $"TYPE{dataType}";

    /// <summary>True for FLOAT, FLOAT16, BFLOAT16 and DOUBLE: the types <see cref="OnnxModel.ReadFloat"/> converts to float32.</summary>
    public static bool IsFloatingPoint(int dataType) => (TensorProto.Types.DataType)dataType is
        TensorProto.Types.DataType.Float or TensorProto.Types.DataType.Float16 or
        TensorProto.Types.DataType.Bfloat16 or TensorProto.Types.DataType.Double;
}
