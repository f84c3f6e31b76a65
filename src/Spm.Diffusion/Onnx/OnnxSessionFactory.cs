using Microsoft.ML.OnnxRuntime;

namespace Spm.Diffusion.Onnx;

/// <summary>
/// Builds ONNX Runtime sessions from serialized models held in memory whose external initializers stay in files,
/// so a modified graph runs without writing a model file or copying weights.
/// </summary>
public static class OnnxSessionFactory
{
    /// <summary>The ONNX Runtime session option that tells it where external data of an in-memory model lives.</summary>
    public const string ExternalInitializersFolderKey = "session.model_external_initializers_file_folder_path";

    /// <summary>
    /// Creates a session for <paramref name="model"/> (a serialized ModelProto) whose external data locations are
    /// relative to <paramref name="externalDataFolder"/>.
    /// </summary>
    /// <param name="model">The serialized model, e.g. from <see cref="OnnxModel.ToBytes"/>.</param>
    /// <param name="externalDataFolder">The folder holding the external data files (the original model's folder).</param>
    /// <param name="options">Options to use; the external-data folder entry is added to them. When null, default CPU options are created and disposed here.</param>
    public static InferenceSession Create(byte[] model, string externalDataFolder, SessionOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(externalDataFolder);
        var folder = Path.GetFullPath(externalDataFolder);
        if (options is null)
        {
            using var own = new SessionOptions();
            own.AddSessionConfigEntry(ExternalInitializersFolderKey, folder);
            return new InferenceSession(model, own);
        }
        options.AddSessionConfigEntry(ExternalInitializersFolderKey, folder);
        return new InferenceSession(model, options);
    }
}
