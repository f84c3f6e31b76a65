using Spm.Core;
using Spm.Diffusion.Runtime;
using Spm.Diffusion.Text;

namespace Spm.Diffusion.Pipelines.Families;

/// <summary>
/// Opens the prompt conditioning of a model folder: the family decides which <see cref="IPromptConditioning"/>
/// (<see cref="ClipPromptConditioning"/> for SD 1.x/2.x, <see cref="SdxlPromptConditioning"/> for SDXL), so callers
/// outside the pipeline (the trainer) get the family's tokenizers and text encoders without asking which it is.
/// </summary>
public static class PromptConditionings
{
    /// <summary>Opens the folder's tokenizers and text encoders as one conditioning.</summary>
    /// <param name="folder">The opened model folder.</param>
    /// <param name="sessions">The session group the text encoders open in (one provider choice with the rest of the run).</param>
    /// <exception cref="SpmFormatException">A tokenizer or text encoder is missing or broken; the message names it.</exception>
    public static IPromptConditioning Open(ModelFolder folder, OnnxSessionGroup sessions)
    {
        ArgumentNullException.ThrowIfNull(folder);
        ArgumentNullException.ThrowIfNull(sessions);
        var tokenizer = LoadTokenizer(folder.TokenizerFolder);
        var encoder = new TextEncoderModel(sessions.OpenCreated(OnnxModelSource.FromFile(folder.TextEncoderPath)), folder.TextEncoderPath);
        if (folder.Family != ModelFamily.StableDiffusionXL) return new ClipPromptConditioning(folder.Family, tokenizer, encoder);
        try
        {
            var tokenizer2 = LoadTokenizer(folder.Tokenizer2Folder);
            var encoder2 = new TextEncoderModel(sessions.OpenCreated(OnnxModelSource.FromFile(folder.TextEncoder2Path)), folder.TextEncoder2Path);
            try
            {
                return new SdxlPromptConditioning(tokenizer, encoder, tokenizer2, encoder2, folder.ForceZerosForEmptyPrompt);
            }
            catch
            {
                encoder2.Dispose();
                throw;
            }
        }
        catch
        {
            encoder.Dispose();
            throw;
        }
    }

    /// <summary>Loads a CLIP tokenizer folder; a broken one is an <see cref="SpmFormatException"/> naming the folder.</summary>
    public static ClipTokenizer LoadTokenizer(string folder)
    {
        try
        {
            return ClipTokenizer.Load(folder);
        }
        catch (Exception ex) when (ex is not SpmException and (IOException or FormatException or ArgumentException or InvalidOperationException or System.Text.Json.JsonException))
        {
            throw new SpmFormatException(folder, null, $"cannot load the tokenizer: {ex.Message}", ex);
        }
    }
}
