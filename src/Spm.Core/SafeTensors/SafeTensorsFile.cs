using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;
using Spm.Core.Tensors;

namespace Spm.Core.SafeTensors;

/// <summary>
/// A safetensors file opened for reading through a read-only memory mapping: opening reads and validates the
/// header only, tensor bytes are never copied unless a conversion is asked for (<see cref="ReadFloat(string)"/>).
/// </summary>
/// <remarks>
/// <para>Validation happens before anything proportional to a declared size is allocated: the header length is
/// bounded by the file length and <see cref="MaxHeaderBytes"/>, the JSON is parsed token by token with a small
/// depth limit and duplicate keys are rejected, every shape's byte size is computed with overflow checks and must
/// equal its <c>data_offsets</c> span, and the tensors must tile the data buffer exactly (contiguous,
/// non-overlapping, no gap, nothing left over). Every failure is a <see cref="SpmFormatException"/> naming the file
/// and the key. Opening allocates in proportion to the header only (about 3x its length in the degenerate
/// case of thousands of empty tensors; for real files far less than the file), never to a declared size.</para>
/// <para>Spans returned by <see cref="GetBytes(string)"/> and <see cref="GetSpan{T}"/> point into the mapping and are
/// valid only until <see cref="Dispose"/> and while the <see cref="SafeTensorsFile"/> is reachable (an undisposed file
/// is unmapped by its finalizer). Reads are thread-safe. The file must not be truncated in place while
/// open (the project's writers replace files by rename, which keeps an open mapping valid).</para>
/// </remarks>
public sealed unsafe class SafeTensorsFile : IDisposable
{
    /// <summary>Largest header accepted (100 MiB); real headers are kilobytes to a few megabytes.</summary>
    public const long MaxHeaderBytes = 100L << 20;

    private readonly Dictionary<string, int> _index;
    private readonly List<SafeTensorInfo> _tensors;
    private MemoryMappedViewAccessor? _view;
    private byte* _base;
    private readonly long _bufferStart;

    private SafeTensorsFile(string path, MemoryMappedViewAccessor view, byte* basePtr,
        long bufferStart, long length, List<SafeTensorInfo> tensors, Dictionary<string, int> index, Dictionary<string, string> metadata)
    {
        Path = path;
        _view = view;
        _base = basePtr;
        _bufferStart = bufferStart;
        FileLength = length;
        _tensors = tensors;
        Metadata = metadata;
        _index = index;
    }

    /// <summary>The path the file was opened from.</summary>
    public string Path { get; }

    /// <summary>Length of the file in bytes.</summary>
    public long FileLength { get; }

    /// <summary>The header's <c>__metadata__</c> (empty when absent).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>The tensors in header order.</summary>
    public IReadOnlyList<SafeTensorInfo> Tensors => _tensors;

