using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Spm.Core;
using Spm.Core.IO;
using Spm.Core.Tensors;
using Spm.Diffusion.Onnx.Proto;

namespace Spm.Diffusion.Onnx;

/// <summary>
/// An ONNX model held as its protobuf graph, with external initializer data read lazily.
/// </summary>
/// <remarks>
/// <para>Loading parses only the .onnx file: external data files (<c>weights.pb</c>, <c>model.onnx_data</c>, ...)
/// are not opened until an initializer's data is asked for (<see cref="ReadFloat"/>, <see cref="ReadBytes(string)"/>).
/// Every external reference is validated at load: its location must be relative, without <c>..</c>, and (after
/// following symbolic links) inside the model's folder; offset and length must agree with the tensor's shape and,
/// when the data is read, with the data file's size, before anything is allocated.</para>
/// <para>The graph (<see cref="Proto"/>) may be modified in place (graph surgery). <see cref="Save"/> writes it so that
/// unchanged weights keep referring to the original data files; <see cref="CreateSession"/> runs it in ONNX Runtime
/// straight from memory with external weights still read from the model's folder.</para>
/// <para>Reading initializers is thread-safe; modifying the graph is not.</para>
/// </remarks>
public sealed class OnnxModel
{
    /// <summary>The file name of a model inside a component folder (<c>unet/model.onnx</c>).</summary>
    public const string DefaultFileName = "model.onnx";

    /// <summary>Protobuf cannot serialize or parse a message of 2 GB or more.</summary>
    internal const long MaxProtoBytes = int.MaxValue;

    // Name -> position in Graph.Initializer. Positions are re-checked on every lookup, so callers may replace,
    // add, remove or reorder initializers through Proto directly and lookups still see the current tensors.
    private Dictionary<string, int>? _index;
    private readonly object _indexLock = new();

    private OnnxModel(string filePath, string baseDirectory, ModelProto proto)
    {
        FilePath = filePath;
        BaseDirectory = baseDirectory;
        Proto = proto;
    }

    /// <summary>The .onnx file the model came from (or the name given to <see cref="FromProto"/>).</summary>
    public string FilePath { get; }

    /// <summary>The folder external data locations are relative to (the .onnx file's folder).</summary>
    public string BaseDirectory { get; }

    /// <summary>The parsed model. Modify it for graph surgery; initializer data may be external (see <see cref="ReadBytes(string)"/>).</summary>
    public ModelProto Proto { get; }

    /// <summary>The main graph.</summary>
    public GraphProto Graph => Proto.Graph;

    /// <summary>The opset version of the default ONNX domain (0 when the model declares none).</summary>
    public long OpsetVersion =>
        Proto.OpsetImport.Where(o => o.Domain is "" or "ai.onnx").Select(o => o.Version).DefaultIfEmpty(0).Max();

    /// <summary>The graph's inputs that are not initializers, with element types and shapes.</summary>
    public IReadOnlyList<OnnxValueInfo> Inputs =>
        Graph.Input.Where(i => !HasInitializer(i.Name)).Select(OnnxValueInfo.From).ToList();

    /// <summary>The graph's outputs with element types and shapes.</summary>
    public IReadOnlyList<OnnxValueInfo> Outputs => Graph.Output.Select(OnnxValueInfo.From).ToList();

    /// <summary>
    /// Finds the .onnx file for <paramref name="path"/>: the file itself; <c>PATH/model.onnx</c> for a component
    /// folder; <c>PATH/&lt;component&gt;/model.onnx</c> for a pipeline folder.
    /// </summary>
    /// <exception cref="SpmException">No model file is there.</exception>
    public static string ResolveModelFile(string path, string component = "unet")
    {
        ArgumentNullException.ThrowIfNull(path);
        if (File.Exists(path)) return Path.GetFullPath(path);
        if (Directory.Exists(path))
        {
            var direct = Path.Combine(path, DefaultFileName);
            if (File.Exists(direct)) return Path.GetFullPath(direct);
            var nested = Path.Combine(path, component, DefaultFileName);
            if (File.Exists(nested)) return Path.GetFullPath(nested);
            throw new SpmException($"'{path}' holds neither {DefaultFileName} nor {component}/{DefaultFileName}.");
        }
        throw new SpmInputNotFoundException(path, "model file or folder");
    }

