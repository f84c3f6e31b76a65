using Microsoft.ML.OnnxRuntime;
using Spm.Core;

namespace Spm.Diffusion.Runtime;

/// <summary>A created session and the provider it actually runs on.</summary>
/// <param name="Session">The session (owned by the caller: dispose it, or this record, when done).</param>
/// <param name="Provider">The provider in use: CPU when CUDA was asked for but could not load.</param>
/// <param name="FallbackReason">Why CUDA was not used, in one line; null when the requested provider is in use.</param>
public sealed record CreatedSession(InferenceSession Session, ExecutionProviderKind Provider, string? FallbackReason) : IDisposable
{
    /// <summary>Whether the optimized graph came from, or went to, the optimized-model cache.</summary>
    public OptimizedModelUse OptimizedModel { get; init; }

    /// <summary>Disposes <see cref="Session"/>.</summary>
    public void Dispose() => Session.Dispose();
}

/// <summary>
/// The one place ONNX Runtime sessions are created (file models, in-memory models, injected UNets, gradient graphs):
/// from <see cref="OnnxRuntimeOptions"/> it builds its own <see cref="SessionOptions"/> (provider with CUDA-to-CPU
/// fallback and a one-line reason, device, threads, graph optimization, profiling, the external-data folder of
/// in-memory models), disposes them once the session holds its copy, and never takes or changes a caller's options.
/// Failures to parse or initialize a model become <see cref="SpmFormatException"/> naming the model.
/// Several sessions that must agree on one provider choice (a training run, a pipeline) go through an
/// <see cref="OnnxSessionGroup"/>.
/// </summary>
public static class OnnxSessionFactory
{
    // ORT's session config key for resolving external data of a model loaded from bytes.
    private const string ExternalFolderKey = "session.model_external_initializers_file_folder_path";
    private const string IntraOpSpinningKey = "session.intra_op.allow_spinning";
    private const string InterOpSpinningKey = "session.inter_op.allow_spinning";
    // ORT's session config keys for skipping named graph transformers and for where a saved optimized model's weights go.
    private const string DisabledOptimizersKey = "optimization.disable_specified_optimizers";
    private const string OptimizedWeightsFileKey = "session.optimized_model_external_initializers_file_name";

    /// <summary>Creates a session for <paramref name="source"/>.</summary>
    /// <exception cref="SpmFormatException">The model cannot be parsed or initialized.</exception>
    public static CreatedSession Create(OnnxModelSource source, OnnxRuntimeOptions options) => Create(source, options, SessionTuning.None);

