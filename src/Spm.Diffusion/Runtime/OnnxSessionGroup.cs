using Microsoft.ML.OnnxRuntime;

namespace Spm.Diffusion.Runtime;

/// <summary>One session the group opened: its name and the provider it runs on.</summary>
/// <param name="Name">The model's display name.</param>
/// <param name="Provider">The provider the session runs on.</param>
public sealed record OpenedSession(string Name, ExecutionProviderKind Provider);

/// <summary>
/// Sessions that must agree on one provider choice (every model of a pipeline, every session of a training run).
/// The first session decides: when CUDA was requested but cannot load, that session falls back to the CPU with a
/// reason, and every later session is opened on the CPU directly, so a run never mixes devices (frozen predictions
/// on one, gradients on the other). All sessions go through <see cref="OnnxSessionFactory"/>.
/// </summary>
/// <remarks>Thread-safe. The group does not own the sessions it opens: the caller (or its wrapper type) disposes them.</remarks>
public sealed class OnnxSessionGroup
{
    private readonly object _gate = new();
    private readonly List<OpenedSession> _opened = [];
    private OnnxRuntimeOptions _effective;

    /// <summary>Creates a group for <paramref name="requested"/> (not modified; the group keeps its own copy).</summary>
    public OnnxSessionGroup(OnnxRuntimeOptions? requested = null)
    {
        Requested = requested ?? new OnnxRuntimeOptions();
        Requested.Validate();
        _effective = Requested;
    }

    /// <summary>
    /// When set, every session the group opens without a container of its own shares ONNX Runtime's pre-packed weights
    /// through this one (<see cref="SessionTuning.SharedPrepackedWeights"/>); the caller owns it and disposes it after the
    /// sessions.
    /// </summary>
    public PrePackedWeightsContainer? SharedPrepackedWeights { get; init; }

    /// <summary>The options asked for.</summary>
    public OnnxRuntimeOptions Requested { get; }

    /// <summary>The options in force: <see cref="Requested"/>, with the CPU provider once CUDA has failed to load.</summary>
    public OnnxRuntimeOptions Effective { get { lock (_gate) return _effective; } }

    /// <summary>The provider the group's sessions run on (the requested one until a session has fallen back).</summary>
    public ExecutionProviderKind Provider => Effective.Provider;

    /// <summary>Why CUDA was not used, in one line; null when no session has fallen back.</summary>
    public string? FallbackReason { get; private set; }

    /// <summary>Every session opened so far, in order, with its provider.</summary>
    public IReadOnlyList<OpenedSession> Opened { get { lock (_gate) return _opened.ToArray(); } }

    /// <summary>Opens a session on <paramref name="source"/> with the group's provider choice.</summary>
    /// <exception cref="Spm.Core.SpmFormatException">The model cannot be parsed or initialized.</exception>
    public InferenceSession Open(OnnxModelSource source) => OpenCreated(source).Session;

    /// <summary>As <see cref="Open"/>, returning the provider details as well.</summary>
    /// <exception cref="Spm.Core.SpmFormatException">The model cannot be parsed or initialized.</exception>
    public CreatedSession OpenCreated(OnnxModelSource source) => OpenCreated(source, SessionTuning.None);

    /// <summary>As <see cref="OpenCreated(OnnxModelSource)"/>, with per-model <paramref name="tuning"/> (the provider choice stays the group's).</summary>
    /// <exception cref="Spm.Core.SpmFormatException">The model cannot be parsed or initialized.</exception>
    public CreatedSession OpenCreated(OnnxModelSource source, SessionTuning tuning)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(tuning);
        if (SharedPrepackedWeights is not null && tuning.SharedPrepackedWeights is null)
            tuning = tuning with { SharedPrepackedWeights = SharedPrepackedWeights };
        var created = OnnxSessionFactory.Create(source, Effective, tuning);
        lock (_gate)
        {
            if (created.FallbackReason is { } why && _effective.Provider != ExecutionProviderKind.Cpu)
            {
                // Pin the CPU for the rest of the group: later sessions must not try (and perhaps succeed on) CUDA.
                _effective = _effective with { Provider = ExecutionProviderKind.Cpu };
                FallbackReason = why;
            }
            _opened.Add(new OpenedSession(source.DisplayName, created.Provider));
        }
        return FallbackReason is { } reason && created.FallbackReason is null && created.Provider == ExecutionProviderKind.Cpu
            && Requested.Provider == ExecutionProviderKind.Cuda
            ? created with { FallbackReason = reason }
            : created;
    }
}
