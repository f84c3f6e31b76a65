using Microsoft.ML.OnnxRuntime;
using Spm.Core;
using Spm.Core.Tensors;
using Spm.Diffusion.Pipelines.Families;
using Spm.Diffusion.Runtime;

namespace Spm.Diffusion.Pipelines;

/// <summary>
/// The denoising UNet: <c>sample</c> [B,C,h,w], <c>timestep</c> (int64/float [B] or a scalar, as the session
/// declares), <c>encoder_hidden_states</c> [B,L,D] → noise prediction [B,C,h,w]. SDXL's <c>text_embeds</c> and
/// <c>time_ids</c> are <see cref="TextInputs"/>, supplied with the hidden states (<see cref="UNetTextInputs"/>). Any further
/// graph inputs (e.g. injected membrane tensors and gates) are <see cref="ExtraInputs"/>, supplied by name per call.
/// float16 models are converted at the boundary. Thread-safe: all per-call state lives in the call.
/// </summary>
public sealed class UNetModel : IDisposable
{
    private static readonly string[] StandardInputs = ["sample", "timestep", "encoder_hidden_states"];
    private readonly InferenceSession _session;

    /// <summary>Wraps a session opened by <see cref="OnnxSessionFactory"/> or an <see cref="OnnxSessionGroup"/> (owned from now on: disposed with this model).</summary>
    /// <param name="created">The session and its provider.</param>
    /// <param name="name">The model's name for messages (its file path).</param>
    /// <exception cref="SpmFormatException">The session's inputs or outputs are not a UNet's.</exception>
    public UNetModel(CreatedSession created, string name)
    {
        _session = created.Session;
        Provider = created.Provider;
        Name = name;
        Signature = new ModelSignature(_session, name);
        SampleInput = Signature.RequireInput("sample", 4);
        TimestepInput = Signature.RequireInput("timestep", 0, 1);
        HiddenStatesInput = Signature.RequireInput("encoder_hidden_states", 3);
        if (!SampleInput.IsFloatingPoint) throw new SpmFormatException(name, "sample", $"input 'sample' has element type {SampleInput.ElementType}; expected a floating-point type.");
        if (!HiddenStatesInput.IsFloatingPoint) throw new SpmFormatException(name, "encoder_hidden_states", $"input 'encoder_hidden_states' has element type {HiddenStatesInput.ElementType}; expected a floating-point type.");
        Output = Signature.RequireOutput();
        if (Output.Rank != 4) throw new SpmFormatException(name, Output.Name, $"output '{Output.Name}' has rank {Output.Rank}; expected [batch, channels, height, width].");
        TextInputs = Signature.Inputs.Where(i => ModelFamilies.SdxlUNetInputs.Contains(i.Name)).ToArray();
        foreach (var e in TextInputs)
            if (!e.IsFloatingPoint) throw new SpmFormatException(name, e.Name, $"input '{e.Name}' has element type {e.ElementType}; expected a floating-point type.");
        ExtraInputs = Signature.Inputs.Where(i => !StandardInputs.Contains(i.Name) && !ModelFamilies.SdxlUNetInputs.Contains(i.Name)).ToArray();
        foreach (var e in ExtraInputs)
            if (!e.IsFloatingPoint) throw new SpmFormatException(name, e.Name, $"extra input '{e.Name}' has element type {e.ElementType}; only floating-point extra inputs are supported.");
        InChannels = SampleInput.Dimensions[1] > 0 ? SampleInput.Dimensions[1] : 4;
    }

    /// <summary>The model's name in messages.</summary>
    public string Name { get; }

    /// <summary>The provider the session runs on.</summary>
    public ExecutionProviderKind Provider { get; }

    /// <summary>Inputs and outputs as the session reports them.</summary>
    public ModelSignature Signature { get; }

    /// <summary>The latent input.</summary>
    public TensorSpec SampleInput { get; }

    /// <summary>The timestep input (scalar or [B]; int64, int32, float, float16 or double).</summary>
    public TensorSpec TimestepInput { get; }

    /// <summary>The text conditioning input.</summary>
    public TensorSpec HiddenStatesInput { get; }

    /// <summary>The noise prediction output (the first output).</summary>
    public TensorSpec Output { get; }

    /// <summary>The text conditioning inputs beside <c>encoder_hidden_states</c> (SDXL: <c>text_embeds</c>, <c>time_ids</c>); empty for SD 1.x/2.x.</summary>
    public IReadOnlyList<TensorSpec> TextInputs { get; }