    /// <summary>Creates a session for <paramref name="source"/>, with per-model <paramref name="tuning"/> on top of the run's options.</summary>
    /// <exception cref="SpmFormatException">The model cannot be parsed or initialized.</exception>
    public static CreatedSession Create(OnnxModelSource source, OnnxRuntimeOptions options, SessionTuning tuning)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(tuning);
        options.Validate();
        string? fallback = null;
        var provider = ExecutionProviderKind.Cpu;
        var so = BuildCpuOptions(options, source, tuning);
        try
        {
            if (options.Provider == ExecutionProviderKind.Cuda)
            {
                fallback = CudaProbe.TryAppend(so, options);
                provider = fallback is null ? ExecutionProviderKind.Cuda : ExecutionProviderKind.Cpu;
                if (fallback is not null)
                {
                    // A failed append can leave the options half-configured: start again on the CPU.
                    so.Dispose();
                    so = BuildCpuOptions(options, source, tuning);
                }
            }
            else if (tuning.UseOptimizedModelCache && options.OptimizedModelCacheFolder is { } folder
                && OptimizedModelCache.EntryFor(folder, source, tuning.OptimizationLevel ?? options.OptimizationLevel, tuning.DisabledOptimizers) is { } entry)
            {
                return OpenThroughCache(source, options, tuning, so, entry);
            }
            try
            {
                return new CreatedSession(Open(source, so, tuning.SharedPrepackedWeights), provider, fallback);
            }
            catch (OnnxRuntimeException ex) when (provider == ExecutionProviderKind.Cuda)
            {
                // The provider library loaded but the device could not be initialized (no GPU, bad device index, ...).
                fallback = $"CUDA session could not start on device {options.DeviceId} ({FirstLine(ex.Message)})";
                so.Dispose();
                so = BuildCpuOptions(options, source, tuning);
                return new CreatedSession(Open(source, so, tuning.SharedPrepackedWeights), ExecutionProviderKind.Cpu, fallback);
            }
        }
        catch (OnnxRuntimeException ex)
        {
            throw new SpmFormatException(source.DisplayName, null, $"ONNX Runtime cannot load the model: {FirstLine(ex.Message)}", ex);
        }
        finally
        {
            // The session keeps its own copy of the options.
            so.Dispose();
        }
    }

    private static InferenceSession Open(OnnxModelSource source, SessionOptions so, PrePackedWeightsContainer? shared = null)
        => shared is null
            ? source.Bytes is not null ? new InferenceSession(source.Bytes, so) : new InferenceSession(source.Path!, so)
            : source.Bytes is not null ? new InferenceSession(source.Bytes, so, shared) : new InferenceSession(source.Path!, so, shared);

    /// <summary>
    /// A CPU session through the optimized-model cache: the stored optimized graph with graph optimization off when the
    /// entry exists (a damaged entry is deleted and rebuilt), else the usual session with ONNX Runtime saving its optimized
    /// graph into a staging folder that is then published as the entry.
    /// </summary>
    private static CreatedSession OpenThroughCache(OnnxModelSource source, OnnxRuntimeOptions options, SessionTuning tuning, SessionOptions so, string entry)
    {
        if (OptimizedModelCache.CompleteModel(entry) is { } cached)
        {
            // The stored graph is already optimized (and names its weights file beside it): optimizing it again would only cost time.
            using var loadOptions = BuildCpuOptions(options, null, new SessionTuning { OptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL });
            try
            {
                return new CreatedSession(new InferenceSession(cached, loadOptions), ExecutionProviderKind.Cpu, null) { OptimizedModel = OptimizedModelUse.Loaded };
            }
            catch (OnnxRuntimeException)
            {
                OptimizedModelCache.Remove(entry);
            }
        }
        if (OptimizedModelCache.CreateStaging(entry) is not { } staging)
            return new CreatedSession(Open(source, so), ExecutionProviderKind.Cpu, null);
        InferenceSession session;
        using (var saving = BuildCpuOptions(options, source, tuning))
        {
            saving.OptimizedModelFilePath = Path.Combine(staging, OptimizedModelCache.ModelFileName);
            // Weights in a file of their own: a large UNet's optimized graph does not fit protobuf's 2 GB limit.
            saving.AddSessionConfigEntry(OptimizedWeightsFileKey, OptimizedModelCache.WeightsFileName);
            try
            {
                session = Open(source, saving);
            }
            catch (OnnxRuntimeException)
            {
                // Most likely the optimized graph could not be written (disk full, permissions): open without the cache,
                // which reports a genuine model error itself.
                OptimizedModelCache.Remove(staging);
                return new CreatedSession(Open(source, so), ExecutionProviderKind.Cpu, null);
            }
        }
        bool stored = OptimizedModelCache.Publish(staging, entry);
        return new CreatedSession(session, ExecutionProviderKind.Cpu, null) { OptimizedModel = stored ? OptimizedModelUse.Stored : OptimizedModelUse.None };
    }

    private static SessionOptions BuildCpuOptions(OnnxRuntimeOptions options, OnnxModelSource? source, SessionTuning tuning)
    {
        var so = new SessionOptions
        {
            GraphOptimizationLevel = tuning.OptimizationLevel ?? options.OptimizationLevel,
            LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR,
            ExecutionMode = options.Deterministic || options.InterOpThreads <= 1 ? ExecutionMode.ORT_SEQUENTIAL : ExecutionMode.ORT_PARALLEL,
        };
        if (options.IntraOpThreads > 0) so.IntraOpNumThreads = options.IntraOpThreads;
        if (options.InterOpThreads > 0) so.InterOpNumThreads = options.InterOpThreads;
        if (options.EffectiveAllowSpinning is bool spin)
        {
            so.AddSessionConfigEntry(IntraOpSpinningKey, spin ? "1" : "0");
            so.AddSessionConfigEntry(InterOpSpinningKey, spin ? "1" : "0");
        }
        if (source?.Bytes is not null && source.ExternalDataFolder is not null)
            so.AddSessionConfigEntry(ExternalFolderKey, source.ExternalDataFolder);
        if (tuning.DisabledOptimizers.Count > 0)
            so.AddSessionConfigEntry(DisabledOptimizersKey, string.Join(';', tuning.DisabledOptimizers));
        if (options.EffectiveProfilePrefix is { } prefix)
        {
            // The prefix first: ORT reads it when profiling is switched on (the other order writes onnxruntime_profile_*.json).
            so.ProfileOutputPathPrefix = prefix;
            so.EnableProfiling = true;
        }
        return so;
    }

    internal static string FirstLine(string message)
    {
        var line = message.ReplaceLineEndings("\n").Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).FirstOrDefault() ?? message;
        return line.Length > 400 ? line[..400] + "..." : line;
    }
}

