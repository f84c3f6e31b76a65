using Microsoft.ML.OnnxRuntime;
using Spm.Core.Tensors;
using Spm.Diffusion.Text;

namespace Spm.Diffusion.Pipelines.Families;

/// <summary>
/// One prompt as the model family's text encoders give it, before it is laid out in UNet rows.
/// </summary>
/// <param name="Text">The prompt.</param>
/// <param name="TokenIds">The first tokenizer's padded ids (BOS, tokens, EOS, padding).</param>
/// <param name="HiddenStates">The sequence the UNet attends to, [1, L, D] (SDXL: both encoders' penultimate states, concatenated on the last axis).</param>
/// <param name="Pooled">SDXL's pooled embedding <c>text_embeds</c> [1, P] from the second encoder; null for SD 1.x/2.x.</param>
/// <param name="TokenIds2">SDXL's second tokenizer's padded ids; null for SD 1.x/2.x.</param>
/// <param name="IsZero">True when the embeddings are all zeros instead of an encoding (SDXL's force-zeros for an empty negative prompt).</param>
public sealed record EncodedPrompt(string Text, int[] TokenIds, FloatTensor HiddenStates, FloatTensor? Pooled = null, int[]? TokenIds2 = null, bool IsZero = false);

/// <summary>
/// SDXL's size micro-conditioning, in pixels, in diffusers' order: <c>time_ids</c> = (original height, original width,
/// crop top, crop left, target height, target width). diffusers' defaults: original and target size = the generated
/// image's size, crop (0, 0).
/// </summary>
/// <param name="OriginalHeight">Original image height the model is told the picture had.</param>
/// <param name="OriginalWidth">Original image width.</param>
/// <param name="CropTop">Top of the crop.</param>
/// <param name="CropLeft">Left of the crop.</param>
/// <param name="TargetHeight">Target height.</param>
/// <param name="TargetWidth">Target width.</param>
public sealed record SizeConditioning(int OriginalHeight, int OriginalWidth, int CropTop, int CropLeft, int TargetHeight, int TargetWidth)
{
    /// <summary>diffusers' defaults for an image of <paramref name="width"/> × <paramref name="height"/>.</summary>
    public static SizeConditioning Default(int width, int height) => new(height, width, 0, 0, height, width);

    /// <summary>The six values of one <c>time_ids</c> row.</summary>
    public float[] ToTimeIds() => [OriginalHeight, OriginalWidth, CropTop, CropLeft, TargetHeight, TargetWidth];
}

/// <summary>The text-dependent UNet inputs of one batch: one row per UNet batch row, constant over the denoising loop.</summary>
/// <param name="HiddenStates"><c>encoder_hidden_states</c> [rows, L, D].</param>
/// <param name="Added">The family's further inputs by name (SDXL: <c>text_embeds</c> [rows, P], <c>time_ids</c> [rows, 6]); empty for SD 1.x/2.x.</param>
public sealed record UNetTextInputs(FloatTensor HiddenStates, IReadOnlyDictionary<string, FloatTensor> Added)
{
    /// <summary>Rows in the batch.</summary>
    public int Rows => HiddenStates.Shape[0];

    /// <summary>Only a hidden-states tensor (SD 1.x/2.x).</summary>
    public static UNetTextInputs Sequence(FloatTensor hiddenStates) => new(hiddenStates, new Dictionary<string, FloatTensor>());
}

/// <summary>
/// The one abstraction between prompts and the UNet: a model family's tokenizers and text encoders turn a prompt into an
/// <see cref="EncodedPrompt"/>, and <see cref="BuildRows"/> lays encoded prompts out as the UNet's per-row inputs. The
/// pipeline (and anything else that conditions a UNet) goes through it rather than asking which family it runs;
/// each family's specifics live in its implementation (<see cref="ClipPromptConditioning"/> for SD 1.x/2.x,
/// <see cref="SdxlPromptConditioning"/>). Owns its text encoders. Thread-safe.
/// </summary>
public interface IPromptConditioning : IDisposable
{
    /// <summary>The family.</summary>
    ModelFamily Family { get; }

    /// <summary>The tokenizers, first one first (SDXL: tokenizer/ then tokenizer_2/).</summary>
    IReadOnlyList<ClipTokenizer> Tokenizers { get; }

    /// <summary>The text encoders, first one first (SDXL: text_encoder/ then text_encoder_2/); owned by the conditioning.</summary>
    IReadOnlyList<TextEncoderModel> TextEncoders { get; }

    /// <summary>Encodes a prompt.</summary>
    EncodedPrompt Encode(string text, RunOptions? runOptions = null);

    /// <summary>
    /// Encodes several prompts in one text-encoder call per encoder (a batch of rows), as <see cref="Encode"/> would
    /// encode each; for code that encodes a fixed set of prompts up front (the trainer).
    /// </summary>
    IReadOnlyList<EncodedPrompt> EncodeBatch(IReadOnlyList<string> texts, RunOptions? runOptions = null);

    /// <summary>
    /// The layout of flat conditioning rows for prompts encoded like <paramref name="example"/> (its sequence length,
    /// widths): which UNet inputs a row feeds and how rows stack into a batch (<see cref="IUNetRowLayout"/>).
    /// </summary>
    IUNetRowLayout RowLayout(EncodedPrompt example);

    /// <summary>
    /// Encodes the negative prompt of <paramref name="prompt"/> (the unconditional half of guidance). SDXL with
    /// force-zeros gives zeros shaped like <paramref name="prompt"/> for an empty one.
    /// </summary>
    EncodedPrompt EncodeNegative(string text, EncodedPrompt prompt, RunOptions? runOptions = null);

    /// <summary>Lays out one row per entry of <paramref name="rows"/> (each row's prompt) with the given size conditioning.</summary>
    UNetTextInputs BuildRows(IReadOnlyList<EncodedPrompt> rows, SizeConditioning sizes);

    /// <summary>What the family adds to an image's parameters text (SDXL: the size conditioning), or null.</summary>
    string? ParametersText(SizeConditioning sizes);
}
