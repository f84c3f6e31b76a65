using Microsoft.ML.OnnxRuntime;
using Spm.Core;
using Spm.Core.Tensors;
using Spm.Diffusion.Membranes;
using Spm.Diffusion.Onnx;

namespace Spm.Training.Autodiff;

/// <summary>The result of one forward + backward run of a <see cref="ConditioningGradientSession"/>.</summary>
/// <param name="Loss">The scalar loss: mean over every element of <c>(ε̂ − target)²</c>.</param>
/// <param name="HiddenGradient">d loss / d encoder hidden states, [B, L, D].</param>
/// <param name="GateGradient">d loss / d <c>spm.gates</c>, [B, total rank]; null when no membranes are injected.</param>
public sealed record ConditioningGradientResult(double Loss, FloatTensor HiddenGradient, FloatTensor? GateGradient)
{
    /// <summary>d loss / d multiplier of each SPM per row, [B × SPMs]: the gate columns of an SPM summed (they all carry its multiplier).</summary>
    public float[] MultiplierGradients(MembraneLayout layout)
    {
        ArgumentNullException.ThrowIfNull(layout);
        int sets = layout.Sets.Count;
        if (GateGradient is null) return [];
        int rows = GateGradient.Shape[0], r = GateGradient.Shape[1];
        var g = new float[rows * sets];
        for (int b = 0; b < rows; b++)
            for (int s = 0; s < sets; s++)
            {
                var cols = GateGradient.Data.AsSpan(b * r + layout.ColumnOffset(s), layout.Sets[s].Rank);
                g[b * sets + s] = System.Numerics.Tensors.TensorPrimitives.Sum(cols);
            }
        return g;
    }
}

/// <summary>
/// The UNet (membranes injected, every weight and membrane frozen) differentiated with respect to its conditioning:
/// <c>loss = mean((ε̂(x_t, t, E, gates) − ε)²)</c> and its gradients with respect to the encoder hidden states E and the
/// membrane gates. What a gradient attack needs: how the erased model's denoising error on an image of the concept
/// changes with the prompt's conditioning, directly and through the gate.
/// </summary>
public sealed class ConditioningGradientSession : IDisposable
{
    /// <summary>Name of the target input (the noise that was added), shaped like the UNet's output.</summary>
    public const string TargetInput = "target_noise";

    private readonly InferenceSession _session;
    private readonly GradientGraph _graph;
    private readonly MembraneTensors? _tensors;
    private readonly string _sample, _timestep, _hidden, _output;
    private readonly int _timestepType, _timestepRank;

    private ConditioningGradientSession(InferenceSession session, GradientGraph graph, MembraneLayout? layout, MembraneTensors? tensors,
        string sample, string timestep, string hidden, string output, int timestepType, int timestepRank)
    {
        _session = session;
        _graph = graph;
        Layout = layout;
        _tensors = tensors;
        _sample = sample;
        _timestep = timestep;
        _hidden = hidden;
        _output = output;
        _timestepType = timestepType;
        _timestepRank = timestepRank;
    }

    /// <summary>The injected membranes (null: the bare UNet).</summary>
    public MembraneLayout? Layout { get; }

    /// <summary>
    /// Injects <paramref name="layout"/> (if any) into <paramref name="unet"/>, probes shapes at batch 2 with
    /// <paramref name="latentChannels"/>×<paramref name="latentSize"/>² latents and <paramref name="tokens"/>×<paramref name="width"/>
    /// conditioning, builds the gradient graph and opens the session.
    /// </summary>
    /// <exception cref="SpmException">An op on the gradient path has no rule, or the UNet's inputs are not the usual three.</exception>
    public static ConditioningGradientSession Create(OnnxModel unet, MembraneLayout? layout, int latentChannels, int latentSize, int tokens, int width,
        GradientSessionSettings? settings = null)
    {
        ArgumentNullException.ThrowIfNull(unet);
        var s = (settings ?? new GradientSessionSettings()) with { ExternalDataFolder = unet.BaseDirectory };
        var graph = unet.Proto.Graph;
        var inputs = graph.Input.Where(i => !graph.Initializer.Any(t => t.Name == i.Name)).ToList();
        string Find(string name, int index) => inputs.FirstOrDefault(i => i.Name == name)?.Name
            ?? (inputs.Count > index ? inputs[index].Name : throw new SpmFormatException(unet.FilePath, name, "the UNet has no such input."));
        string sample = Find("sample", 0), timestep = Find("timestep", 1), hidden = Find("encoder_hidden_states", 2);
        string output = graph.Output.FirstOrDefault(o => o.Name == "out_sample")?.Name ?? graph.Output[0].Name;
        var tInfo = inputs.First(i => i.Name == timestep).Type?.TensorType;
        int tType = tInfo?.ElemType ?? 1, tRank = tInfo?.Shape?.Dim.Count ?? 1;

        var model = layout is null ? unet.Proto.Clone() : MembraneInjector.Inject(unet.Proto, layout);
        var tensors = layout is null ? null : MembraneTensors.Build(layout);
        const int batch = 2;
        var feeds = new Dictionary<string, OrtValue>(StringComparer.Ordinal);
        try
        {
            feeds[sample] = OrtValue.CreateTensorValueFromMemory(new float[batch * latentChannels * latentSize * latentSize], [batch, latentChannels, latentSize, latentSize]);
            feeds[timestep] = TimestepValue(tType, tRank, Enumerable.Repeat(500.0, tRank == 0 ? 1 : batch).ToArray());
            feeds[hidden] = OrtValue.CreateTensorValueFromMemory(new float[batch * tokens * width], [batch, tokens, width]);
            var wrt = new List<string> { hidden };
            if (tensors is not null)
            {
                foreach (var (name, t) in tensors.Inputs) feeds[name] = MembraneGradientSession.ToOrt(t);
                feeds[MembraneNames.Gates] = MembraneGradientSession.ToOrt(tensors.Gates(batch, Enumerable.Repeat(1f, layout!.Sets.Count).ToArray()));
                wrt.Add(MembraneNames.Gates);
            }
            var shapes = TensorShapes.Probe(model, feeds, s);
            var gradient = GradientGraphBuilder.Build(model, new GradientRequest([LossTerm.MeanSquaredError(output, TargetInput)], wrt, KeepForwardOutputs: false), shapes);
            var session = GradientSessionFactory.Create(gradient.Model, s);
            return new ConditioningGradientSession(session, gradient, layout, tensors, sample, timestep, hidden, output, tType, tRank);
        }
        finally
        {
            foreach (var v in feeds.Values) v.Dispose();
        }
    }

