using Microsoft.ML.OnnxRuntime;
using Spm.Core;
using Spm.Core.Tensors;
using Spm.Diffusion.Runtime;

namespace Spm.Diffusion.Pipelines;

/// <summary>
/// The VAE decoder: <c>latent_sample</c> [B,4,h,w] (already divided by the scaling factor) → <c>sample</c>
/// [B,3,h·f,w·f] in [-1, 1]. Thread-safe.
/// </summary>
public sealed class VaeDecoderModel : IDisposable
{
    private readonly InferenceSession _session;
    private readonly TensorSpec _input;
    private readonly TensorSpec _output;

    /// <summary>Wraps a session opened by <see cref="OnnxSessionFactory"/> or an <see cref="OnnxSessionGroup"/> (owned from now on: disposed with this model).</summary>
    /// <param name="created">The session and its provider.</param>
    /// <param name="name">The model's name for messages (its file path).</param>
    public VaeDecoderModel(CreatedSession created, string name)
    {
        _session = created.Session;
        Name = name;
        Signature = new ModelSignature(_session, name);
        _input = Signature.Inputs.Count == 1 ? Signature.Inputs[0] : Signature.RequireInput("latent_sample");
        if (_input.Rank != 4 || !_input.IsFloatingPoint)
            throw new SpmFormatException(name, _input.Name, $"input '{_input.Name}' is {_input.ElementType} {_input.ShapeString}; expected floating-point [batch, 4, h, w].");
        _output = Signature.RequireOutput();
        if (_output.Rank != 4) throw new SpmFormatException(name, _output.Name, $"output '{_output.Name}' has rank {_output.Rank}; expected [batch, 3, H, W].");
    }

    /// <summary>The model's name in messages.</summary>
    public string Name { get; }

    /// <summary>Inputs and outputs as the session reports them.</summary>
    public ModelSignature Signature { get; }

    /// <summary>Decodes scaled latents [B,C,h,w] into images [B,3,H,W] with values nominally in [-1, 1].</summary>
    public FloatTensor Decode(FloatTensor latents, RunOptions? runOptions = null)
    {
        ArgumentNullException.ThrowIfNull(latents);
        if (latents.Rank != 4) throw new ArgumentException($"latents must be [B,C,h,w], got {latents.ShapeString}.", nameof(latents));
        using var input = OrtTensors.FloatInput(latents.Data, latents.Shape.Select(d => (long)d).ToArray(), _input, Name);
        using var ro = runOptions is null ? new RunOptions() : null;
        using var outputs = _session.Run(runOptions ?? ro!, [_input.Name], [input], [_output.Name]);
        var shape = OrtTensors.ShapeOf(outputs[0]);
        if (shape.Length != 4 || shape[0] != latents.Shape[0] || shape[1] != 3 || shape[2] < 1 || shape[3] < 1 || shape[2] * shape[3] > 1L << 28)
            throw new SpmFormatException(Name, _output.Name, $"output has shape [{string.Join(",", shape)}]; expected [{latents.Shape[0]},3,H,W].");
        var result = new FloatTensor(shape.Select(d => (int)d).ToArray());
        OrtTensors.ReadFloats(outputs[0], result.Span, Name, _output.Name);
        return result;
    }

    /// <inheritdoc />
    public void Dispose() => _session.Dispose();
}