    /// <summary>
    /// Loads a model: a .onnx file, a component folder holding <c>model.onnx</c>, or a pipeline folder (then
    /// <paramref name="component"/>'s model). Only the .onnx file is read; external data stays on disk.
    /// </summary>
    /// <exception cref="SpmFormatException">The file is not a valid ONNX model, or an initializer or external reference is malformed or hostile.</exception>
    /// <exception cref="SpmException">Nothing to load at <paramref name="path"/>.</exception>
    public static OnnxModel Load(string path, string component = "unet")
    {
        var file = ResolveModelFile(path, component);
        long size = new FileInfo(file).Length;
        if (size >= MaxProtoBytes)
            throw new SpmFormatException(file, null, $"file is {size} bytes; an ONNX protobuf file must be smaller than 2 GB (large weights belong in external data).");
        return Parse(File.ReadAllBytes(file), file);
    }

    /// <summary>Parses and validates the bytes of <paramref name="file"/> (already read); external data is relative to its folder.</summary>
    internal static OnnxModel Parse(byte[] bytes, string file)
    {
        ModelProto proto;
        try
        {
            proto = ModelProto.Parser.ParseFrom(bytes);
        }
        catch (InvalidProtocolBufferException ex)
        {
            throw new SpmFormatException(file, null, $"not a valid ONNX model ({ex.Message})", ex);
        }
        var model = new OnnxModel(file, Path.GetDirectoryName(file)!, proto);
        model.Validate();
        return model;
    }

    /// <summary>
    /// Wraps an in-memory model (e.g. one built or modified by code) whose external data locations are relative
    /// to <paramref name="baseDirectory"/>. The model is validated like a loaded one.
    /// </summary>
    /// <param name="proto">The model.</param>
    /// <param name="baseDirectory">The folder external data is read from.</param>
    /// <param name="displayName">Name used in errors; defaults to <c>baseDirectory/model.onnx</c>.</param>
    public static OnnxModel FromProto(ModelProto proto, string baseDirectory, string? displayName = null)
    {
        ArgumentNullException.ThrowIfNull(proto);
        ArgumentNullException.ThrowIfNull(baseDirectory);
        var dir = Path.GetFullPath(baseDirectory);
        var model = new OnnxModel(displayName ?? Path.Combine(dir, DefaultFileName), dir, proto);
        model.Validate();
        return model;
    }

    /// <summary>True when the main graph has an initializer of that name.</summary>
    public bool HasInitializer(string name) => Find(name) is not null;

    /// <summary>The initializer's protobuf (its data may be external).</summary>
    /// <exception cref="SpmFormatException">No initializer has that name.</exception>
    public TensorProto GetInitializer(string name) =>
        Find(name) ?? throw new SpmFormatException(FilePath, name, "no initializer of that name.");

    /// <summary>Element type, shape, size and external location of an initializer, from the graph alone.</summary>
    public InitializerInfo DescribeInitializer(string name) => InitializerInfo.Describe(GetInitializer(name), FilePath);

    /// <summary>Describes every initializer of the main graph, in graph order.</summary>
    public IEnumerable<InitializerInfo> DescribeInitializers() =>
        Graph.Initializer.Select(t => InitializerInfo.Describe(t, FilePath));

    /// <summary>Total bytes of initializer data stored outside the .onnx file.</summary>
    public long ExternalDataBytes => DescribeInitializers().Where(i => i.IsExternal).Sum(i => i.External!.Length);

    /// <summary>The distinct external data files the main graph refers to, as written in the model.</summary>
    public IReadOnlyList<string> ExternalDataFiles =>
        DescribeInitializers().Where(i => i.IsExternal).Select(i => i.External!.Location).Distinct(StringComparer.Ordinal).ToList();

