using System.Buffers;
using System.Buffers.Binary;
using System.Text.Encodings.Web;
using System.Text.Json;
using Spm.Core.IO;
using Spm.Core.Tensors;

namespace Spm.Core.SafeTensors;

/// <summary>One tensor to write: its key, element type, shape and raw little-endian bytes.</summary>
/// <param name="Name">The tensor key (must not be <c>__metadata__</c>).</param>
/// <param name="DType">Element type of <paramref name="Data"/>.</param>
/// <param name="Shape">Dimensions (empty for a 0-d scalar).</param>
/// <param name="Data">Exactly product(shape) × dtype-size bytes, little-endian.</param>
public sealed record SafeTensorEntry(string Name, SafeTensorDType DType, long[] Shape, ReadOnlyMemory<byte> Data)
{
    /// <summary>Encodes a float tensor as <paramref name="dtype"/> (F32, F16, BF16 or F64).</summary>
    public static SafeTensorEntry FromFloat(string name, FloatTensor tensor, SafeTensorDType dtype = SafeTensorDType.F32)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        var shape = Array.ConvertAll(tensor.Shape, d => (long)d);
        var bytes = new byte[(long)tensor.Length * SafeTensorDTypes.SizeOf(dtype)];
        switch (dtype)
        {
            case SafeTensorDType.F32: FloatConversion.SingleToBytes(tensor.Data, bytes); break;
            case SafeTensorDType.F16: FloatConversion.SingleToHalfBytes(tensor.Data, bytes); break;
            case SafeTensorDType.BF16: FloatConversion.SingleToBFloat16Bytes(tensor.Data, bytes); break;
            case SafeTensorDType.F64: FloatConversion.SingleToDoubleBytes(tensor.Data, bytes); break;
            default: throw new ArgumentException($"Cannot encode floats as {SafeTensorDTypes.HeaderName(dtype)}.", nameof(dtype));
        }
        return new SafeTensorEntry(name, dtype, shape, bytes);
    }
}

/// <summary>
/// Writes safetensors files atomically (<see cref="AtomicFile"/>) and deterministically: identical input gives
/// byte-identical output. Layout: metadata first (keys in ordinal order), then the tensors in the order given,
/// data packed back to back in the same order, header padded with spaces so the data starts at a multiple of 8.
/// </summary>
public static class SafeTensorsWriter
{
    private static readonly JsonWriterOptions JsonOptions = new()
    {
        // Keys are plain text, never embedded in HTML: keep them readable (no \u002B for '+').
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        Indented = false,
    };

