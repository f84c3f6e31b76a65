using System.Buffers.Binary;
using System.Text;

namespace Spm.Core.Tests.SafeTensors;

/// <summary>Builds safetensors files byte by byte (independently of the writer under test).</summary>
internal static class SafeTensorsTestFiles
{
    /// <summary>8-byte LE length + header text (padded with spaces to <paramref name="padTo"/>) + data.</summary>
    public static byte[] Raw(string headerJson, byte[] data, int padTo = 1)
    {
        var header = Encoding.UTF8.GetBytes(headerJson);
        int n = (header.Length + padTo - 1) / padTo * padTo;
        var file = new byte[8 + n + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(file, (ulong)n);
        header.CopyTo(file, 8);
        file.AsSpan(8 + header.Length, n - header.Length).Fill((byte)' ');
        data.CopyTo(file, 8 + n);
        return file;
    }

    public static byte[] Floats(params float[] values)
    {
        var b = new byte[values.Length * 4];
        for (int i = 0; i < values.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(b.AsSpan(4 * i), values[i]);
        return b;
    }

    public static string WriteTemp(string dir, byte[] bytes, string name = "t.safetensors")
    {
        var path = Path.Combine(dir, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }
}