    /// <summary>Opens and validates <paramref name="path"/>.</summary>
    /// <exception cref="SpmFormatException">The file is truncated, malformed or hostile.</exception>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    public static SafeTensorsFile Open(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        FileStream? fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete, bufferSize: 0);
        MemoryMappedFile? map = null;
        MemoryMappedViewAccessor? view = null;
        byte* ptr = null;
        try
        {
            long length = fs!.Length;
            if (length < 8) throw new SpmFormatException(path, "header", $"file is {length} bytes, shorter than the 8-byte header length");
            Span<byte> prefix = stackalloc byte[8];
            fs.ReadExactly(prefix);
            ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
            if (headerLength > (ulong)(length - 8))
                throw new SpmFormatException(path, "header", $"header length {headerLength} exceeds the file ({length} bytes)");
            if (headerLength > MaxHeaderBytes)
                throw new SpmFormatException(path, "header", $"header length {headerLength} exceeds the {MaxHeaderBytes}-byte limit");
            if (headerLength < 2) throw new SpmFormatException(path, "header", $"header length {headerLength} is too small for a JSON object");

            map = MemoryMappedFile.CreateFromFile(fs, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
            fs = null; // owned by the mapping now
            view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref ptr);
            byte* basePtr = ptr + view.PointerOffset;
            // A view outlives its mapping object (POSIX mmap and Windows sections alike): closing the mapping and
            // its file descriptor now keeps only the view, so many open files cost no descriptors.
            map.Dispose();
            map = null;

            long bufferStart = 8 + (long)headerLength;
            var header = new ReadOnlySpan<byte>(basePtr + 8, (int)headerLength);
            var (tensors, index, metadata) = SafeTensorsHeader.Parse(header, length - bufferStart, path);
            return new SafeTensorsFile(path, view, basePtr, bufferStart, length, tensors, index, metadata);
        }
        catch
        {
            if (ptr != null) view!.SafeMemoryMappedViewHandle.ReleasePointer();
            view?.Dispose();
            map?.Dispose();
            fs?.Dispose();
            throw;
        }
    }

    /// <summary>Whether a tensor named <paramref name="name"/> exists.</summary>
    public bool Contains(string name) => _index.ContainsKey(name);

    /// <summary>The header entry of tensor <paramref name="name"/>.</summary>
    /// <exception cref="KeyNotFoundException">No such tensor.</exception>
    public SafeTensorInfo GetInfo(string name)
        => _index.TryGetValue(name, out var i) ? _tensors[i] : throw new KeyNotFoundException($"'{Path}' has no tensor '{name}'.");

    /// <summary>Tries to get the header entry of tensor <paramref name="name"/>.</summary>
    public bool TryGetInfo(string name, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out SafeTensorInfo? info)
    {
        if (_index.TryGetValue(name, out var i)) { info = _tensors[i]; return true; }
        info = null;
        return false;
    }

    /// <summary>The raw little-endian bytes of tensor <paramref name="name"/>, straight from the mapping (valid until <see cref="Dispose"/>).</summary>
    /// <exception cref="KeyNotFoundException">No such tensor.</exception>
    /// <exception cref="NotSupportedException">The tensor is 2 GiB or larger (use <see cref="GetBytes(string, long, int)"/>).</exception>
    public ReadOnlySpan<byte> GetBytes(string name)
    {
        var info = GetInfo(name);
        if (info.ByteLength > int.MaxValue) throw new NotSupportedException($"Tensor '{name}' is {info.ByteLength} bytes; read it in slices.");
        return GetBytes(name, 0, (int)info.ByteLength);
    }

    /// <summary>A slice of tensor <paramref name="name"/>'s bytes, for tensors too large for one span.</summary>
    public ReadOnlySpan<byte> GetBytes(string name, long offset, int length)
    {
        var info = GetInfo(name);
        if (offset < 0 || length < 0 || offset > info.ByteLength - length)
            throw new ArgumentOutOfRangeException(nameof(offset), $"Slice [{offset}, +{length}) is outside tensor '{name}' ({info.ByteLength} bytes).");
        return new ReadOnlySpan<byte>(Base + _bufferStart + info.DataOffset + offset, length);
    }

    /// <summary>
    /// The elements of tensor <paramref name="name"/> viewed as <typeparamref name="T"/> without copying; the element
    /// size of <typeparamref name="T"/> must equal the dtype's (e.g. <see cref="float"/> for F32, <see cref="Half"/>
    /// for F16, <see cref="ushort"/> for BF16, <see cref="long"/> for I64). Data may be unaligned, which .NET spans allow.
    /// </summary>
    /// <exception cref="SpmFormatException">The element size does not match the tensor's dtype.</exception>
    public ReadOnlySpan<T> GetSpan<T>(string name) where T : unmanaged
    {
        var info = GetInfo(name);
        if (sizeof(T) != SafeTensorDTypes.SizeOf(info.DType))
            throw new SpmFormatException(Path, name, $"tensor is {SafeTensorDTypes.HeaderName(info.DType)}, not {sizeof(T)}-byte {typeof(T).Name} elements");
        return MemoryMarshal.Cast<byte, T>(GetBytes(name));
    }

    /// <summary>Reads a floating-point tensor (F32, F16, BF16, F64, F8) as a new float32 <see cref="FloatTensor"/>.</summary>
    /// <exception cref="SpmFormatException">The tensor is not floating-point, or its shape does not fit a <see cref="FloatTensor"/>.</exception>
    public FloatTensor ReadFloat(string name)
    {
        var info = GetInfo(name);
        if (!SafeTensorDTypes.IsFloat(info.DType))
            throw new SpmFormatException(Path, name, $"expected a floating-point tensor, found {SafeTensorDTypes.HeaderName(info.DType)}");
        if (info.ElementCount > Array.MaxLength)
            throw new SpmFormatException(Path, name, $"tensor has {info.ElementCount} elements, too many for one array");
        var shape = new int[info.Shape.Count];
        for (int i = 0; i < shape.Length; i++)
        {
            if (info.Shape[i] > int.MaxValue) throw new SpmFormatException(Path, name, $"dimension {info.Shape[i]} is too large");
            shape[i] = (int)info.Shape[i];
        }
        var data = new float[info.ElementCount];
        ReadFloatInto(name, data);
        return new FloatTensor(shape, data);
    }

    /// <summary>Converts a floating-point tensor into <paramref name="destination"/>, which must hold exactly its element count.</summary>
    public void ReadFloatInto(string name, Span<float> destination)
    {
        var info = GetInfo(name);
        if (destination.Length != info.ElementCount)
            throw new ArgumentException($"Destination holds {destination.Length} floats; tensor '{name}' has {info.ElementCount}.", nameof(destination));
        ReadFloatSlice(name, 0, destination);
    }

    /// <summary>
    /// Converts elements [<paramref name="startElement"/>, + destination length) of a floating-point tensor into
    /// <paramref name="destination"/>: for tensors too large to convert at once, or partial reads.
    /// </summary>
    /// <exception cref="SpmFormatException">The tensor is not floating-point.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The range is outside the tensor.</exception>
    public void ReadFloatSlice(string name, long startElement, Span<float> destination)
    {
        var info = GetInfo(name);
        if (!SafeTensorDTypes.IsFloat(info.DType))
            throw new SpmFormatException(Path, name, $"expected a floating-point tensor, found {SafeTensorDTypes.HeaderName(info.DType)}");
        if (startElement < 0 || startElement > info.ElementCount - destination.Length)
            throw new ArgumentOutOfRangeException(nameof(startElement), $"Elements [{startElement}, +{destination.Length}) are outside tensor '{name}' ({info.ElementCount} elements).");
        int size = SafeTensorDTypes.SizeOf(info.DType);
        // Spans are int-sized: convert in chunks so tensors over 2 GiB work too.
        const int chunk = 1 << 24;
        for (int done = 0; done < destination.Length; done += chunk)
        {
            int n = Math.Min(chunk, destination.Length - done);
            var src = GetBytes(name, (startElement + done) * size, n * size);
            var dst = destination.Slice(done, n);
            switch (info.DType)
            {
                case SafeTensorDType.F32: FloatConversion.SingleFromBytes(src, dst); break;
                case SafeTensorDType.F16: FloatConversion.HalfToSingle(src, dst); break;
                case SafeTensorDType.BF16: FloatConversion.BFloat16ToSingle(src, dst); break;
                case SafeTensorDType.F64: FloatConversion.DoubleToSingle(src, dst); break;
                case SafeTensorDType.F8E4M3: FloatConversion.Float8E4M3ToSingle(src, dst); break;
                default: FloatConversion.Float8E5M2ToSingle(src, dst); break;
            }
        }
    }

    private byte* Base
    {
        get
        {
            ObjectDisposedException.ThrowIf(_base == null, this);
            return _base;
        }
    }

    /// <summary>Unmaps and closes the file. Spans obtained from it must not be used afterwards.</summary>
    public void Dispose()
    {
        Release();
        GC.SuppressFinalize(this);
    }

    /// <summary>
    /// Unmaps a file that was never disposed. The view's SafeHandle is still usable here (critical handles are
    /// finalized after ordinary objects), and without this our pointer reference would keep the mapping alive forever.
    /// </summary>
    ~SafeTensorsFile() => Release();

    private void Release()
    {
        var view = Interlocked.Exchange(ref _view, null);
        if (view is null) return;
        _base = null;
        view.SafeMemoryMappedViewHandle.ReleasePointer();
        view.Dispose();
    }
}
