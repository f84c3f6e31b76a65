using Microsoft.ML.OnnxRuntime;
using Spm.Core;
using Spm.Core.Tensors;
using Spm.Diffusion.Text;

namespace Spm.Diffusion.Pipelines.Families;

/// <summary>
/// SD 1.x/2.x conditioning: one CLIP tokenizer and text encoder; the encoder's last hidden state [1, L, D] is the UNet's
/// <c>encoder_hidden_states</c> row, and there are no further inputs (size conditioning is ignored).
/// </summary>
public sealed class ClipPromptConditioning : IPromptConditioning
{
    private readonly ClipTokenizer _tokenizer;
    private readonly TextEncoderModel _encoder;

    /// <summary>Wraps a tokenizer and its text encoder (owned from now on: disposed with this).</summary>
    public ClipPromptConditioning(ModelFamily family, ClipTokenizer tokenizer, TextEncoderModel encoder)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(encoder);
        if (family == ModelFamily.StableDiffusionXL) throw new ArgumentException("SDXL is conditioned by SdxlPromptConditioning.", nameof(family));
        Family = family;
        _tokenizer = tokenizer;
        _encoder = encoder;
        Tokenizers = [tokenizer];
        TextEncoders = [encoder];
    }

    /// <inheritdoc />
    public IReadOnlyList<TextEncoderModel> TextEncoders { get; }

    /// <inheritdoc />
    public ModelFamily Family { get; }

    /// <inheritdoc />
    public IReadOnlyList<ClipTokenizer> Tokenizers { get; }

    /// <inheritdoc />
    public EncodedPrompt Encode(string text, RunOptions? runOptions = null)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = _tokenizer.Encode(text);
        return new EncodedPrompt(text, ids, _encoder.Encode(ids, 1, runOptions));
    }

    /// <inheritdoc />
    public IReadOnlyList<EncodedPrompt> EncodeBatch(IReadOnlyList<string> texts, RunOptions? runOptions = null)
    {
        ArgumentNullException.ThrowIfNull(texts);
        if (texts.Count == 0) return [];
        var ids = texts.Select(_tokenizer.Encode).ToArray();
        var e = _encoder.Encode(ids.SelectMany(i => i).ToArray(), texts.Count, runOptions);
        return texts.Select((t, i) => new EncodedPrompt(t, ids[i], Row(e, i))).ToArray();
    }

    /// <summary>Row <paramref name="i"/> of a [B, ...] tensor as [1, ...].</summary>
    internal static FloatTensor Row(FloatTensor batch, int i)
    {
        int n = batch.Length / batch.Shape[0];
        var shape = (int[])batch.Shape.Clone();
        shape[0] = 1;
        return new FloatTensor(shape, batch.Span.Slice(i * n, n).ToArray());
    }

    /// <inheritdoc />
    public IUNetRowLayout RowLayout(EncodedPrompt example)
    {
        ArgumentNullException.ThrowIfNull(example);
        return UNetRowLayout.Sequence(example.HiddenStates.Shape[1], example.HiddenStates.Shape[2]);
    }

    /// <inheritdoc />
    public EncodedPrompt EncodeNegative(string text, EncodedPrompt prompt, RunOptions? runOptions = null) => Encode(text, runOptions);

    /// <inheritdoc />
    public UNetTextInputs BuildRows(IReadOnlyList<EncodedPrompt> rows, SizeConditioning sizes)
    {
        ArgumentNullException.ThrowIfNull(rows);
        return UNetTextInputs.Sequence(StackSequences(rows, _encoder.Name));
    }

    /// <inheritdoc />
    public string? ParametersText(SizeConditioning sizes) => null;

    /// <summary>Stacks the rows' [1, L, D] hidden states into [rows, L, D] (every row the same L and D).</summary>
    internal static FloatTensor StackSequences(IReadOnlyList<EncodedPrompt> rows, string model)
    {
        if (rows.Count == 0) throw new ArgumentException("At least one row is needed.", nameof(rows));
        var first = rows[0].HiddenStates;
        int l = first.Shape[1], d = first.Shape[2], per = l * d;
        var hidden = new FloatTensor(rows.Count, l, d);
        for (int r = 0; r < rows.Count; r++)
        {
            var e = rows[r].HiddenStates;
            if (e.Rank != 3 || e.Shape[0] != 1 || e.Shape[1] != l || e.Shape[2] != d)
                throw new SpmMismatchException($"The text encoder '{model}' gave {e.ShapeString} for one row and {first.ShapeString} for another of the same batch.", "encoder_hidden_states");
            e.Span.CopyTo(hidden.Span.Slice(r * per, per));
        }
        return hidden;
    }

    /// <inheritdoc />
    public void Dispose() => _encoder.Dispose();
}
