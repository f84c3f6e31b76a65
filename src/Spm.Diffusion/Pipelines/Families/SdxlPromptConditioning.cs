using System.Globalization;
using System.Text.RegularExpressions;
using Microsoft.ML.OnnxRuntime;
using Spm.Core;
using Spm.Core.Tensors;
using Spm.Diffusion.Text;

namespace Spm.Diffusion.Pipelines.Families;

/// <summary>
/// SDXL conditioning, as diffusers' StableDiffusionXLPipeline computes it: the prompt goes through both tokenizers
/// (<c>tokenizer/</c> pads with EOS, <c>tokenizer_2/</c> with its own pad token, "!" = 0) and both encoders; the UNet's
/// <c>encoder_hidden_states</c> row is the two encoders' <b>penultimate</b> hidden states (optimum's
/// <c>hidden_states.N-1</c> of N layers) concatenated on the last axis, <c>text_embeds</c> the second encoder's
/// <c>text_embeds</c> (its projection of the EOS token's final state), and <c>time_ids</c> the six size-conditioning
/// values. With <c>force_zeros_for_empty_prompt</c> an empty negative prompt is all zeros (sequence and pooled) rather
/// than the encoding of "".
/// </summary>
public sealed partial class SdxlPromptConditioning : IPromptConditioning
{
    private readonly ClipTokenizer _tokenizer1;
    private readonly ClipTokenizer _tokenizer2;
    private readonly TextEncoderModel _encoder1;
    private readonly TextEncoderModel _encoder2;
    private readonly string _penultimate1;
    private readonly string _penultimate2;

    /// <summary>Wraps both tokenizers and encoders (the encoders are owned from now on: disposed with this).</summary>
    /// <exception cref="SpmFormatException">An encoder lacks the outputs SDXL needs (hidden states; <c>text_embeds</c> on the second); the message names it.</exception>
    public SdxlPromptConditioning(ClipTokenizer tokenizer1, TextEncoderModel encoder1, ClipTokenizer tokenizer2, TextEncoderModel encoder2, bool forceZerosForEmptyPrompt)
    {
        ArgumentNullException.ThrowIfNull(tokenizer1);
        ArgumentNullException.ThrowIfNull(encoder1);
        ArgumentNullException.ThrowIfNull(tokenizer2);
        ArgumentNullException.ThrowIfNull(encoder2);
        if (tokenizer1.MaxLength != tokenizer2.MaxLength)
            throw new SpmFormatException(tokenizer2.Folder, "model_max_length", $"the two tokenizers' lengths differ ({tokenizer1.MaxLength} and {tokenizer2.MaxLength}); SDXL concatenates their sequences token by token.");
        _penultimate1 = Penultimate(encoder1);
        _penultimate2 = Penultimate(encoder2);
        if (encoder2.Signature.Outputs.All(o => o.Name != "text_embeds"))
            throw new SpmFormatException(encoder2.Name, "text_embeds", "SDXL's second text encoder must output 'text_embeds' (CLIPTextModelWithProjection: the pooled, projected embedding).");
        _tokenizer1 = tokenizer1;
        _tokenizer2 = tokenizer2;
        _encoder1 = encoder1;
        _encoder2 = encoder2;
        ForceZerosForEmptyPrompt = forceZerosForEmptyPrompt;
        Tokenizers = [tokenizer1, tokenizer2];
        TextEncoders = [encoder1, encoder2];
    }

    /// <inheritdoc />
    public IReadOnlyList<TextEncoderModel> TextEncoders { get; }

    /// <inheritdoc />
    public ModelFamily Family => ModelFamily.StableDiffusionXL;

    /// <inheritdoc />
    public IReadOnlyList<ClipTokenizer> Tokenizers { get; }

    /// <summary>Whether an empty negative prompt gives zeros (model_index.json's <c>force_zeros_for_empty_prompt</c>).</summary>
    public bool ForceZerosForEmptyPrompt { get; }

    /// <summary>The first encoder's output used as its part of the sequence (e.g. <c>hidden_states.11</c> of 12 layers).</summary>
    public string SequenceOutput1 => _penultimate1;

