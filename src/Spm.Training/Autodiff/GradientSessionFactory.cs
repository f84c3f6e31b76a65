using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Spm.Core;
using Spm.Diffusion.Onnx.Proto;

namespace Spm.Training.Autodiff;

/// <summary>How ONNX Runtime sessions for forward probes and gradient graphs are created.</summary>
/// <param name="ExternalDataFolder">Folder holding the model's external weight files (e.g. the UNet folder with <c>weights.pb</c>); null when all weights are inline.</param>
/// <param name="IntraOpThreads">ORT intra-op threads; 0 lets ORT decide.</param>
/// <param name="UseCuda">Append the CUDA execution provider (an error if it is not available).</param>
/// <param name="OptimizationLevel">ORT graph optimization level.</param>
public sealed record GradientSessionSettings(
    string? ExternalDataFolder = null,
    int IntraOpThreads = 0,
    bool UseCuda = false,
    GraphOptimizationLevel OptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL);

/// <summary>Creates in-memory ORT sessions for models held as <see cref="ModelProto"/>.</summary>
internal static class GradientSessionFactory
{
    public static InferenceSession Create(ModelProto model, GradientSessionSettings settings)
    {
        var options = new SessionOptions();
        try
        {
            options.GraphOptimizationLevel = settings.OptimizationLevel;
            if (settings.IntraOpThreads > 0) options.IntraOpNumThreads = settings.IntraOpThreads;
            if (settings.ExternalDataFolder is not null)
                options.AddSessionConfigEntry("session.model_external_initializers_file_folder_path", Path.GetFullPath(settings.ExternalDataFolder));
            if (settings.UseCuda) options.AppendExecutionProvider_CUDA(0);
            // Diagnostics: SPM_ORT_PROFILE=prefix writes ORT's per-node timing JSON (prefix_<date>.json) when the session closes.
            if (Environment.GetEnvironmentVariable("SPM_ORT_PROFILE") is { Length: > 0 } profile)
            {
                options.EnableProfiling = true;
                options.ProfileOutputPathPrefix = profile;
            }
            return new InferenceSession(model.ToByteArray(), options);
        }
        catch (OnnxRuntimeException e)
        {
            throw new SpmException($"ONNX Runtime could not load the graph '{model.Graph?.Name}': {e.Message}", e);
        }
        finally
        {
            options.Dispose();
        }
    }
}