    /// <summary>Inputs beyond the latents, timestep and text conditioning (membranes, gates); every one must be supplied per call.</summary>
    public IReadOnlyList<TensorSpec> ExtraInputs { get; }

    /// <summary>Latent channels (4 for SD).</summary>
    public int InChannels { get; }

    /// <summary>
    /// One UNet evaluation (no guidance): for tests, training and tools. The generation loop uses a per-call
    /// runner that binds the constant inputs once.
    /// </summary>
    /// <param name="sample">Latents [B,C,h,w].</param>
    /// <param name="timestep">The timestep, used for every batch row.</param>
    /// <param name="encoderHiddenStates">Text embeddings [B,L,D].</param>
    /// <param name="extraInputs">Values for every <see cref="ExtraInputs"/> entry.</param>
    /// <param name="runOptions">Optional run options (e.g. for termination).</param>
    public FloatTensor Predict(FloatTensor sample, double timestep, FloatTensor encoderHiddenStates,
        IReadOnlyDictionary<string, FloatTensor>? extraInputs = null, RunOptions? runOptions = null)
    {
        ArgumentNullException.ThrowIfNull(encoderHiddenStates);
        return Predict(sample, timestep, UNetTextInputs.Sequence(encoderHiddenStates), extraInputs, runOptions);
    }

    /// <summary>One UNet evaluation with the full text conditioning (SDXL: hidden states, <c>text_embeds</c>, <c>time_ids</c>).</summary>
    /// <param name="sample">Latents [B,C,h,w].</param>
    /// <param name="timestep">The timestep, used for every batch row.</param>
    /// <param name="text">The text conditioning rows (B of them).</param>
    /// <param name="extraInputs">Values for every <see cref="ExtraInputs"/> entry.</param>
    /// <param name="runOptions">Optional run options (e.g. for termination).</param>
    public FloatTensor Predict(FloatTensor sample, double timestep, UNetTextInputs text,
        IReadOnlyDictionary<string, FloatTensor>? extraInputs = null, RunOptions? runOptions = null)
    {
        ArgumentNullException.ThrowIfNull(sample);
        ArgumentNullException.ThrowIfNull(text);
        if (sample.Rank != 4) throw new ArgumentException($"sample must be [B,C,h,w], got {sample.ShapeString}.", nameof(sample));
        using var ro = runOptions is null ? new RunOptions() : null;
        using var runner = OpenRunner(text, extraInputs, sample.Shape[0], sample.Shape[2], sample.Shape[3], useIoBinding: false, runOptions ?? ro!);
        sample.Span.CopyTo(runner.Input);
        runner.Run(timestep);
        return new FloatTensor((int[])sample.Shape.Clone(), (float[])runner.Output.Clone());
    }

    /// <summary>Opens a runner for many steps with fixed conditioning (binds hidden states and extra inputs once).</summary>
    /// <param name="hidden">The conditioning rows [batch, L, D].</param>
    /// <param name="extras">Values for <see cref="ExtraInputs"/> (membranes, gates); every extra input must be given.</param>
    /// <param name="batch">Rows per call.</param>
    /// <param name="height">Latent height.</param>
    /// <param name="width">Latent width.</param>
    /// <param name="useIoBinding">Bind the constant inputs and the output once (IOBinding) instead of passing them per call.</param>
    /// <param name="runOptions">Run options (cancellation through <c>Terminate</c>); not disposed by the runner.</param>
    /// <exception cref="SpmMismatchException">An extra input is missing, unknown or of the wrong shape.</exception>
    public UNetRunner OpenRunner(FloatTensor hidden, IReadOnlyDictionary<string, FloatTensor>? extras, int batch, int height, int width, bool useIoBinding, RunOptions runOptions)
    {
        ArgumentNullException.ThrowIfNull(hidden);
        return OpenRunner(UNetTextInputs.Sequence(hidden), extras, batch, height, width, useIoBinding, runOptions);
    }

