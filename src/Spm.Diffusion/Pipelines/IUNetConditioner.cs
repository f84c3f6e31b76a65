using Spm.Core.Tensors;

namespace Spm.Diffusion.Pipelines;

/// <summary>Which half of classifier-free guidance a UNet batch row belongs to.</summary>
public enum GuidanceRow
{
    /// <summary>Conditioned on the negative prompt (or the empty prompt).</summary>
    Unconditional,

    /// <summary>Conditioned on the prompt.</summary>
    Conditional,
}

/// <summary>
/// What a conditioner sees for one UNet batch. Row layout: with guidance, rows <c>0..n-1</c> are unconditional and
/// rows <c>n..2n-1</c> conditional (image j at rows j and n+j); without guidance, n conditional rows.
/// </summary>
/// <param name="Pipeline">The pipeline (its tokenizer and text encoder, e.g. to embed concept texts).</param>
/// <param name="Request">The request.</param>
/// <param name="PromptEmbedding">E(prompt): the positive prompt's hidden-state row [1,L,D] as the UNet reads it (SD 1.x/2.x: the text encoder's last hidden state; SDXL: both encoders' penultimate states concatenated).</param>
/// <param name="PromptTokenIds">The prompt's padded token ids (length L, BOS/EOS/padding included).</param>
/// <param name="Rows">The guidance half of every UNet batch row.</param>
/// <param name="FirstImageIndex">Request index of the batch's first image.</param>
public sealed record UNetConditioningContext(
    StableDiffusionPipeline Pipeline,
    GenerationRequest Request,
    FloatTensor PromptEmbedding,
    IReadOnlyList<int> PromptTokenIds,
    IReadOnlyList<GuidanceRow> Rows,
    int FirstImageIndex)
{
    /// <summary>Rows in the UNet batch.</summary>
    public int BatchRows => Rows.Count;
}

/// <summary>What a conditioner supplies for one UNet batch.</summary>
/// <param name="Inputs">A value for every extra input of the UNet (<see cref="UNetModel.ExtraInputs"/>), e.g. membrane tensors and the gates [rows,R]. Constant over the denoising loop.</param>
/// <param name="ParametersText">Appended to the settings line of the image parameters (e.g. <c>SPM: cat.safetensors gate 0.53</c>); null for nothing.</param>
public sealed record UNetConditioning(IReadOnlyDictionary<string, FloatTensor> Inputs, string? ParametersText = null);

/// <summary>
/// The seam for adapters that need extra UNet inputs (SPM membranes): called once per UNet batch of a request,
/// after the prompt has been embedded and before the denoising loop; its inputs then go to every UNet call of that
/// batch. Load an injected UNet with <see cref="PipelineOptions.UNetSource"/> and set
/// <see cref="GenerationRequest.Conditioner"/>. Must be thread-safe if one instance serves concurrent requests.
/// </summary>
public interface IUNetConditioner
{
    /// <summary>Supplies the extra inputs for one batch.</summary>
    UNetConditioning Prepare(UNetConditioningContext context);
}