    /// <summary>
    /// The initializer's data as little-endian bytes in element order (what <c>raw_data</c> would hold),
    /// reading external data from disk now.
    /// </summary>
    /// <exception cref="SpmFormatException">The data is missing, truncated, of the wrong size, or its file is outside the model's folder.</exception>
    public byte[] ReadBytes(string name) => ReadBytes(GetInitializer(name), InitializerInfo.Describe(GetInitializer(name), FilePath));

    /// <summary>
    /// The initializer as a float32 tensor (FLOAT as is; FLOAT16, BFLOAT16 and DOUBLE converted), reading external
    /// data from disk now.
    /// </summary>
    /// <exception cref="SpmFormatException">Not a floating-point tensor, too large, or its data is missing or malformed.</exception>
    public FloatTensor ReadFloat(string name)
    {
        var tensor = GetInitializer(name);
        var info = InitializerInfo.Describe(tensor, FilePath);
        if (!OnnxDataTypes.IsFloatingPoint(info.DataType))
            throw new SpmFormatException(FilePath, name, $"initializer is {info.DataTypeName}, not a floating-point tensor.");
        if (info.ElementCount > Array.MaxLength || info.Shape.Any(d => d > int.MaxValue))
            throw new SpmFormatException(FilePath, name, $"initializer {info.ShapeString} is too large for one float array.");
        var shape = info.Shape.Select(d => (int)d).ToArray();

        if (info.External is null && tensor.RawData.IsEmpty && info.DataType == (int)TensorProto.Types.DataType.Float && info.ElementCount > 0)
        {
            if (tensor.FloatData.Count != info.ElementCount)
                throw new SpmFormatException(FilePath, name, $"float_data holds {tensor.FloatData.Count} values, the shape needs {info.ElementCount}.");
            var values = new float[info.ElementCount];
            tensor.FloatData.CopyTo(values, 0);
            return new FloatTensor(shape, values);
        }

        // The bytes are validated against the file (or the proto) first: nothing shape-sized is allocated for a lie.
        var bytes = ReadBytes(tensor, info);
        var data = new float[info.ElementCount];
        switch ((TensorProto.Types.DataType)info.DataType)
        {
            case TensorProto.Types.DataType.Float:
                MemoryMarshal.Cast<byte, float>(bytes).CopyTo(data);
                if (!BitConverter.IsLittleEndian) ReverseEach(MemoryMarshal.Cast<float, int>(data.AsSpan()));
                break;
            case TensorProto.Types.DataType.Float16:
                for (int i = 0; i < data.Length; i++)
                    data[i] = (float)BitConverter.UInt16BitsToHalf(BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(2 * i)));
                break;
            case TensorProto.Types.DataType.Bfloat16:
                for (int i = 0; i < data.Length; i++)
                    data[i] = BitConverter.UInt32BitsToSingle((uint)BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(2 * i)) << 16);
                break;
            case TensorProto.Types.DataType.Double:
                for (int i = 0; i < data.Length; i++)
                    data[i] = (float)BinaryPrimitives.ReadDoubleLittleEndian(bytes.AsSpan(8 * i));
                break;
        }
        return new FloatTensor(shape, data);
    }

    /// <summary>
    /// Replaces (or adds) a FLOAT initializer with <paramref name="value"/>, stored inline in the graph. Use
    /// <see cref="OnnxSaveOptions.ExternalizeAboveBytes"/> to move large changed initializers into a new data file on save.
    /// </summary>
    public void SetFloatInitializer(string name, FloatTensor value)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(value);
        var bytes = new byte[checked(value.Length * sizeof(float))];
        MemoryMarshal.AsBytes(value.Data.AsSpan()).CopyTo(bytes);
        if (!BitConverter.IsLittleEndian) ReverseEach(MemoryMarshal.Cast<byte, int>(bytes.AsSpan()));
        var tensor = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Float, RawData = ByteString.CopyFrom(bytes) };
        tensor.Dims.AddRange(value.Shape.Select(d => (long)d));
        var existing = Find(name);
        if (existing is not null)
            Graph.Initializer[Graph.Initializer.IndexOf(existing)] = tensor;
        else
            Graph.Initializer.Add(tensor);
    }

    /// <summary>
    /// Serializes the model as it is now (external references unchanged), after re-validating every external
    /// reference. Pair with <see cref="BaseDirectory"/> to run it: see <see cref="CreateSession"/>.
    /// </summary>
    /// <exception cref="SpmFormatException">The model is 2 GB or more, or an external reference is invalid.</exception>
    public byte[] ToBytes()
    {
        Validate();
        long size = Proto.CalculateSize();
        if (size >= MaxProtoBytes)
            throw new SpmFormatException(FilePath, null, $"model serializes to {size} bytes; protobuf limits a model to 2 GB (save large initializers as external data).");
        return Proto.ToByteArray();
    }

    /// <summary>
    /// Creates an ONNX Runtime session for the model as it is in memory (including graph changes), reading
    /// unchanged external weights from <see cref="BaseDirectory"/>; no file is written. The session comes from
    /// <see cref="Runtime.OnnxSessionFactory"/> (CPU fallback included); the caller disposes it.
    /// </summary>
    /// <param name="options">Runtime options (provider, threads); null = CPU with ONNX Runtime's defaults.</param>
    /// <exception cref="SpmFormatException">The model cannot be serialized, has invalid external references, or cannot be loaded.</exception>
    public InferenceSession CreateSession(Runtime.OnnxRuntimeOptions? options = null)
        => Runtime.OnnxSessionFactory.Create(ToSource(), options ?? new Runtime.OnnxRuntimeOptions()).Session;

    /// <summary>
    /// The model as it is in memory, as a source for the pipeline's session factory
    /// (<see cref="Runtime.OnnxSessionFactory"/>): serialized bytes plus <see cref="BaseDirectory"/> for external data.
    /// </summary>
    public Runtime.OnnxModelSource ToSource() => Runtime.OnnxModelSource.FromBytes(ToBytes(), BaseDirectory, FilePath);

    /// <summary>The ONNX Runtime session option naming the folder external data of an in-memory model is read from.</summary>
    public const string ExternalInitializersFolderKey = "session.model_external_initializers_file_folder_path";

    /// <summary>
    /// Writes the model to <paramref name="path"/> (atomically). By default external initializers keep referring to
    /// their original data: in the same folder nothing but the .onnx file is written; in another folder each data
    /// file is hard-linked under the same relative name (copied only if linking fails and copying is allowed).
    /// See <see cref="OnnxSaveOptions"/> for embedding everything or moving changed initializers to a new data file.
    /// The data files are in place before the .onnx file appears, so a crash never leaves a model pointing at nothing.
    /// </summary>
    /// <exception cref="IOException">The destination exists and <see cref="OnnxSaveOptions.Overwrite"/> is off.</exception>
    /// <exception cref="SpmException">A data file cannot be linked or copied, the new data file name collides, or the result exceeds 2 GB.</exception>
    public void Save(string path, OnnxSaveOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        options ??= OnnxSaveOptions.Default;
        Validate();
        var dest = Path.GetFullPath(path);
        var destDir = Path.GetDirectoryName(dest)!;
        if (!options.Overwrite && File.Exists(dest))
            throw new IOException($"'{path}' already exists (use --force to overwrite).");

        var copy = Proto.Clone();
        var kept = new List<TensorProto>();
        var toExternalize = new List<TensorProto>();
        foreach (var tensor in copy.Graph.Initializer)
        {
            var info = InitializerInfo.Describe(tensor, FilePath);
            if (info.External is not null)
            {
                if (options.ExternalData == ExternalDataPolicy.Embed)
                    Inline(tensor, ReadBytes(tensor, info));
                else
                    kept.Add(tensor);
            }
            else if (options.ExternalizeAboveBytes is long threshold && info.ByteLength >= threshold && info.ByteLength > 0)
            {
                toExternalize.Add(tensor);
            }
        }

        // New data file for large inline initializers: must not clobber a file the saved model still refers to.
        if (toExternalize.Count > 0)
        {
            var newName = options.NewDataFileName ?? Path.GetFileName(dest) + "_data";
            InitializerInfo.ValidateLocation(newName, dest, "NewDataFileName");
            var keptNames = kept.Select(t => InitializerInfo.Describe(t, FilePath).External!.Location).ToHashSet(StringComparer.Ordinal);
            var newFull = SafePaths.RealPath(Path.Combine(destDir, newName));
            foreach (var loc in keptNames)
            {
                if (string.Equals(SafePaths.RealPath(Path.Combine(destDir, loc)), newFull, StringComparison.Ordinal) ||
                    string.Equals(SafePaths.RealPath(Path.Combine(BaseDirectory, loc)), newFull, StringComparison.Ordinal))
                    throw new SpmException($"cannot write new external data to '{newName}': the saved model still refers to that file; choose another NewDataFileName.");
            }
            if (!options.Overwrite && File.Exists(newFull))
                throw new IOException($"'{newFull}' already exists (use --force to overwrite).");
            WriteExternalData(toExternalize, newName, Path.Combine(destDir, newName));
        }

        if (kept.Count > 0 && !SameFolder(destDir, BaseDirectory))
            LinkDataFiles(kept, destDir, options);

        long size = copy.CalculateSize();
        if (size >= MaxProtoBytes)
            throw new SpmException($"the saved model would be {size} bytes; protobuf limits a model to 2 GB (keep or externalize large initializers).");
        AtomicFile.Write(dest, s => copy.WriteTo(s), options.Overwrite);
    }

    // ---------------------------------------------------------------- internals

    /// <summary>
    /// Validates the whole model without reading data: a graph exists, initializer names are unique, and every
    /// tensor anywhere (initializers, Constant values, subgraphs) with external data has a safe, consistent reference.
    /// </summary>
    private void Validate()
    {
        if (Proto.Graph is null)
            throw new SpmFormatException(FilePath, null, "the model has no graph (not an ONNX model?).");
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var t in Proto.Graph.Initializer)
        {
            if (!seen.Add(t.Name))
                throw new SpmFormatException(FilePath, t.Name, "duplicate initializer name.");
        }
        var locations = new HashSet<string>(StringComparer.Ordinal);
        ValidateGraph(Proto.Graph, locations, 0);
        foreach (var f in Proto.Functions)
            foreach (var n in f.Node) ValidateNode(n, locations, 1);
        foreach (var loc in locations) ResolveInside(loc, keyForErrors: null);
    }

    private void ValidateGraph(GraphProto graph, HashSet<string> locations, int depth)
    {
        foreach (var t in graph.Initializer) ValidateTensor(t, locations);
        foreach (var s in graph.SparseInitializer)
        {
            if (s.Values is not null) ValidateTensor(s.Values, locations);
            if (s.Indices is not null) ValidateTensor(s.Indices, locations);
        }
        foreach (var n in graph.Node) ValidateNode(n, locations, depth);
    }

    private void ValidateNode(NodeProto node, HashSet<string> locations, int depth)
    {
        // The protobuf parser already bounds nesting; this only guards hand-built protos.
        if (depth > 64) throw new SpmFormatException(FilePath, node.Name, "subgraphs nested too deeply.");
        foreach (var a in node.Attribute)
        {
            if (a.T is not null) ValidateTensor(a.T, locations);
            foreach (var t in a.Tensors) ValidateTensor(t, locations);
            if (a.G is not null) ValidateGraph(a.G, locations, depth + 1);
            foreach (var g in a.Graphs) ValidateGraph(g, locations, depth + 1);
        }
    }

    private void ValidateTensor(TensorProto t, HashSet<string> locations)
    {
        var info = InitializerInfo.Describe(t, FilePath);
        if (info.External is not null) locations.Add(info.External.Location);
    }

    /// <summary>The canonical path of an external data file, checked to lie inside the model's folder after following links.</summary>
    private string ResolveInside(string location, string? keyForErrors)
    {
        InitializerInfo.ValidateLocation(location, FilePath, keyForErrors ?? location);
        string folder, target;
        try
        {
            folder = SafePaths.RealPath(BaseDirectory);
            target = SafePaths.RealPath(Path.Combine(BaseDirectory, location));
        }
        catch (IOException ex)
        {
            throw new SpmFormatException(FilePath, keyForErrors ?? location, $"external data location '{location}' cannot be resolved ({ex.Message}).", ex);
        }
        // A Hugging Face cache snapshot links every file into its repository's blobs/ folder: that is inside the model.
        bool hubBlob = Runtime.HubCache.IsBlobOfSnapshot(BaseDirectory, target);
        if (!hubBlob && (!SafePaths.IsInside(folder, target) || string.Equals(Path.TrimEndingDirectorySeparator(folder), target, StringComparison.Ordinal)))
            throw new SpmFormatException(FilePath, keyForErrors ?? location, $"external data location '{location}' resolves outside the model's folder (symbolic link).");
        return target;
    }

    private byte[] ReadBytes(TensorProto tensor, InitializerInfo info)
    {
        if (info.ByteLength < 0)
            throw new SpmFormatException(FilePath, info.Name, $"element type {info.DataTypeName} has no fixed byte size.");
        if (info.ByteLength > Array.MaxLength)
            throw new SpmFormatException(FilePath, info.Name, $"initializer holds {info.ByteLength} bytes, too large for one array.");
        if (info.External is { } ext)
            return ReadExternal(info, ext);
        if (!tensor.RawData.IsEmpty || info.ByteLength == 0)
        {
            if (tensor.RawData.Length != info.ByteLength)
                throw new SpmFormatException(FilePath, info.Name, $"raw_data holds {tensor.RawData.Length} bytes, the shape needs {info.ByteLength}.");
            return tensor.RawData.ToByteArray();
        }
        return TypedFieldBytes(tensor, info);
    }

    private byte[] ReadExternal(InitializerInfo info, ExternalDataLocation ext)
    {
        var file = ResolveInside(ext.Location, info.Name);
        try
        {
            using var handle = File.OpenHandle(file, FileMode.Open, FileAccess.Read, FileShare.Read);
            long fileLength = RandomAccess.GetLength(handle);
            if (ext.Offset > fileLength || ext.Length > fileLength - ext.Offset)
                throw new SpmFormatException(FilePath, info.Name,
                    $"external data [{ext.Offset}, {ext.Offset + ext.Length}) lies beyond the end of '{ext.Location}' ({fileLength} bytes).");
            var buffer = new byte[ext.Length];
            int done = 0;
            while (done < buffer.Length)
            {
                int n = RandomAccess.Read(handle, buffer.AsSpan(done), ext.Offset + done);
                if (n <= 0)
                    throw new SpmFormatException(FilePath, info.Name, $"external data file '{ext.Location}' ended early.");
                done += n;
            }
            return buffer;
        }
        catch (FileNotFoundException ex)
        {
            throw new SpmFormatException(FilePath, info.Name, $"external data file '{ext.Location}' does not exist.", ex);
        }
        catch (DirectoryNotFoundException ex)
        {
            throw new SpmFormatException(FilePath, info.Name, $"external data file '{ext.Location}' does not exist.", ex);
        }
        catch (UnauthorizedAccessException ex)
        {
            throw new SpmFormatException(FilePath, info.Name, $"external data file '{ext.Location}' cannot be read ({ex.Message}).", ex);
        }
        catch (IOException ex)
        {
            throw new SpmFormatException(FilePath, info.Name, $"external data file '{ext.Location}' cannot be read ({ex.Message}).", ex);
        }
    }

    /// <summary>Converts the typed repeated fields (float_data, int32_data, ...) to raw little-endian bytes.</summary>
    private byte[] TypedFieldBytes(TensorProto t, InitializerInfo info)
    {
        var type = (TensorProto.Types.DataType)info.DataType;
        int size = OnnxDataTypes.ElementSize(info.DataType);
        var bytes = new byte[info.ByteLength];
        var span = bytes.AsSpan();
        void Expect(int have, long need, string field)
        {
            if (have != need)
                throw new SpmFormatException(FilePath, info.Name, $"{field} holds {have} values, the shape needs {need}.");
        }
        switch (type)
        {
            case TensorProto.Types.DataType.Float:
            case TensorProto.Types.DataType.Complex64:
                Expect(t.FloatData.Count, info.ByteLength / 4, "float_data");
                for (int i = 0; i < t.FloatData.Count; i++) BinaryPrimitives.WriteSingleLittleEndian(span[(4 * i)..], t.FloatData[i]);
                break;
            case TensorProto.Types.DataType.Double:
            case TensorProto.Types.DataType.Complex128:
                Expect(t.DoubleData.Count, info.ByteLength / 8, "double_data");
                for (int i = 0; i < t.DoubleData.Count; i++) BinaryPrimitives.WriteDoubleLittleEndian(span[(8 * i)..], t.DoubleData[i]);
                break;
            case TensorProto.Types.DataType.Int64:
                Expect(t.Int64Data.Count, info.ElementCount, "int64_data");
                for (int i = 0; i < t.Int64Data.Count; i++) BinaryPrimitives.WriteInt64LittleEndian(span[(8 * i)..], t.Int64Data[i]);
                break;
            case TensorProto.Types.DataType.Uint32:
            case TensorProto.Types.DataType.Uint64:
                Expect(t.Uint64Data.Count, info.ElementCount, "uint64_data");
                for (int i = 0; i < t.Uint64Data.Count; i++)
                {
                    if (size == 4) BinaryPrimitives.WriteUInt32LittleEndian(span[(4 * i)..], (uint)t.Uint64Data[i]);
                    else BinaryPrimitives.WriteUInt64LittleEndian(span[(8 * i)..], t.Uint64Data[i]);
                }
                break;
            default:
                // INT32, INT16, INT8, UINT8, UINT16, BOOL, FLOAT16, BFLOAT16, FLOAT8*: one int32_data entry per element.
                Expect(t.Int32Data.Count, info.ElementCount, "int32_data");
                for (int i = 0; i < t.Int32Data.Count; i++)
                {
                    int v = t.Int32Data[i];
                    switch (size)
                    {
                        case 1: span[i] = (byte)v; break;
                        case 2: BinaryPrimitives.WriteInt16LittleEndian(span[(2 * i)..], (short)v); break;
                        default: BinaryPrimitives.WriteInt32LittleEndian(span[(4 * i)..], v); break;
                    }
                }
                break;
        }
        return bytes;
    }

    private static void Inline(TensorProto tensor, byte[] bytes)
    {
        tensor.ExternalData.Clear();
        tensor.DataLocation = TensorProto.Types.DataLocation.Default;
        tensor.RawData = ByteString.CopyFrom(bytes);
    }

    /// <summary>Writes the given inline tensors into one new data file (64-byte aligned) and points them at it.</summary>
    private void WriteExternalData(List<TensorProto> tensors, string location, string file)
    {
        const int Alignment = 64;
        var plan = new List<(TensorProto Tensor, byte[] Bytes, long Offset)>();
        long offset = 0;
        foreach (var t in tensors)
        {
            var bytes = ReadBytes(t, InitializerInfo.Describe(t, FilePath));
            offset = (offset + Alignment - 1) / Alignment * Alignment;
            plan.Add((t, bytes, offset));
            offset += bytes.Length;
        }
        AtomicFile.Write(file, s =>
        {
            long pos = 0;
            foreach (var (_, bytes, at) in plan)
            {
                if (at > pos) s.Write(new byte[at - pos]);
                s.Write(bytes);
                pos = at + bytes.Length;
            }
        });
        foreach (var (t, bytes, at) in plan)
        {
            t.RawData = ByteString.Empty;
            t.FloatData.Clear(); t.Int32Data.Clear(); t.Int64Data.Clear(); t.DoubleData.Clear(); t.Uint64Data.Clear();
            t.DataLocation = TensorProto.Types.DataLocation.External;
            t.ExternalData.Clear();
            t.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = location });
            t.ExternalData.Add(new StringStringEntryProto { Key = "offset", Value = at.ToString(System.Globalization.CultureInfo.InvariantCulture) });
            t.ExternalData.Add(new StringStringEntryProto { Key = "length", Value = bytes.Length.ToString(System.Globalization.CultureInfo.InvariantCulture) });
        }
    }

    /// <summary>Makes every kept data file available under the same relative name in <paramref name="destDir"/>.</summary>
    private void LinkDataFiles(List<TensorProto> kept, string destDir, OnnxSaveOptions options)
    {
        var locations = kept.Select(t => InitializerInfo.Describe(t, FilePath).External!.Location).Distinct(StringComparer.Ordinal);
        foreach (var loc in locations)
        {
            var source = ResolveInside(loc, null);
            if (!File.Exists(source))
                throw new SpmException($"cannot save '{FilePath}' elsewhere: its external data file '{loc}' does not exist.");
            var target = Path.Combine(destDir, loc);
            var targetReal = SafePaths.RealPath(target);
            if (string.Equals(targetReal, source, StringComparison.Ordinal)) continue;
            if (!SafePaths.IsInside(SafePaths.RealPath(destDir), targetReal))
                throw new SpmException($"cannot link external data '{loc}': the destination '{target}' resolves outside '{destDir}'.");
            if (File.Exists(target) && !options.Overwrite)
                throw new IOException($"'{target}' already exists (use --force to overwrite).");
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            var temp = Path.Combine(Path.GetDirectoryName(target)!, $".{Path.GetFileName(target)}.{Environment.ProcessId}.{Guid.NewGuid():N}.link");
            if (HardLink.TryCreate(source, temp))
            {
                File.Move(temp, target, overwrite: true);
                // rename(2) is a no-op when both names already link the same file: drop the spare name.
                if (File.Exists(temp)) File.Delete(temp);
            }
            else if (options.AllowCopy)
            {
                AtomicFile.Write(target, s =>
                {
                    using var src = new FileStream(source, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
                    src.CopyTo(s, 1 << 20);
                });
            }
            else
            {
                throw new SpmException($"cannot hard-link '{source}' into '{destDir}' (different file system?) and copying is not allowed.");
            }
        }
    }

    private static bool SameFolder(string a, string b) =>
        string.Equals(SafePaths.RealPath(a), SafePaths.RealPath(b), OperatingSystem.IsWindows() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal);

    private TensorProto? Find(string name)
    {
        lock (_indexLock)
        {
            var inits = Graph.Initializer;
            for (int attempt = 0; attempt < 2; attempt++)
            {
                if (_index is null || attempt == 1)
                {
                    var index = new Dictionary<string, int>(StringComparer.Ordinal);
                    for (int i = 0; i < inits.Count; i++) index.TryAdd(inits[i].Name, i);
                    _index = index;
                }
                if (_index.TryGetValue(name, out int at) && at < inits.Count && inits[at].Name == name) return inits[at];
                // A miss may be stale (initializers added or moved since the index was built): rebuild once.
            }
            return null;
        }
    }

    private static void ReverseEach(Span<int> values)
    {
        for (int i = 0; i < values.Length; i++) values[i] = BinaryPrimitives.ReverseEndianness(values[i]);
    }
}