    /// <summary>Opens a runner for many steps with fixed text conditioning (hidden states and, for SDXL, text_embeds and time_ids) bound once.</summary>
    /// <param name="text">The text conditioning rows (<paramref name="batch"/> of them), as <see cref="IPromptConditioning.BuildRows"/> gives them.</param>
    /// <param name="extras">Values for <see cref="ExtraInputs"/> (membranes, gates); every extra input must be given.</param>
    /// <param name="batch">Rows per call.</param>
    /// <param name="height">Latent height.</param>
    /// <param name="width">Latent width.</param>
    /// <param name="useIoBinding">Bind the constant inputs and the output once (IOBinding) instead of passing them per call.</param>
    /// <param name="runOptions">Run options (cancellation through <c>Terminate</c>); not disposed by the runner.</param>
    /// <exception cref="SpmMismatchException">A text or extra input is missing, unknown or of the wrong shape.</exception>
    public UNetRunner OpenRunner(UNetTextInputs text, IReadOnlyDictionary<string, FloatTensor>? extras, int batch, int height, int width, bool useIoBinding, RunOptions runOptions)
    {
        ArgumentNullException.ThrowIfNull(text);
        var hidden = text.HiddenStates;
        var missingText = TextInputs.Where(t => !text.Added.ContainsKey(t.Name)).Select(t => t.Name).ToList();
        if (missingText.Count > 0)
            throw new SpmMismatchException($"UNet '{Name}' takes SDXL conditioning ({string.Join(", ", missingText)}) that was not supplied: it needs an SDXL pipeline's prompt conditioning.", missingText[0]);
        foreach (var (key, t) in text.Added)
        {
            var spec = TextInputs.FirstOrDefault(e => e.Name == key)
                ?? throw new SpmMismatchException($"UNet '{Name}' has no input '{key}' (it is not an SDXL UNet).", key);
            CheckShape(spec, t, batch);
        }
        if (hidden.Rank != 3 || hidden.Shape[0] != batch)
            throw new ArgumentException($"encoder_hidden_states must be [{batch},L,D], got {hidden.ShapeString}.", nameof(hidden));
        CheckDim(HiddenStatesInput, 2, hidden.Shape[2], "text embedding width");
        CheckDim(SampleInput, 1, InChannels, "latent channels");
        extras ??= new Dictionary<string, FloatTensor>();
        var missing = ExtraInputs.Where(e => !extras.ContainsKey(e.Name)).Select(e => e.Name).ToList();
        if (missing.Count > 0)
            throw new SpmMismatchException($"UNet '{Name}' needs {missing.Count} input(s) that no adapter supplied: {string.Join(", ", missing.Take(5))}{(missing.Count > 5 ? ", ..." : "")}.", missing[0]);
        foreach (var (key, t) in extras)
        {
            var spec = ExtraInputs.FirstOrDefault(e => e.Name == key)
                ?? throw new SpmMismatchException($"UNet '{Name}' has no input '{key}' (extra inputs: {(ExtraInputs.Count == 0 ? "none" : string.Join(", ", ExtraInputs.Take(5).Select(e => e.Name)))}).", key);
            if (spec.Rank != t.Rank) throw new SpmMismatchException($"UNet input '{key}' has rank {spec.Rank} {spec.ShapeString}; the supplied tensor is {t.ShapeString}.", key);
            for (int d = 0; d < spec.Rank; d++)
                if (spec.Dimensions[d] >= 0 && spec.Dimensions[d] != t.Shape[d])
                    throw new SpmMismatchException($"UNet input '{key}' is {spec.ShapeString}; the supplied tensor is {t.ShapeString}.", key);
        }
        return new UNetRunner(this, _session, hidden, text.Added, extras, batch, height, width, useIoBinding, runOptions);
    }

    private void CheckShape(TensorSpec spec, FloatTensor t, int batch)
    {
        if (spec.Rank != t.Rank || t.Shape[0] != batch)
            throw new SpmMismatchException($"UNet '{Name}' input '{spec.Name}' is {spec.ShapeString}; the supplied tensor is {t.ShapeString} for a batch of {batch}.", spec.Name);
        for (int d = 0; d < spec.Rank; d++)
            if (spec.Dimensions[d] >= 0 && spec.Dimensions[d] != t.Shape[d])
                throw new SpmMismatchException($"UNet '{Name}' input '{spec.Name}' is {spec.ShapeString}; the supplied tensor is {t.ShapeString}.", spec.Name);
    }

    private void CheckDim(TensorSpec spec, int axis, int value, string what)
    {
        int d = spec.Dimensions[axis];
        if (d >= 0 && d != value) throw new SpmMismatchException($"UNet '{Name}' input '{spec.Name}' expects {what} {d}, got {value}.", spec.Name);
    }

    /// <inheritdoc />
    public void Dispose() => _session.Dispose();
}