/// <summary>Appends the CUDA provider, remembering a failure so that later sessions don't retry (and log) again.</summary>
internal static class CudaProbe
{
    private static readonly object Gate = new();
    private static readonly Dictionary<int, string> KnownFailures = new();

    /// <summary>Appends CUDA to <paramref name="so"/>; returns null on success or the one-line reason it failed.</summary>
    public static string? TryAppend(SessionOptions so, OnnxRuntimeOptions options)
    {
        lock (Gate)
        {
            if (KnownFailures.TryGetValue(options.DeviceId, out var known)) return known;
            var env = OrtEnv.Instance();
            var level = env.EnvLogLevel;
            try
            {
                // ORT logs the dlopen failure at error level; we report it ourselves in one line.
                env.EnvLogLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL;
                if (!env.GetAvailableProviders().Contains("CUDAExecutionProvider"))
                    return KnownFailures[options.DeviceId] = "this ONNX Runtime build has no CUDA execution provider";
                using var cuda = new OrtCUDAProviderOptions();
                var settings = new Dictionary<string, string> { ["device_id"] = options.DeviceId.ToString(System.Globalization.CultureInfo.InvariantCulture) };
                if (options.Deterministic)
                {
                    settings["cudnn_conv_algo_search"] = "DEFAULT";
                    settings["use_tf32"] = "0";
                }
                cuda.UpdateOptions(settings);
                so.AppendExecutionProvider_CUDA(cuda);
                return null;
            }
            catch (Exception ex) when (ex is OnnxRuntimeException or DllNotFoundException or EntryPointNotFoundException)
            {
                // The usual cause is a missing CUDA/cuDNN runtime library (libcublasLt, libcudnn) or no GPU/driver.
                // Keep the dlopen cause ("libcublasLt.so.13: cannot open shared object file") and drop ORT's source location.
                var cause = OnnxSessionFactory.FirstLine(ex.Message);
                int at = cause.IndexOf("with error: ", StringComparison.Ordinal);
                if (at >= 0) cause = cause[(at + "with error: ".Length)..];
                return KnownFailures[options.DeviceId] = $"CUDA execution provider unavailable ({cause}; it needs the CUDA runtime, cuDNN and a GPU driver)";
            }
            finally
            {
                env.EnvLogLevel = level;
            }
        }
    }
}
