using Microsoft.ML.OnnxRuntime;
using Spm.Core;
using Spm.Core.Tensors;
using Spm.Diffusion.Membranes;
using Spm.Diffusion.Onnx;

namespace Spm.Training.Autodiff;

/// <summary>The result of one forward + backward run of a <see cref="MembraneGradientSession"/>.</summary>
/// <param name="Loss">The scalar loss.</param>
/// <param name="Gradients">Gradient per membrane input name (<c>spm.&lt;path&gt;.down</c>/<c>.up</c>), shaped like the input.</param>
/// <param name="Outputs">Forward outputs that were asked for.</param>
public sealed record MembraneGradientResult(
    double Loss,
    IReadOnlyDictionary<string, FloatTensor> Gradients,
    IReadOnlyDictionary<string, FloatTensor> Outputs);

/// <summary>
/// Membrane mode of the training engine: the UNet with membrane branches injected (its weights frozen), a scalar
/// loss over its outputs, and one ORT session computing the loss and the gradients with respect to every membrane
/// down/up input. The membranes and gates are inputs, so a session serves every step of a training run.
/// </summary>
public sealed class MembraneGradientSession : IDisposable
{
    private readonly InferenceSession _session;

    private MembraneGradientSession(InferenceSession session, GradientGraph graph, MembraneLayout layout, IReadOnlyList<string> parameters)
    {
        _session = session;
        Graph = graph;
        Layout = layout;
        ParameterInputs = parameters;
    }

    /// <summary>The gradient graph the session runs.</summary>
    public GradientGraph Graph { get; }

    /// <summary>The membrane layout injected into the UNet.</summary>
    public MembraneLayout Layout { get; }

    /// <summary>Names of the membrane inputs gradients are computed for (every down and up input).</summary>
    public IReadOnlyList<string> ParameterInputs { get; }

    /// <summary>
    /// Injects <paramref name="layout"/> into <paramref name="unet"/>, probes tensor shapes with one forward run on
    /// <paramref name="probeInputs"/> (the UNet's own inputs; use batch ≥ 2 and the usual latent sizes), builds the
    /// gradient graph for <paramref name="loss"/> and opens the session.
    /// </summary>
    /// <param name="unet">The UNet (external weights stay in its folder).</param>
    /// <param name="layout">Which layers get membranes and with what total rank.</param>
    /// <param name="loss">Loss terms over the UNet's outputs; their weight/target inputs become inputs of <see cref="Run"/>.</param>
    /// <param name="probeInputs">Example values for the UNet's inputs (sample, timestep, encoder_hidden_states).</param>
    /// <param name="settings">Threads and provider; the external-data folder is taken from <paramref name="unet"/>.</param>
    /// <exception cref="SpmException">An op on the gradient path has no rule, or the inputs do not fit the model.</exception>
    public static MembraneGradientSession Create(OnnxModel unet, MembraneLayout layout, IReadOnlyList<LossTerm> loss,
        IReadOnlyDictionary<string, OrtValue> probeInputs, GradientSessionSettings? settings = null)
    {
        ArgumentNullException.ThrowIfNull(unet);
        ArgumentNullException.ThrowIfNull(layout);
        ArgumentNullException.ThrowIfNull(loss);
        ArgumentNullException.ThrowIfNull(probeInputs);
        var s = (settings ?? new GradientSessionSettings()) with { ExternalDataFolder = unet.BaseDirectory };
        var injected = MembraneInjector.Inject(unet.Proto, layout);
        var tensors = MembraneTensors.Build(layout);
        var parameters = layout.Layers
            .SelectMany(l => new[] { MembraneNames.Down(l.ModulePath), MembraneNames.Up(l.ModulePath) }).ToList();

        int batch = BatchOf(probeInputs);
        var gates = tensors.Gates(batch, Enumerable.Repeat(1f, layout.Sets.Count).ToArray());
        var feeds = new Dictionary<string, OrtValue>(probeInputs);
        var owned = new List<OrtValue>();
        try
        {
            foreach (var (name, t) in tensors.Inputs) owned.Add(feeds[name] = ToOrt(t));
            owned.Add(feeds[MembraneNames.Gates] = ToOrt(gates));
            var shapes = TensorShapes.Probe(injected, feeds, s);
            var graph = GradientGraphBuilder.Build(injected, new GradientRequest(loss, parameters), shapes);
            var session = GradientSessionFactory.Create(graph.Model, s);
            return new MembraneGradientSession(session, graph, layout, parameters);
        }
        finally
        {
            foreach (var v in owned) v.Dispose();
        }
    }

