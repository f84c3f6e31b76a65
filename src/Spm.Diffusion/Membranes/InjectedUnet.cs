using Microsoft.ML.OnnxRuntime;
using Spm.Core.Tensors;
using Spm.Diffusion.Onnx.Proto;

namespace Spm.Diffusion.Membranes;

/// <summary>
/// An ONNX Runtime session over a UNet with membrane branches, plus the constant membrane inputs as ready
/// <see cref="OrtValue"/>s. One session serves every request: which SPMs are active and how strongly is only the
/// <c>spm.gates</c> input, and <see cref="SetMembranes"/> swaps the loaded membranes (any total rank, any subset of
/// the injected layers) without rebuilding the session. <see cref="Run"/> is thread-safe as long as
/// <see cref="SetMembranes"/> is not called concurrently.
/// </summary>
public sealed class InjectedUnet : IDisposable
{
    private readonly InferenceSession _session;
    private readonly Dictionary<string, Onnx.AdaptableLayer> _injectedLayers;
    private MembraneTensors _tensors;
    private List<(string Name, OrtValue Value)> _constants;

    private InjectedUnet(InferenceSession session, MembraneTensors tensors, Dictionary<string, Onnx.AdaptableLayer> injectedLayers)
    {
        _session = session;
        _tensors = tensors;
        _injectedLayers = injectedLayers;
        _constants = ToOrtValues(tensors);
    }

    /// <summary>The underlying session (inputs: the model's own plus the membrane inputs).</summary>
    public InferenceSession Session => _session;

    /// <summary>The currently loaded membranes.</summary>
    public MembraneTensors Membranes => _tensors;

    /// <summary>The currently loaded layout.</summary>
    public MembraneLayout Layout => _tensors.Layout;

    /// <summary>
    /// Injects <paramref name="layout"/> into <paramref name="baseModel"/> and opens a session on it. Unchanged weights
    /// stay in the external data files of <paramref name="externalDataFolder"/> (the base model's folder).
    /// </summary>
    /// <param name="baseModel">The UNet graph (not modified).</param>
    /// <param name="externalDataFolder">Folder the model's external-data locations are relative to.</param>
    /// <param name="layout">The SPMs to load.</param>
    /// <param name="runtime">Runtime options (provider, threads); null = CPU with ONNX Runtime's defaults.</param>
    public static InjectedUnet Create(ModelProto baseModel, string externalDataFolder, MembraneLayout layout, Runtime.OnnxRuntimeOptions? runtime = null)
        => Create(baseModel, externalDataFolder, layout, new Runtime.OnnxSessionGroup(runtime));

    /// <summary>As <see cref="Create(ModelProto, string, MembraneLayout, Runtime.OnnxRuntimeOptions?)"/>, with the provider choice of <paramref name="sessions"/>.</summary>
    public static InjectedUnet Create(ModelProto baseModel, string externalDataFolder, MembraneLayout layout, Runtime.OnnxSessionGroup sessions)
    {
        ArgumentNullException.ThrowIfNull(baseModel);
        ArgumentNullException.ThrowIfNull(externalDataFolder);
        ArgumentNullException.ThrowIfNull(layout);
        ArgumentNullException.ThrowIfNull(sessions);
        var injected = MembraneInjector.Inject(baseModel, layout);
        var tensors = MembraneTensors.Build(layout);
        var session = OpenSession(injected, externalDataFolder, sessions);
        return new InjectedUnet(session, tensors, layout.Layers.ToDictionary(l => l.ModulePath, StringComparer.Ordinal));
    }

    /// <summary>Opens a session on an in-memory model whose external data lives in <paramref name="externalDataFolder"/>.</summary>
    /// <param name="model">The model (not modified).</param>
    /// <param name="externalDataFolder">Folder the model's external-data locations are relative to.</param>
    /// <param name="runtime">Runtime options (provider, threads); null = CPU with ONNX Runtime's defaults.</param>
    public static InferenceSession OpenSession(ModelProto model, string externalDataFolder, Runtime.OnnxRuntimeOptions? runtime = null)
        => OpenSession(model, externalDataFolder, new Runtime.OnnxSessionGroup(runtime));

