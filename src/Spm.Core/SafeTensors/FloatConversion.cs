using System.Buffers.Binary;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace Spm.Core.SafeTensors;

/// <summary>
/// Conversions between the floating-point encodings of safetensors files (little-endian bytes) and float32.
/// Narrowing conversions round to nearest, ties to even, and keep NaN and infinities.
/// </summary>
public static class FloatConversion
{
    /// <summary>Copies little-endian float32 bytes into <paramref name="destination"/>.</summary>
    public static void SingleFromBytes(ReadOnlySpan<byte> source, Span<float> destination)
    {
        CheckLength(source.Length, 4, destination.Length);
        if (BitConverter.IsLittleEndian) source.CopyTo(MemoryMarshal.AsBytes(destination));
        else for (int i = 0; i < destination.Length; i++) destination[i] = BinaryPrimitives.ReadSingleLittleEndian(source[(4 * i)..]);
    }

    /// <summary>Converts little-endian IEEE half-precision bytes to float32 (exact).</summary>
    public static void HalfToSingle(ReadOnlySpan<byte> source, Span<float> destination)
    {
        CheckLength(source.Length, 2, destination.Length);
        if (BitConverter.IsLittleEndian) TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<byte, Half>(source), destination);
        else for (int i = 0; i < destination.Length; i++) destination[i] = (float)BinaryPrimitives.ReadHalfLittleEndian(source[(2 * i)..]);
    }

    /// <summary>Converts little-endian bfloat16 bytes to float32 (exact: bfloat16 is the upper half of a float32).</summary>
    public static void BFloat16ToSingle(ReadOnlySpan<byte> source, Span<float> destination)
    {
        CheckLength(source.Length, 2, destination.Length);
        for (int i = 0; i < destination.Length; i++)
            destination[i] = BitConverter.Int32BitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(source[(2 * i)..]) << 16);
    }

    /// <summary>Converts little-endian float64 bytes to float32 (rounded to nearest).</summary>
    public static void DoubleToSingle(ReadOnlySpan<byte> source, Span<float> destination)
    {
        CheckLength(source.Length, 8, destination.Length);
        for (int i = 0; i < destination.Length; i++)
            destination[i] = (float)BinaryPrimitives.ReadDoubleLittleEndian(source[(8 * i)..]);
    }

    /// <summary>Converts float8 E4M3 ("fn" variant: bias 7, no infinities, S.1111.111 is NaN) to float32 (exact).</summary>
    public static void Float8E4M3ToSingle(ReadOnlySpan<byte> source, Span<float> destination)
    {
        CheckLength(source.Length, 1, destination.Length);
        for (int i = 0; i < destination.Length; i++) destination[i] = Float8E4M3ToSingle(source[i]);
    }

    /// <summary>Converts one float8 E4M3 value to float32.</summary>
    public static float Float8E4M3ToSingle(byte b)
    {
        int sign = b >> 7, exp = (b >> 3) & 0xF, man = b & 0x7;
        float v;
        if (exp == 0xF && man == 0x7) v = float.NaN;
        else if (exp == 0) v = man / 8f * MathF.Pow(2, -6); // subnormal
        else v = (1 + man / 8f) * MathF.Pow(2, exp - 7);
        return sign != 0 ? -v : v;
    }

    /// <summary>Converts float8 E5M2 (IEEE-like, bias 15; the upper byte of a half) to float32 (exact).</summary>
    public static void Float8E5M2ToSingle(ReadOnlySpan<byte> source, Span<float> destination)
    {
        CheckLength(source.Length, 1, destination.Length);
        for (int i = 0; i < destination.Length; i++) destination[i] = (float)BitConverter.UInt16BitsToHalf((ushort)(source[i] << 8));
    }

    /// <summary>Encodes float32 values as little-endian IEEE half bytes (round to nearest even; overflow gives infinity).</summary>
    public static void SingleToHalfBytes(ReadOnlySpan<float> source, Span<byte> destination)
    {
        CheckLength(destination.Length, 2, source.Length);
        for (int i = 0; i < source.Length; i++)
            BinaryPrimitives.WriteHalfLittleEndian(destination[(2 * i)..], (Half)source[i]);
    }

    /// <summary>Encodes float32 values as little-endian bfloat16 bytes (round to nearest even; NaN stays NaN).</summary>
    public static void SingleToBFloat16Bytes(ReadOnlySpan<float> source, Span<byte> destination)
    {
        CheckLength(destination.Length, 2, source.Length);
        for (int i = 0; i < source.Length; i++)
            BinaryPrimitives.WriteUInt16LittleEndian(destination[(2 * i)..], SingleToBFloat16Bits(source[i]));
    }

    /// <summary>The bfloat16 bit pattern nearest to <paramref name="value"/> (ties to even).</summary>
    public static ushort SingleToBFloat16Bits(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value)) return (ushort)((bits >> 16) | 0x0040); // keep sign, force a quiet NaN
        uint roundingBias = 0x7FFF + ((bits >> 16) & 1);
        return (ushort)((bits + roundingBias) >> 16);
    }

    /// <summary>Encodes float32 values as little-endian float32 bytes.</summary>
    public static void SingleToBytes(ReadOnlySpan<float> source, Span<byte> destination)
    {
        CheckLength(destination.Length, 4, source.Length);
        if (BitConverter.IsLittleEndian) MemoryMarshal.AsBytes(source).CopyTo(destination);
        else for (int i = 0; i < source.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(destination[(4 * i)..], source[i]);
    }

    /// <summary>Encodes float32 values as little-endian float64 bytes (exact).</summary>
    public static void SingleToDoubleBytes(ReadOnlySpan<float> source, Span<byte> destination)
    {
        CheckLength(destination.Length, 8, source.Length);
        for (int i = 0; i < source.Length; i++) BinaryPrimitives.WriteDoubleLittleEndian(destination[(8 * i)..], source[i]);
    }

    private static void CheckLength(int bytes, int size, int elements)
    {
        if ((long)elements * size != bytes)
            throw new ArgumentException($"{bytes} bytes do not hold {elements} elements of {size} bytes.");
    }
}