    /// <summary>
    /// Runs forward and backward.
    /// </summary>
    /// <param name="inputs">The UNet's inputs and the loss terms' weight/target inputs.</param>
    /// <param name="membranes">Every membrane input (down/up of each layer and <c>spm.scales</c>), e.g. <see cref="MembraneTensors.Inputs"/>.</param>
    /// <param name="gates">The <c>spm.gates</c> [batch, total rank] multipliers.</param>
    /// <param name="outputs">Forward outputs to return as well (e.g. <c>out_sample</c>).</param>
    public MembraneGradientResult Run(IReadOnlyDictionary<string, OrtValue> inputs, IReadOnlyDictionary<string, FloatTensor> membranes,
        FloatTensor gates, IReadOnlyList<string>? outputs = null)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        ArgumentNullException.ThrowIfNull(membranes);
        ArgumentNullException.ThrowIfNull(gates);
        var names = new List<string>();
        var values = new List<OrtValue>();
        var owned = new List<OrtValue>();
        try
        {
            foreach (var (n, v) in inputs) { names.Add(n); values.Add(v); }
            foreach (var (n, t) in membranes)
            {
                var v = ToOrt(t);
                owned.Add(v);
                names.Add(n);
                values.Add(v);
            }
            var gv = ToOrt(gates);
            owned.Add(gv);
            names.Add(MembraneNames.Gates);
            values.Add(gv);

            var outNames = new List<string> { Graph.LossOutput };
            outNames.AddRange(ParameterInputs.Select(p => Graph.GradientOutputs[p]));
            if (outputs is not null) outNames.AddRange(outputs);
            using var ro = new RunOptions();
            using var results = _session.Run(ro, names, values, outNames);
            double loss = results[0].GetTensorDataAsSpan<float>()[0];
            var grads = new Dictionary<string, FloatTensor>(StringComparer.Ordinal);
            for (int i = 0; i < ParameterInputs.Count; i++) grads[ParameterInputs[i]] = ToFloat(results[i + 1]);
            var outs = new Dictionary<string, FloatTensor>(StringComparer.Ordinal);
            if (outputs is not null)
                for (int i = 0; i < outputs.Count; i++) outs[outputs[i]] = ToFloat(results[1 + ParameterInputs.Count + i]);
            return new MembraneGradientResult(loss, grads, outs);
        }
        catch (OnnxRuntimeException e)
        {
            throw new SpmException($"The gradient graph failed to run: {e.Message}", e);
        }
        finally
        {
            foreach (var v in owned) v.Dispose();
        }
    }

    /// <inheritdoc />
    public void Dispose() => _session.Dispose();

    internal static OrtValue ToOrt(FloatTensor t) => OrtValue.CreateTensorValueFromMemory(t.Data, t.Shape.Select(d => (long)d).ToArray());

    internal static FloatTensor ToFloat(OrtValue v)
    {
        var shape = v.GetTensorTypeAndShape().Shape.Select(d => checked((int)d)).ToArray();
        return new FloatTensor(shape, v.GetTensorDataAsSpan<float>().ToArray());
    }

    private static int BatchOf(IReadOnlyDictionary<string, OrtValue> inputs)
    {
        foreach (var key in new[] { "sample", "latent_sample" })
            if (inputs.TryGetValue(key, out var v)) return checked((int)v.GetTensorTypeAndShape().Shape[0]);
        var first = inputs.Values.FirstOrDefault() ?? throw new SpmException("No probe inputs were given.");
        var shape = first.GetTensorTypeAndShape().Shape;
        return shape.Length > 0 ? checked((int)shape[0]) : 1;
    }
}