/// <summary>
/// The UNet calls of one denoising loop: conditioning bound once, then <see cref="Run"/> per step with the latents
/// in <see cref="Input"/> and the prediction landing in <see cref="Output"/>. With IOBinding (the CUDA path) the
/// hidden states and extra inputs are copied to the device once for the whole loop instead of on every step;
/// on the CPU the bound buffers are used in place. Owned by one call: not thread-safe, cheap to create.
/// </summary>
public sealed class UNetRunner : IDisposable
{
    private readonly UNetModel _model;
    private readonly InferenceSession _session;
    private readonly RunOptions _runOptions;
    private readonly int _batch;
    private readonly FloatStaging _sample;
    private readonly FloatStaging _output;
    private readonly List<IDisposable> _owned = [];
    private readonly OrtIoBinding? _binding;
    private readonly string[] _inputNames;
    private readonly OrtValue[] _inputValues;
    private readonly string[] _outputNames;
    private readonly OrtValue[] _outputValues;

    internal UNetRunner(UNetModel model, InferenceSession session, FloatTensor hidden, IReadOnlyDictionary<string, FloatTensor> textInputs, IReadOnlyDictionary<string, FloatTensor> extras,
        int batch, int height, int width, bool useIoBinding, RunOptions runOptions)
    {
        _model = model;
        _session = session;
        _runOptions = runOptions;
        _batch = batch;
        long[] latentShape = [batch, model.InChannels, height, width];
        int n = checked(batch * model.InChannels * height * width);
        try
        {
            _sample = Own(new FloatStaging(new float[n], latentShape, model.SampleInput, model.Name, isOutput: false));
            _output = Own(new FloatStaging(new float[n], latentShape, model.Output, model.Name, isOutput: true));
            var hiddenValue = Own(OrtTensors.FloatInput(hidden.Data, hidden.Shape.Select(d => (long)d).ToArray(), model.HiddenStatesInput, model.Name));
            var names = new List<string> { model.SampleInput.Name, model.TimestepInput.Name, model.HiddenStatesInput.Name };
            var values = new List<OrtValue> { _sample.Value, _sample.Value /* timestep placeholder, set per step */, hiddenValue };
            foreach (var spec in model.TextInputs.Concat(model.ExtraInputs))
            {
                var t = textInputs.TryGetValue(spec.Name, out var text) ? text : extras[spec.Name];
                names.Add(spec.Name);
                values.Add(Own(OrtTensors.FloatInput(t.Data, t.Shape.Select(d => (long)d).ToArray(), spec, model.Name)));
            }
            _inputNames = names.ToArray();
            _inputValues = values.ToArray();
            _outputNames = [model.Output.Name];
            _outputValues = [_output.Value];
            if (useIoBinding)
            {
                _binding = Own(session.CreateIoBinding());
                // Constant inputs: bound (and, on a device provider, copied to the device) once for the loop.
                for (int i = 2; i < _inputNames.Length; i++) _binding.BindInput(_inputNames[i], _inputValues[i]);
                _binding.BindOutput(model.Output.Name, _output.Value);
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>The latent input of the next run [B,C,h,w] (float32; converted at the boundary for fp16 models).</summary>
    public float[] Input => _sample.Buffer;

    /// <summary>The prediction of the last run [B,C,h,w].</summary>
    public float[] Output => _output.Buffer;

    /// <summary>True when runs go through IOBinding.</summary>
    public bool UsesIoBinding => _binding is not null;

    /// <summary>Runs the UNet on <see cref="Input"/> at timestep <paramref name="timestep"/>.</summary>
    public void Run(double timestep)
    {
        _sample.PushToValue();
        using var t = OrtTensors.TimestepInput(timestep, _batch, _model.TimestepInput, _model.Name);
        if (_binding is not null)
        {
            // Rebinding per step: on a device provider this is the one host→device copy of the step.
            _binding.BindInput(_inputNames[0], _sample.Value);
            _binding.BindInput(_inputNames[1], t);
            _session.RunWithBinding(_runOptions, _binding);
            _binding.SynchronizeBoundOutputs();
        }
        else
        {
            _inputValues[1] = t;
            _session.Run(_runOptions, _inputNames, _inputValues, _outputNames, _outputValues);
        }
        _output.PullFromValue();
    }

    private T Own<T>(T d) where T : IDisposable
    {
        _owned.Add(d);
        return d;
    }

    /// <summary>Releases the bound buffers and the binding.</summary>
    public void Dispose()
    {
        for (int i = _owned.Count - 1; i >= 0; i--) _owned[i].Dispose();
        _owned.Clear();
    }
}