    /// <summary>The second encoder's output used as its part of the sequence (e.g. <c>hidden_states.31</c> of 32 layers).</summary>
    public string SequenceOutput2 => _penultimate2;

    [GeneratedRegex(@"^hidden_states\.(\d+)$", RegexOptions.CultureInvariant)]
    private static partial Regex HiddenStateName();

    // hidden_states.0 is the embedding layer's output and hidden_states.N the last layer's: diffusers reads [-2].
    private static string Penultimate(TextEncoderModel encoder)
    {
        var layers = encoder.Signature.Outputs
            .Select(o => HiddenStateName().Match(o.Name))
            .Where(m => m.Success && int.TryParse(m.Groups[1].Value, NumberStyles.None, CultureInfo.InvariantCulture, out _))
            .Select(m => int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture))
            .ToList();
        if (layers.Count == 0)
            throw new SpmFormatException(encoder.Name, "hidden_states", "SDXL's text encoders must output their hidden states (hidden_states.0 ... hidden_states.N, as optimum exports them); the UNet reads the penultimate one.");
        int n = layers.Max();
        if (n < 1 || !layers.Contains(n - 1))
            throw new SpmFormatException(encoder.Name, $"hidden_states.{n - 1}", $"the penultimate hidden state of a {n}-layer encoder is missing.");
        return $"hidden_states.{n - 1}";
    }

    /// <inheritdoc />
    public EncodedPrompt Encode(string text, RunOptions? runOptions = null)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids1 = _tokenizer1.Encode(text);
        var ids2 = _tokenizer2.Encode(text);
        var h1 = _encoder1.EncodeOutputs(ids1, 1, [_penultimate1], runOptions)[0];
        var out2 = _encoder2.EncodeOutputs(ids2, 1, [_penultimate2, "text_embeds"], runOptions);
        var h2 = out2[0];
        var pooled = out2[1];
        if (h1.Rank != 3 || h2.Rank != 3 || h1.Shape[1] != h2.Shape[1])
            throw new SpmMismatchException($"SDXL's encoders gave sequences {h1.ShapeString} ('{_encoder1.Name}') and {h2.ShapeString} ('{_encoder2.Name}'); they must be [1, L, D] with the same L.", "encoder_hidden_states");
        if (pooled.Rank != 2) throw new SpmFormatException(_encoder2.Name, "text_embeds", $"output is {pooled.ShapeString}; expected [1, P].");
        return new EncodedPrompt(text, ids1, Concatenate(h1, h2), pooled, ids2);
    }

    /// <inheritdoc />
    public IReadOnlyList<EncodedPrompt> EncodeBatch(IReadOnlyList<string> texts, RunOptions? runOptions = null)
    {
        ArgumentNullException.ThrowIfNull(texts);
        if (texts.Count == 0) return [];
        int n = texts.Count;
        var ids1 = texts.Select(_tokenizer1.Encode).ToArray();
        var ids2 = texts.Select(_tokenizer2.Encode).ToArray();
        var h1 = _encoder1.EncodeOutputs(ids1.SelectMany(i => i).ToArray(), n, [_penultimate1], runOptions)[0];
        var out2 = _encoder2.EncodeOutputs(ids2.SelectMany(i => i).ToArray(), n, [_penultimate2, "text_embeds"], runOptions);
        var (h2, pooled) = (out2[0], out2[1]);
        if (h1.Rank != 3 || h2.Rank != 3 || h1.Shape[1] != h2.Shape[1])
            throw new SpmMismatchException($"SDXL's encoders gave sequences {h1.ShapeString} ('{_encoder1.Name}') and {h2.ShapeString} ('{_encoder2.Name}'); they must be [B, L, D] with the same L.", "encoder_hidden_states");
        if (pooled.Rank != 2) throw new SpmFormatException(_encoder2.Name, "text_embeds", $"output is {pooled.ShapeString}; expected [B, P].");
        return texts.Select((t, i) => new EncodedPrompt(t, ids1[i],
            Concatenate(ClipPromptConditioning.Row(h1, i), ClipPromptConditioning.Row(h2, i)), ClipPromptConditioning.Row(pooled, i), ids2[i])).ToArray();
    }

    /// <inheritdoc />
    public IUNetRowLayout RowLayout(EncodedPrompt example)
    {
        ArgumentNullException.ThrowIfNull(example);
        var pooled = example.Pooled ?? throw new ArgumentException("An SDXL prompt has a pooled embedding.", nameof(example));
        return UNetRowLayout.Sdxl(example.HiddenStates.Shape[1], example.HiddenStates.Shape[2], pooled.Shape[1]);
    }

    // [1, L, D1] ++ [1, L, D2] -> [1, L, D1 + D2], token by token.
    private static FloatTensor Concatenate(FloatTensor a, FloatTensor b)
    {
        int l = a.Shape[1], d1 = a.Shape[2], d2 = b.Shape[2];
        var result = new FloatTensor(1, l, d1 + d2);
        var dst = result.Span;
        for (int t = 0; t < l; t++)
        {
            a.Span.Slice(t * d1, d1).CopyTo(dst.Slice(t * (d1 + d2), d1));
            b.Span.Slice(t * d2, d2).CopyTo(dst.Slice(t * (d1 + d2) + d1, d2));
        }
        return result;
    }

    /// <inheritdoc />
    public EncodedPrompt EncodeNegative(string text, EncodedPrompt prompt, RunOptions? runOptions = null)
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentNullException.ThrowIfNull(prompt);
        // diffusers zeroes the negative embeddings when no negative prompt is given and the model asks for it; spm's
        // "no negative prompt" is the empty one.
        if (ForceZerosForEmptyPrompt && text.Length == 0)
            return new EncodedPrompt(text, _tokenizer1.Encode(text), new FloatTensor((int[])prompt.HiddenStates.Shape.Clone()),
                new FloatTensor((int[])prompt.Pooled!.Shape.Clone()), _tokenizer2.Encode(text), IsZero: true);
        return Encode(text, runOptions);
    }

    /// <inheritdoc />
    public UNetTextInputs BuildRows(IReadOnlyList<EncodedPrompt> rows, SizeConditioning sizes)
    {
        ArgumentNullException.ThrowIfNull(rows);
        ArgumentNullException.ThrowIfNull(sizes);
        var hidden = ClipPromptConditioning.StackSequences(rows, _encoder1.Name);
        int p = rows[0].Pooled?.Shape[1] ?? throw new ArgumentException("SDXL rows need pooled embeddings.", nameof(rows));
        var pooled = new FloatTensor(rows.Count, p);
        var timeIds = new FloatTensor(rows.Count, 6);
        var ids = sizes.ToTimeIds();
        for (int r = 0; r < rows.Count; r++)
        {
            var e = rows[r].Pooled ?? throw new ArgumentException($"Row {r} has no pooled embedding.", nameof(rows));
            if (e.Rank != 2 || e.Shape[1] != p) throw new SpmMismatchException($"The pooled embeddings of one batch differ in shape ({e.ShapeString} and [1,{p}]).", "text_embeds");
            e.Span.CopyTo(pooled.Span.Slice(r * p, p));
            ids.CopyTo(timeIds.Span.Slice(r * 6, 6));
        }
        return new UNetTextInputs(hidden, new Dictionary<string, FloatTensor>(StringComparer.Ordinal) { ["text_embeds"] = pooled, ["time_ids"] = timeIds });
    }

    /// <inheritdoc />
    public string? ParametersText(SizeConditioning sizes)
    {
        ArgumentNullException.ThrowIfNull(sizes);
        var c = CultureInfo.InvariantCulture;
        // Sizes written width x height, like the Size field.
        return string.Create(c, $"Original size: {sizes.OriginalWidth}x{sizes.OriginalHeight}, Crop top: {sizes.CropTop}, Crop left: {sizes.CropLeft}, Target size: {sizes.TargetWidth}x{sizes.TargetHeight}");
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _encoder1.Dispose();
        _encoder2.Dispose();
    }
}