    /// <summary>Writes <paramref name="tensors"/> (in the order given) with optional string metadata.</summary>
    /// <param name="path">Destination file.</param>
    /// <param name="tensors">The tensors; names must be unique.</param>
    /// <param name="metadata">The <c>__metadata__</c> strings; omitted from the file when null or empty.</param>
    /// <param name="overwrite">When false and the file exists, throws <see cref="IOException"/> and writes nothing.</param>
    /// <exception cref="ArgumentException">Duplicate or reserved names, or data whose length does not match shape × dtype.</exception>
    public static void Write(string path, IEnumerable<SafeTensorEntry> tensors, IReadOnlyDictionary<string, string>? metadata = null, bool overwrite = true)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        var list = tensors.ToList();
        var header = BuildHeader(list, metadata);
        AtomicFile.Write(path, s => WriteBody(s, header, list), overwrite);
    }

    /// <summary>
    /// Writes the same bytes as <see cref="Write(string, IEnumerable{SafeTensorEntry}, IReadOnlyDictionary{string, string}?, bool)"/>
    /// to a stream (not atomic: for in-memory files and callers that manage their own files).
    /// </summary>
    public static void Write(Stream stream, IEnumerable<SafeTensorEntry> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(tensors);
        var list = tensors.ToList();
        WriteBody(stream, BuildHeader(list, metadata), list);
    }

    private static void WriteBody(Stream s, byte[] header, List<SafeTensorEntry> list)
    {
        Span<byte> prefix = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)header.Length);
        s.Write(prefix);
        s.Write(header);
        foreach (var t in list) s.Write(t.Data.Span);
    }

    /// <summary>
    /// Writes float tensors, encoded as <paramref name="dtype"/> (F32 by default; F16, BF16, F64 also), in ordinal
    /// order of their names (a dictionary's enumeration order is not something to rely on).
    /// </summary>
    public static void WriteFloat(string path, IReadOnlyDictionary<string, FloatTensor> tensors, IReadOnlyDictionary<string, string>? metadata = null,
        bool overwrite = true, SafeTensorDType dtype = SafeTensorDType.F32)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        var entries = tensors.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => SafeTensorEntry.FromFloat(kv.Key, kv.Value, dtype));
        Write(path, entries, metadata, overwrite);
    }

    /// <summary>The header bytes (JSON plus space padding) for these tensors, without the 8-byte length prefix.</summary>
    internal static byte[] BuildHeader(IReadOnlyList<SafeTensorEntry> tensors, IReadOnlyDictionary<string, string>? metadata)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        var buffer = new ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer, JsonOptions))
        {
            w.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                w.WriteStartObject(SafeTensorsHeader.MetadataKey);
                foreach (var kv in metadata.OrderBy(kv => kv.Key, StringComparer.Ordinal))
                {
                    ArgumentNullException.ThrowIfNull(kv.Value, $"metadata['{kv.Key}']");
                    if (System.Text.Encoding.UTF8.GetByteCount(kv.Key) > SafeTensorsHeader.MaxKeyBytes)
                        throw new ArgumentException($"Metadata key '{kv.Key[..40]}...' is longer than {SafeTensorsHeader.MaxKeyBytes} bytes.");
                    w.WriteString(kv.Key, kv.Value);
                }
                w.WriteEndObject();
            }
            long offset = 0;
            foreach (var t in tensors)
            {
                ArgumentNullException.ThrowIfNull(t);
                if (t.Name == SafeTensorsHeader.MetadataKey) throw new ArgumentException($"'{SafeTensorsHeader.MetadataKey}' is reserved and cannot name a tensor.");
                if (!names.Add(t.Name)) throw new ArgumentException($"Duplicate tensor name '{t.Name}'.");
                if (System.Text.Encoding.UTF8.GetByteCount(t.Name) > SafeTensorsHeader.MaxKeyBytes)
                    throw new ArgumentException($"Tensor name '{t.Name[..40]}...' is longer than {SafeTensorsHeader.MaxKeyBytes} bytes.");
                if (t.Shape.Length > SafeTensorsHeader.MaxRank) throw new ArgumentException($"Tensor '{t.Name}' has more than {SafeTensorsHeader.MaxRank} dimensions.");
                long count = 1;
                foreach (var d in t.Shape)
                {
                    if (d < 0) throw new ArgumentException($"Tensor '{t.Name}' has a negative dimension.");
                    count = checked(count * d);
                }
                long bytes = checked(count * SafeTensorDTypes.SizeOf(t.DType));
                if (bytes != t.Data.Length)
                    throw new ArgumentException($"Tensor '{t.Name}': {SafeTensorDTypes.HeaderName(t.DType)}[{string.Join(",", t.Shape)}] needs {bytes} bytes, data has {t.Data.Length}.");
                w.WriteStartObject(t.Name);
                w.WriteString("dtype", SafeTensorDTypes.HeaderName(t.DType));
                w.WriteStartArray("shape");
                foreach (var d in t.Shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                w.WriteNumberValue(offset + bytes);
                w.WriteEndArray();
                w.WriteEndObject();
                offset += bytes;
            }
            w.WriteEndObject();
        }
        int padded = (buffer.WrittenCount + 7) & ~7;
        var header = new byte[padded];
        buffer.WrittenSpan.CopyTo(header);
        header.AsSpan(buffer.WrittenCount).Fill((byte)' ');
        return header;
    }
}
