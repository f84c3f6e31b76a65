using Spm.Core;
using Spm.Core.SafeTensors;
using Spm.Core.Tensors;

namespace Spm.Training.Optimizers;

/// <summary>
/// Base of the first-order optimizers: per-parameter state buffers keyed by parameter name, a step counter,
/// and save/load of the whole state as a safetensors file (so a resumed run continues exactly).
/// </summary>
public abstract class Optimizer
{
    private readonly Dictionary<string, float[]> _state = new(StringComparer.Ordinal);

    /// <summary>Number of completed <see cref="Step"/> calls.</summary>
    public long StepCount { get; private set; }

    /// <summary>A short name stored in saved state, checked on load.</summary>
    public abstract string Kind { get; }

    /// <summary>Updates every parameter in place from its <see cref="TrainableTensor.Grad"/> with learning rate <paramref name="learningRate"/>.</summary>
    public void Step(IReadOnlyList<TrainableTensor> parameters, double learningRate)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        if (!double.IsFinite(learningRate) || learningRate < 0) throw new ArgumentOutOfRangeException(nameof(learningRate), learningRate, "Learning rate must be finite and non-negative.");
        StepCount++;
        foreach (var p in parameters) Update(p, learningRate, StepCount);
    }

    /// <summary>Applies one update to <paramref name="parameter"/>; <paramref name="step"/> counts from 1.</summary>
    protected abstract void Update(TrainableTensor parameter, double learningRate, long step);

    /// <summary>The state buffer <paramref name="slot"/> of <paramref name="parameter"/>, created zeroed on first use.</summary>
    protected float[] Buffer(TrainableTensor parameter, string slot)
    {
        var key = slot + "." + parameter.Name;
        if (!_state.TryGetValue(key, out var buffer))
        {
            buffer = new float[parameter.Value.Length];
            _state[key] = buffer;
        }
        else if (buffer.Length != parameter.Value.Length)
        {
            throw new SpmException($"Optimizer state '{key}' has {buffer.Length} values but the parameter has {parameter.Value.Length}.");
        }
        return buffer;
    }

    /// <summary>Whether a state buffer exists (e.g. SGD's first step initialises momentum from the gradient).</summary>
    protected bool HasBuffer(TrainableTensor parameter, string slot) => _state.ContainsKey(slot + "." + parameter.Name);

    /// <summary>Writes the state (buffers, step count, kind) as safetensors tensors and metadata into the given collections.</summary>
    public void ExportState(IDictionary<string, FloatTensor> tensors, IDictionary<string, string> metadata, string prefix = "optim.")
    {
        ArgumentNullException.ThrowIfNull(tensors);
        ArgumentNullException.ThrowIfNull(metadata);
        foreach (var (key, buffer) in _state.OrderBy(k => k.Key, StringComparer.Ordinal))
            tensors[prefix + key] = new FloatTensor([buffer.Length], (float[])buffer.Clone());
        metadata[prefix + "kind"] = Kind;
        metadata[prefix + "step"] = StepCount.ToString(System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>Restores state written by <see cref="ExportState"/> from an open file.</summary>
    /// <exception cref="SpmFormatException">The file holds another optimizer's state or malformed entries.</exception>
    public void ImportState(SafeTensorsFile file, string prefix = "optim.")
    {
        ArgumentNullException.ThrowIfNull(file);
        if (!file.Metadata.TryGetValue(prefix + "kind", out var kind) || kind != Kind)
            throw new SpmFormatException(file.Path, prefix + "kind", $"holds optimizer state of kind '{kind ?? "(none)"}', expected '{Kind}'.");
        if (!file.Metadata.TryGetValue(prefix + "step", out var stepText) || !long.TryParse(stepText, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var step))
            throw new SpmFormatException(file.Path, prefix + "step", "missing or not a non-negative integer.");
        _state.Clear();
        foreach (var info in file.Tensors)
        {
            if (!info.Name.StartsWith(prefix, StringComparison.Ordinal)) continue;
            var t = file.ReadFloat(info.Name);
            _state[info.Name[prefix.Length..]] = t.Data;
        }
        StepCount = step;
    }
}
