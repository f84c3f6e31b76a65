using Microsoft.ML.OnnxRuntime;
using Spm.Core;
using Spm.Core.Tensors;
using Spm.Diffusion.Runtime;

namespace Spm.Diffusion.Pipelines;

/// <summary>
/// The CLIP text encoder: token ids [B, L] → <c>last_hidden_state</c> [B, L, D]. The id type (int32/int64) is
/// read from the session. Thread-safe.
/// </summary>
public sealed class TextEncoderModel : IDisposable
{
    private readonly InferenceSession _session;
    private readonly TensorSpec _ids;
    private readonly TensorSpec _output;
    private readonly string[] _outputNames;

    /// <summary>Wraps a session opened by <see cref="OnnxSessionFactory"/> or an <see cref="OnnxSessionGroup"/> (owned from now on: disposed with this model).</summary>
    /// <param name="created">The session and its provider.</param>
    /// <param name="name">The model's name for messages (its file path).</param>
    public TextEncoderModel(CreatedSession created, string name)
    {
        _session = created.Session;
        Name = name;
        Signature = new ModelSignature(_session, name);
        _ids = Signature.RequireInput("input_ids", 2);
        _output = Signature.Outputs.Any(o => o.Name == "last_hidden_state")
            ? Signature.RequireOutput("last_hidden_state")
            : Signature.RequireOutput();
        if (_output.Rank != 3) throw new SpmFormatException(name, _output.Name, $"output '{_output.Name}' has rank {_output.Rank}; expected [batch, tokens, width].");
        _outputNames = [_output.Name];
        foreach (var extra in Signature.Inputs.Where(i => i.Name != _ids.Name))
            throw new SpmFormatException(name, extra.Name, $"unexpected text encoder input '{extra.Name}' (only input_ids is supported).");
    }

    /// <summary>The model file (for messages).</summary>
    public string Name { get; }

    /// <summary>Inputs and outputs as the session reports them.</summary>
    public ModelSignature Signature { get; }

    /// <summary>Encodes <paramref name="batch"/> rows of token ids (row-major, equal lengths) into [B, L, D] hidden states.</summary>
    public FloatTensor Encode(int[] ids, int batch, RunOptions? runOptions = null)
    {
        ArgumentNullException.ThrowIfNull(ids);
        if (batch < 1 || ids.Length == 0 || ids.Length % batch != 0)
            throw new ArgumentException($"{ids.Length} ids do not split into {batch} rows.", nameof(ids));
        int len = ids.Length / batch;
        using var input = OrtTensors.IdInput(ids, [batch, len], _ids, Name);
        using var ro = runOptions is null ? new RunOptions() : null;
        using var outputs = _session.Run(runOptions ?? ro!, [_ids.Name], [input], _outputNames);
        var shape = OrtTensors.ShapeOf(outputs[0]);
        if (shape.Length != 3 || shape[0] != batch || shape[1] != len || shape[2] < 1 || shape[2] > 1 << 16)
            throw new SpmFormatException(Name, _output.Name, $"output has shape [{string.Join(",", shape)}]; expected [{batch},{len},D].");
        var result = new FloatTensor([batch, len, (int)shape[2]], new float[batch * len * (int)shape[2]]);
        OrtTensors.ReadFloats(outputs[0], result.Span, Name, _output.Name);
        return result;
    }

    /// <summary>
    /// Runs the encoder once on <paramref name="batch"/> rows of ids and returns the named float outputs, in order
    /// (e.g. SDXL's <c>hidden_states.11</c> and <c>text_embeds</c>), each with its own shape.
    /// </summary>
    /// <exception cref="SpmFormatException">An output is missing or its batch axis is not <paramref name="batch"/>.</exception>
    public FloatTensor[] EncodeOutputs(int[] ids, int batch, IReadOnlyList<string> outputs, RunOptions? runOptions = null)
    {
        ArgumentNullException.ThrowIfNull(ids);
        ArgumentNullException.ThrowIfNull(outputs);
        if (batch < 1 || ids.Length == 0 || ids.Length % batch != 0)
            throw new ArgumentException($"{ids.Length} ids do not split into {batch} rows.", nameof(ids));
        foreach (var name in outputs)
            if (Signature.Outputs.All(o => o.Name != name))
                throw new SpmFormatException(Name, name, $"the text encoder has no output '{name}' (outputs: {string.Join(", ", Signature.Outputs.Take(6).Select(o => o.Name))}{(Signature.Outputs.Count > 6 ? ", ..." : "")}).");
        int len = ids.Length / batch;
        using var input = OrtTensors.IdInput(ids, [batch, len], _ids, Name);
        using var ro = runOptions is null ? new RunOptions() : null;
        using var results = _session.Run(runOptions ?? ro!, [_ids.Name], [input], outputs.ToArray());
        var tensors = new FloatTensor[outputs.Count];
        for (int i = 0; i < outputs.Count; i++)
        {
            var shape = OrtTensors.ShapeOf(results[i]);
            if (shape.Length < 2 || shape[0] != batch || shape.Any(d => d < 1 || d > 1 << 16))
                throw new SpmFormatException(Name, outputs[i], $"output has shape [{string.Join(",", shape)}]; expected [{batch},...].");
            var dims = shape.Select(d => (int)d).ToArray();
            var t = new FloatTensor(dims, new float[dims.Aggregate(1, (a, b) => checked(a * b))]);
            OrtTensors.ReadFloats(results[i], t.Span, Name, outputs[i]);
            tensors[i] = t;
        }
        return tensors;
    }

    /// <inheritdoc />
    public void Dispose() => _session.Dispose();
}
