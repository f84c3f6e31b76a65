using System.Buffers.Binary;
using System.Text;
using Spm.Core.Tensors;

namespace Spm.Diffusion.Membranes;

/// <summary>
/// Writes ONNX Runtime's adapter file (<c>.onnx_adapter</c>): a FlatBuffers buffer with file identifier <c>TORT</c>
/// and root table <c>Adapter { format_version:int; adapter_version:int; model_version:int; parameters:[Parameter] }</c>,
/// <c>Parameter { name:string; dims:[int64]; data_type:TensorDataType; raw_data:[uint8] (force_align: 8) }</c>
/// (onnxruntime/lora/adapter_format/adapter_schema.fbs). ONNX Runtime feeds an active adapter's parameters as the
/// model inputs of the same names (<c>RunOptions.AddActiveLoraAdapter</c>).
/// </summary>
/// <remarks>
/// The buffer is laid out front to back, each table before what it refers to (FlatBuffers offsets are unsigned and
/// point forward), with every vector's data 8-byte aligned.
/// </remarks>
public static class OnnxAdapterFile
{
    /// <summary>The adapter format version ONNX Runtime 1.20 and later read.</summary>
    public const int FormatVersion = 1;

    private const int FloatType = 1; // TensorDataType.FLOAT

    /// <summary>The file's bytes for float parameters, in the given order.</summary>
    public static byte[] Build(IReadOnlyList<(string Name, FloatTensor Value)> parameters, int adapterVersion = 1, int modelVersion = 1)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        var w = new Writer();
        int root = w.Reserve(4);
        w.Bytes("TORT"u8);
        // Adapter vtable and table.
        int vt = w.Align(2);
        w.VTable(20, [4, 8, 12, 16]);
        int table = w.Align(4);
        w.Int32(table - vt);
        w.Int32(FormatVersion);
        w.Int32(adapterVersion);
        w.Int32(modelVersion);
        int paramsField = w.Reserve(4);
        w.PatchOffset(root, table);
        // parameters vector of offsets.
        int vec = w.Align(4);
        w.Int32(parameters.Count);
        var slots = new int[parameters.Count];
        for (int i = 0; i < slots.Length; i++) slots[i] = w.Reserve(4);
        w.PatchOffset(paramsField, vec);
        for (int i = 0; i < parameters.Count; i++)
        {
            var (name, value) = parameters[i];
            int pvt = w.Align(2);
            w.VTable(20, [4, 8, 12, 16]);
            int pt = w.Align(4);
            w.Int32(pt - pvt);
            int nameField = w.Reserve(4), dimsField = w.Reserve(4);
            w.Int32(FloatType);
            int dataField = w.Reserve(4);
            w.PatchOffset(slots[i], pt);

            int str = w.Align(4);
            var utf8 = Encoding.UTF8.GetBytes(name);
            w.Int32(utf8.Length);
            w.Bytes(utf8);
            w.Bytes([0]);
            w.PatchOffset(nameField, str);

            int dims = w.AlignVector8();
            w.Int32(value.Shape.Length);
            foreach (var d in value.Shape) w.Int64(d);
            w.PatchOffset(dimsField, dims);

            int data = w.AlignVector8();
            w.Int32(checked(value.Length * 4));
            foreach (var v in value.Data) w.Float(v);
            w.PatchOffset(dataField, data);
        }
        return w.ToArray();
    }

    private sealed class Writer
    {
        private readonly List<byte> _b = new(1 << 16);

        public int Pos => _b.Count;

        public int Align(int n)
        {
            while (_b.Count % n != 0) _b.Add(0);
            return _b.Count;
        }

        /// <summary>Aligns so that a vector's elements (after its 4-byte length) start on 8 bytes; returns the length's position.</summary>
        public int AlignVector8()
        {
            Align(4);
            if (_b.Count % 8 != 4) Int32(0);
            return _b.Count;
        }

        public int Reserve(int n)
        {
            int at = _b.Count;
            for (int i = 0; i < n; i++) _b.Add(0);
            return at;
        }

        public void Bytes(ReadOnlySpan<byte> bytes) { foreach (var x in bytes) _b.Add(x); }

        public void Int32(int v) { Span<byte> s = stackalloc byte[4]; BinaryPrimitives.WriteInt32LittleEndian(s, v); Bytes(s); }

        public void Int64(long v) { Span<byte> s = stackalloc byte[8]; BinaryPrimitives.WriteInt64LittleEndian(s, v); Bytes(s); }

        public void Float(float v) { Span<byte> s = stackalloc byte[4]; BinaryPrimitives.WriteSingleLittleEndian(s, v); Bytes(s); }

        public void UInt16(int v) { Span<byte> s = stackalloc byte[2]; BinaryPrimitives.WriteUInt16LittleEndian(s, checked((ushort)v)); Bytes(s); }

        /// <summary>A vtable: its own size, the table's inline size, then each field's offset in the table.</summary>
        public void VTable(int tableSize, int[] fieldOffsets)
        {
            UInt16(4 + 2 * fieldOffsets.Length);
            UInt16(tableSize);
            foreach (var f in fieldOffsets) UInt16(f);
        }

        /// <summary>Writes at <paramref name="slot"/> the forward offset to <paramref name="target"/>.</summary>
        public void PatchOffset(int slot, int target)
        {
            int rel = target - slot;
            if (rel <= 0) throw new InvalidOperationException("FlatBuffers offsets must point forward.");
            _b[slot] = (byte)rel; _b[slot + 1] = (byte)(rel >> 8); _b[slot + 2] = (byte)(rel >> 16); _b[slot + 3] = (byte)(rel >> 24);
        }

        public byte[] ToArray() => _b.ToArray();
    }
}
