using Spm.Core;
using Spm.Diffusion.Onnx.Proto;

namespace Spm.Diffusion.Onnx;

/// <summary>Where an external initializer's bytes are: a file next to the model, a byte offset and a length.</summary>
/// <param name="Location">The file, relative to the model's folder, as written in the model (e.g. <c>weights.pb</c>).</param>
/// <param name="Offset">Byte offset of the tensor in that file.</param>
/// <param name="Length">Byte length of the tensor.</param>
public sealed record ExternalDataLocation(string Location, long Offset, long Length);

/// <summary>
/// What an initializer is, read from the graph alone (no tensor data is touched):
/// element type, shape, byte size and, for external data, where the bytes are.
/// </summary>
/// <param name="Name">The initializer's name.</param>
/// <param name="DataType">The ONNX element type code (<see cref="TensorProto.Types.DataType"/>).</param>
/// <param name="Shape">The dimensions, outermost first.</param>
/// <param name="ElementCount">Product of the dimensions.</param>
/// <param name="ByteLength">Size of the data in bytes (element count times element size).</param>
/// <param name="External">Where the data lives when it is stored outside the .onnx file; null when inline.</param>
public sealed record InitializerInfo(string Name, int DataType, long[] Shape, long ElementCount, long ByteLength, ExternalDataLocation? External)
{
    /// <summary>The element type's ONNX name (FLOAT, FLOAT16, ...).</summary>
    public string DataTypeName => OnnxDataTypes.Name(DataType);

    /// <summary>True when the data is stored in a separate file.</summary>
    public bool IsExternal => External is not null;

    /// <summary>Shape as text, e.g. <c>[64,32,1,1]</c>.</summary>
    public string ShapeString => "[" + string.Join(",", Shape) + "]";

    /// <summary>
    /// Describes <paramref name="tensor"/> and validates what can be validated without reading data:
    /// dimensions non-negative, element and byte counts without overflow, a known element size, and for external
    /// data a well-formed reference (relative location without <c>..</c>, offsets and length consistent with the shape).
    /// </summary>
    /// <param name="tensor">The initializer.</param>
    /// <param name="modelFile">The model file, named in errors.</param>
    /// <exception cref="SpmFormatException">The initializer is malformed or hostile.</exception>
    internal static InitializerInfo Describe(TensorProto tensor, string modelFile)
    {
        var name = tensor.Name;
        var shape = new long[tensor.Dims.Count];
        long count = 1;
        for (int i = 0; i < shape.Length; i++)
        {
            long d = tensor.Dims[i];
            if (d < 0) throw new SpmFormatException(modelFile, name, $"initializer has a negative dimension {d}.");
            shape[i] = d;
            if (count != 0 && d > long.MaxValue / Math.Max(count, 1))
                throw new SpmFormatException(modelFile, name, "initializer's element count overflows.");
            count *= d;
        }
        int elementSize = OnnxDataTypes.ElementSize(tensor.DataType);
        long bytes;
        if (elementSize == 0)
        {
            bytes = -1; // strings and packed 4-bit types: size not derivable from the shape alone
        }
        else
        {
            if (count > long.MaxValue / elementSize)
                throw new SpmFormatException(modelFile, name, "initializer's byte size overflows.");
            bytes = count * elementSize;
        }

        ExternalDataLocation? external = null;
        if (tensor.DataLocation == TensorProto.Types.DataLocation.External)
            external = ParseExternal(tensor, modelFile, bytes);
        else if (tensor.ExternalData.Count > 0)
            throw new SpmFormatException(modelFile, name, "initializer has external_data entries but its data_location is not EXTERNAL.");
        return new InitializerInfo(name, tensor.DataType, shape, count, bytes, external);
    }

    private static ExternalDataLocation ParseExternal(TensorProto tensor, string modelFile, long expectedBytes)
    {
        var name = tensor.Name;
        string? location = null;
        long offset = 0, length = -1;
        foreach (var entry in tensor.ExternalData)
        {
            switch (entry.Key)
            {
                case "location":
                    location = entry.Value;
                    break;
                case "offset":
                    offset = ParseNonNegative(entry.Value, "offset", modelFile, name);
                    break;
                case "length":
                    length = ParseNonNegative(entry.Value, "length", modelFile, name);
                    break;
                    // "checksum" and unknown keys carry no addressing information.
            }
        }
        if (string.IsNullOrEmpty(location))
            throw new SpmFormatException(modelFile, name, "external data has no location.");
        ValidateLocation(location, modelFile, name);
        if (expectedBytes < 0)
            throw new SpmFormatException(modelFile, name, $"external data of element type {OnnxDataTypes.Name(tensor.DataType)} is not supported.");
        if (length < 0) length = expectedBytes;
        else if (length != expectedBytes)
            throw new SpmFormatException(modelFile, name, $"external data length {length} does not match the shape ({expectedBytes} bytes expected).");
        if (offset > long.MaxValue - length)
            throw new SpmFormatException(modelFile, name, "external data offset + length overflows.");
        return new ExternalDataLocation(location, offset, length);
    }

    /// <summary>Rejects locations that could name a file outside the model's folder by their text alone.</summary>
    internal static void ValidateLocation(string location, string modelFile, string name)
    {
        if (location.Contains('\0'))
            throw new SpmFormatException(modelFile, name, "external data location contains a NUL character.");
        // Both separators and both rooting styles are checked on every platform: a model is a portable file.
        if (Path.IsPathRooted(location) || location.StartsWith('/') || location.StartsWith('\\') || (location.Length >= 2 && location[1] == ':'))
            throw new SpmFormatException(modelFile, name, $"external data location '{location}' is an absolute path; only paths inside the model's folder are allowed.");
        foreach (var part in location.Split('/', '\\'))
        {
            if (part == "..")
                throw new SpmFormatException(modelFile, name, $"external data location '{location}' leaves the model's folder ('..').");
        }
    }

    private static long ParseNonNegative(string text, string field, string modelFile, string name)
    {
        if (!long.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var v))
            throw new SpmFormatException(modelFile, name, $"external data {field} '{Truncate(text)}' is not a non-negative integer.");
        return v;
    }

    private static string Truncate(string s) => s.Length <= 40 ? s : s[..40] + "...";
}