    /// <summary>As <see cref="OpenSession(ModelProto, string, Runtime.OnnxRuntimeOptions?)"/>, with the provider choice of <paramref name="sessions"/>.</summary>
    public static InferenceSession OpenSession(ModelProto model, string externalDataFolder, Runtime.OnnxSessionGroup sessions)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(externalDataFolder);
        ArgumentNullException.ThrowIfNull(sessions);
        return sessions.Open(Runtime.OnnxModelSource.FromModel(model, externalDataFolder));
    }

    /// <summary>
    /// Replaces the loaded membranes with those of another layout whose layers are all injected in this session
    /// (e.g. another SPM file of the same family, or a different total rank). No session rebuild.
    /// </summary>
    /// <exception cref="ArgumentException">The layout needs a layer without a branch in this session.</exception>
    public void SetMembranes(MembraneTensors tensors)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        var missing = tensors.Layout.Layers.FirstOrDefault(l => !_injectedLayers.ContainsKey(l.ModulePath));
        if (missing is not null)
            throw new ArgumentException($"Layer '{missing.ModulePath}' has no membrane branch in this session; create a new InjectedUnet.", nameof(tensors));
        // Layers injected here but not covered by the new layout get zero membranes of the new rank.
        var full = new Dictionary<string, FloatTensor>(tensors.Inputs, StringComparer.Ordinal);
        int r = tensors.Layout.TotalRank;
        foreach (var layer in _injectedLayers.Values.Where(l => !full.ContainsKey(MembraneNames.Down(l.ModulePath))))
        {
            full[MembraneNames.Down(layer.ModulePath)] = new FloatTensor(MembraneShapes.Down(layer, r));
            full[MembraneNames.Up(layer.ModulePath)] = new FloatTensor(MembraneShapes.Up(layer, r));
        }
        var old2 = _constants;
        _constants = ToOrtValues(full);
        _tensors = tensors;
        foreach (var (_, v) in old2) v.Dispose();
    }

    /// <summary>
    /// Appends the membrane inputs (constants and <paramref name="gates"/>) to a feed list, for callers that run
    /// <see cref="Session"/> themselves (the generation pipeline).
    /// </summary>
    public void AppendInputs(List<string> names, List<OrtValue> values, OrtValue gates)
    {
        ArgumentNullException.ThrowIfNull(names);
        ArgumentNullException.ThrowIfNull(values);
        foreach (var (n, v) in _constants) { names.Add(n); values.Add(v); }
        names.Add(MembraneNames.Gates);
        values.Add(gates);
    }

    /// <summary>
    /// Runs the UNet on <paramref name="modelInputs"/> (the model's own inputs) with <paramref name="gates"/> [B, R].
    /// </summary>
    /// <returns>The requested outputs (all outputs when <paramref name="outputNames"/> is null); the caller disposes them.</returns>
    public IDisposableReadOnlyCollection<OrtValue> Run(IReadOnlyDictionary<string, OrtValue> modelInputs, FloatTensor gates, IReadOnlyList<string>? outputNames = null)
    {
        ArgumentNullException.ThrowIfNull(modelInputs);
        ArgumentNullException.ThrowIfNull(gates);
        if (gates.Rank != 2 || gates.Shape[1] != Layout.TotalRank)
            throw new ArgumentException($"Gates must be [B,{Layout.TotalRank}], got {gates.ShapeString}.", nameof(gates));
        using var gateValue = OrtValue.CreateTensorValueFromMemory(gates.Data, [gates.Shape[0], gates.Shape[1]]);
        var names = new List<string>(modelInputs.Count + _constants.Count + 1);
        var values = new List<OrtValue>(names.Capacity);
        foreach (var (n, v) in modelInputs) { names.Add(n); values.Add(v); }
        AppendInputs(names, values, gateValue);
        var outputs = outputNames ?? _session.OutputNames;
        using var runOptions = new RunOptions();
        return _session.Run(runOptions, names, values, outputs);
    }

    private static List<(string, OrtValue)> ToOrtValues(MembraneTensors tensors) => ToOrtValues(tensors.Inputs);

    private static List<(string, OrtValue)> ToOrtValues(IReadOnlyDictionary<string, FloatTensor> inputs)
        => inputs.Select(kv => (kv.Key, OrtValue.CreateTensorValueFromMemory(kv.Value.Data, kv.Value.Shape.Select(d => (long)d).ToArray()))).ToList();

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var (_, v) in _constants) v.Dispose();
        _constants = [];
        _session.Dispose();
    }
}
