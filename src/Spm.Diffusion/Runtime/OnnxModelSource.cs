namespace Spm.Diffusion.Runtime;

/// <summary>
/// Where a session's model comes from: an .onnx file (external data beside it), or an in-memory serialized
/// <c>ModelProto</c> (e.g. a UNet with injected membranes) whose unchanged weights stay in external data files
/// resolved against <see cref="ExternalDataFolder"/>.
/// </summary>
public sealed record OnnxModelSource
{
    private OnnxModelSource(string displayName, string? path, byte[]? bytes, string? externalDataFolder)
    {
        DisplayName = displayName;
        Path = path;
        Bytes = bytes;
        ExternalDataFolder = externalDataFolder;
    }

    /// <summary>The name used in messages (the file path, or the caller's label for in-memory models).</summary>
    public string DisplayName { get; }

    /// <summary>The .onnx file, when loading from disk.</summary>
    public string? Path { get; }

    /// <summary>The serialized model, when loading from memory.</summary>
    public byte[]? Bytes { get; }

    /// <summary>Folder that the external-data locations of an in-memory model are relative to.</summary>
    public string? ExternalDataFolder { get; }

    /// <summary>A model file on disk; its external data is resolved beside it.</summary>
    /// <exception cref="Spm.Core.SpmFormatException">The file does not exist.</exception>
    public static OnnxModelSource FromFile(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var full = System.IO.Path.GetFullPath(path);
        if (!File.Exists(full)) throw new Spm.Core.SpmFormatException(full, null, "model file not found.");
        // In a Hugging Face cache snapshot the external data are links into blobs/: load through FromBytes, which
        // points ONNX Runtime at the blobs (it refuses external data whose real path leaves the model's folder).
        var dir = System.IO.Path.GetDirectoryName(full)!;
        if (HubCache.BlobsFolderOf(dir) is not null) return FromBytes(File.ReadAllBytes(full), dir, full);
        return new OnnxModelSource(full, full, null, null);
    }

    /// <summary>
    /// A serialized model in memory. <paramref name="externalDataFolder"/> is required when the model refers to
    /// external data (ONNX Runtime resolves those locations against it).
    /// </summary>
    public static OnnxModelSource FromBytes(byte[] model, string? externalDataFolder, string displayName)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentException.ThrowIfNullOrEmpty(displayName);
        if (model.Length == 0) throw new Spm.Core.SpmFormatException(displayName, null, "model is empty.");
        var folder = externalDataFolder is null ? null : System.IO.Path.GetFullPath(externalDataFolder);
        if (folder is not null && HubCache.BlobsFolderOf(folder) is { } blobs)
        {
            var relocated = HubCache.RelocateExternalData(model, folder, blobs, displayName);
            if (!ReferenceEquals(relocated, model)) return new OnnxModelSource(displayName, null, relocated, blobs);
        }
        return new OnnxModelSource(displayName, null, model, folder);
    }

    /// <summary>
    /// An in-memory graph (an injected UNet, a gradient graph, a model being built), serialized now; its external-data
    /// locations, if any, are resolved against <paramref name="externalDataFolder"/>.
    /// </summary>
    /// <param name="model">The model (not modified).</param>
    /// <param name="externalDataFolder">Folder of the model's external weight files; null when all weights are inline.</param>
    /// <param name="displayName">Name for messages; defaults to the graph's name.</param>
    public static OnnxModelSource FromModel(Spm.Diffusion.Onnx.Proto.ModelProto model, string? externalDataFolder, string? displayName = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        var name = displayName is { Length: > 0 } ? displayName : model.Graph?.Name is { Length: > 0 } g ? $"graph '{g}'" : "in-memory model";
        return FromBytes(Google.Protobuf.MessageExtensions.ToByteArray(model), externalDataFolder, name);
    }

    /// <inheritdoc />
    public override string ToString() => DisplayName;
}