    /// <summary>
    /// Runs forward and backward for one batch: latents x_t [B, C, h, w], one timestep per row (equal when the UNet takes a
    /// scalar timestep), conditioning [B, L, D], the target noise [B, C, h, w] and per-row, per-SPM multipliers [B × SPMs].
    /// </summary>
    public ConditioningGradientResult Run(FloatTensor noisyLatents, IReadOnlyList<double> timesteps, FloatTensor hidden, FloatTensor target,
        ReadOnlySpan<float> multipliers)
    {
        ArgumentNullException.ThrowIfNull(noisyLatents);
        ArgumentNullException.ThrowIfNull(timesteps);
        ArgumentNullException.ThrowIfNull(hidden);
        ArgumentNullException.ThrowIfNull(target);
        int batch = noisyLatents.Shape[0];
        if (hidden.Shape[0] != batch || target.Length != noisyLatents.Length || timesteps.Count != batch)
            throw new ArgumentException($"Batch mismatch: latents {noisyLatents.ShapeString}, hidden {hidden.ShapeString}, target {target.ShapeString}, {timesteps.Count} timesteps.");
        if (_timestepRank == 0 && timesteps.Distinct().Count() > 1)
            throw new ArgumentException("This UNet takes one scalar timestep per call; give every row the same timestep.", nameof(timesteps));
        var names = new List<string>();
        var values = new List<OrtValue>();
        try
        {
            void Add(string n, OrtValue v) { names.Add(n); values.Add(v); }
            Add(_sample, MembraneGradientSession.ToOrt(noisyLatents));
            Add(_timestep, TimestepValue(_timestepType, _timestepRank, _timestepRank == 0 ? [timesteps[0]] : timesteps.ToArray()));
            Add(_hidden, MembraneGradientSession.ToOrt(hidden));
            Add(TargetInput, OrtValue.CreateTensorValueFromMemory(target.Data, target.Shape.Select(d => (long)d).ToArray()));
            var outNames = new List<string> { _graph.LossOutput, _graph.GradientOutputs[_hidden] };
            if (_tensors is not null)
            {
                foreach (var (n, t) in _tensors.Inputs) Add(n, MembraneGradientSession.ToOrt(t));
                Add(MembraneNames.Gates, MembraneGradientSession.ToOrt(_tensors.Gates(multipliers)));
                outNames.Add(_graph.GradientOutputs[MembraneNames.Gates]);
            }
            using var ro = new RunOptions();
            using var results = _session.Run(ro, names, values, outNames);
            double loss = results[0].GetTensorDataAsSpan<float>()[0];
            var gh = MembraneGradientSession.ToFloat(results[1]);
            var gg = _tensors is null ? null : MembraneGradientSession.ToFloat(results[2]);
            return new ConditioningGradientResult(loss, gh, gg);
        }
        catch (OnnxRuntimeException e)
        {
            throw new SpmException($"The UNet's conditioning gradient graph failed to run: {e.Message}", e);
        }
        finally
        {
            foreach (var v in values) v.Dispose();
        }
    }

    /// <inheritdoc />
    public void Dispose() => _session.Dispose();

    /// <summary>A timestep value in the exporter's form (float, int64, int32 or double; shape [B] or scalar).</summary>
    private static OrtValue TimestepValue(int type, int rank, double[] values)
    {
        long[] shape = rank == 0 ? [] : [values.Length];
        return type switch
        {
            7 => OrtValue.CreateTensorValueFromMemory(values.Select(v => (long)Math.Round(v)).ToArray(), shape),
            6 => OrtValue.CreateTensorValueFromMemory(values.Select(v => (int)Math.Round(v)).ToArray(), shape),
            11 => OrtValue.CreateTensorValueFromMemory(values, shape),
            _ => OrtValue.CreateTensorValueFromMemory(values.Select(v => (float)v).ToArray(), shape),
        };
    }
}
