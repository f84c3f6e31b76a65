namespace Spm.Diffusion.Onnx;

/// <summary>What <see cref="OnnxModel.Save"/> does with initializer data.</summary>
public enum ExternalDataPolicy
{
    /// <summary>
    /// External initializers keep referring to their original data files (no copy of gigabytes). Saving into the
    /// model's own folder writes only the .onnx file; saving into another folder hard-links each data file there
    /// under the same relative name (or copies it when linking is impossible and
    /// <see cref="OnnxSaveOptions.AllowCopy"/> is set).
    /// </summary>
    Keep,

    /// <summary>Every initializer is stored inside the .onnx file (small models only: protobuf caps a file at 2 GB).</summary>
    Embed,
}

/// <summary>Options of <see cref="OnnxModel.Save"/>.</summary>
/// <param name="ExternalData">How external initializers are kept or embedded.</param>
/// <param name="ExternalizeAboveBytes">
/// When set, inline initializers of at least this many bytes (typically the ones a caller changed or added) are
/// moved into a new data file next to the saved model, named by <see cref="NewDataFileName"/>. Null keeps them inline.
/// </param>
/// <param name="NewDataFileName">
/// Name of that new data file, relative to the saved model's folder; default <c>&lt;model file name&gt;_data</c>
/// (e.g. <c>model.onnx_data</c>). It must not be a data file the saved model still refers to.
/// </param>
/// <param name="Overwrite">Replace an existing model file (and linked data files) at the destination. Off by default: nothing is overwritten silently.</param>
/// <param name="AllowCopy">With <see cref="ExternalDataPolicy.Keep"/> into another folder: copy a data file when a hard link cannot be made (another file system).</param>
public sealed record OnnxSaveOptions(
    ExternalDataPolicy ExternalData = ExternalDataPolicy.Keep,
    long? ExternalizeAboveBytes = null,
    string? NewDataFileName = null,
    bool Overwrite = false,
    bool AllowCopy = true)
{
    /// <summary>The defaults: keep external data where it is, no overwriting.</summary>
    public static OnnxSaveOptions Default { get; } = new();
}
