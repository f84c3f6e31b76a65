namespace Spm.Core.SafeTensors;

/// <summary>Element types of the safetensors format (the names in the header's <c>dtype</c> field).</summary>
public enum SafeTensorDType
{
    /// <summary>Boolean, one byte per element (0 or 1).</summary>
    Bool,
    /// <summary>Unsigned 8-bit integer.</summary>
    U8,
    /// <summary>Signed 8-bit integer.</summary>
    I8,
    /// <summary>Signed 16-bit integer.</summary>
    I16,
    /// <summary>Unsigned 16-bit integer.</summary>
    U16,
    /// <summary>IEEE 754 half precision (binary16).</summary>
    F16,
    /// <summary>bfloat16: the upper 16 bits of an IEEE single.</summary>
    BF16,
    /// <summary>Signed 32-bit integer.</summary>
    I32,
    /// <summary>Unsigned 32-bit integer.</summary>
    U32,
    /// <summary>IEEE 754 single precision.</summary>
    F32,
    /// <summary>Signed 64-bit integer.</summary>
    I64,
    /// <summary>Unsigned 64-bit integer.</summary>
    U64,
    /// <summary>IEEE 754 double precision.</summary>
    F64,
    /// <summary>8-bit float, 4 exponent and 3 mantissa bits (no infinities).</summary>
    F8E4M3,
    /// <summary>8-bit float, 5 exponent and 2 mantissa bits.</summary>
    F8E5M2,
}

/// <summary>Facts about <see cref="SafeTensorDType"/> values: byte size and header name.</summary>
public static class SafeTensorDTypes
{
    /// <summary>Bytes per element.</summary>
    public static int SizeOf(SafeTensorDType dtype) => dtype switch
    {
        SafeTensorDType.Bool or SafeTensorDType.U8 or SafeTensorDType.I8 or SafeTensorDType.F8E4M3 or SafeTensorDType.F8E5M2 => 1,
        SafeTensorDType.I16 or SafeTensorDType.U16 or SafeTensorDType.F16 or SafeTensorDType.BF16 => 2,
        SafeTensorDType.I32 or SafeTensorDType.U32 or SafeTensorDType.F32 => 4,
        SafeTensorDType.I64 or SafeTensorDType.U64 or SafeTensorDType.F64 => 8,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, null),
    };

    /// <summary>The name used in the header, e.g. <c>F32</c>, <c>BOOL</c>, <c>F8_E4M3</c>.</summary>
    public static string HeaderName(SafeTensorDType dtype) => dtype switch
    {
        SafeTensorDType.Bool => "BOOL",
        SafeTensorDType.F8E4M3 => "F8_E4M3",
        SafeTensorDType.F8E5M2 => "F8_E5M2",
        _ when Enum.IsDefined(dtype) => dtype.ToString(),
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, null),
    };

    /// <summary>Whether the type is a floating-point type that <see cref="SafeTensorsFile.ReadFloat(string)"/> converts.</summary>
    public static bool IsFloat(SafeTensorDType dtype) => dtype is SafeTensorDType.F16 or SafeTensorDType.BF16
        or SafeTensorDType.F32 or SafeTensorDType.F64 or SafeTensorDType.F8E4M3 or SafeTensorDType.F8E5M2;

    /// <summary>Parses a header name (case-sensitive, as the format defines them) without allocating.</summary>
    public static bool TryParse(ReadOnlySpan<byte> utf8Name, out SafeTensorDType dtype)
    {
        dtype = default;
        switch (utf8Name)
        {
            case var s when s.SequenceEqual("BOOL"u8): dtype = SafeTensorDType.Bool; return true;
            case var s when s.SequenceEqual("U8"u8): dtype = SafeTensorDType.U8; return true;
            case var s when s.SequenceEqual("I8"u8): dtype = SafeTensorDType.I8; return true;
            case var s when s.SequenceEqual("I16"u8): dtype = SafeTensorDType.I16; return true;
            case var s when s.SequenceEqual("U16"u8): dtype = SafeTensorDType.U16; return true;
            case var s when s.SequenceEqual("F16"u8): dtype = SafeTensorDType.F16; return true;
            case var s when s.SequenceEqual("BF16"u8): dtype = SafeTensorDType.BF16; return true;
            case var s when s.SequenceEqual("I32"u8): dtype = SafeTensorDType.I32; return true;
            case var s when s.SequenceEqual("U32"u8): dtype = SafeTensorDType.U32; return true;
            case var s when s.SequenceEqual("F32"u8): dtype = SafeTensorDType.F32; return true;
            case var s when s.SequenceEqual("I64"u8): dtype = SafeTensorDType.I64; return true;
            case var s when s.SequenceEqual("U64"u8): dtype = SafeTensorDType.U64; return true;
            case var s when s.SequenceEqual("F64"u8): dtype = SafeTensorDType.F64; return true;
            case var s when s.SequenceEqual("F8_E4M3"u8): dtype = SafeTensorDType.F8E4M3; return true;
            case var s when s.SequenceEqual("F8_E5M2"u8): dtype = SafeTensorDType.F8E5M2; return true;
            default: return false;
        }
    }
}
