namespace Spm.Diffusion.Text;

/// <summary>
/// What the tokenizer's window cut from a prompt: CLIP's text encoder reads <see cref="KeptTokens"/> tokens
/// (its window less BOS and EOS) and the rest never reaches the model.
/// </summary>
/// <param name="Prompt">The prompt as given.</param>
/// <param name="TotalTokens">Tokens of the whole prompt, without BOS and EOS.</param>
/// <param name="KeptTokens">Tokens the text encoder sees (<see cref="ClipTokenizer.MaxLength"/> - 2).</param>
/// <param name="DroppedText">The dropped tokens decoded back to (CLIP-cleaned) words: where the cut falls.</param>
public sealed record PromptTruncation(string Prompt, int TotalTokens, int KeptTokens, string DroppedText)
{
    /// <summary>Longest excerpt of <see cref="DroppedText"/> quoted by <see cref="Describe"/>.</summary>
    public const int MaxQuotedChars = 60;

    /// <summary>Tokens cut off.</summary>
    public int DroppedTokens => TotalTokens - KeptTokens;

    /// <summary>
    /// One line for people, naming <paramref name="what"/> (e.g. "the prompt"): how many tokens were dropped and the
    /// words from where the cut falls.
    /// </summary>
    public string Describe(string what = "the prompt")
    {
        var quoted = DroppedText;
        if (quoted.Length > MaxQuotedChars)
        {
            // Cut at a word end so the excerpt quotes whole words.
            int end = quoted.LastIndexOf(' ', MaxQuotedChars);
            quoted = quoted[..(end > 0 ? end : MaxQuotedChars)].TrimEnd() + "...";
        }
        return $"{what} is {TotalTokens} tokens but the text encoder reads {KeptTokens}: the last {DroppedTokens} token(s) are ignored, from \"{quoted}\".";
    }
}
