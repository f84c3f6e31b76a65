using Microsoft.ML.Tokenizers;

namespace Spm.Diffusion.Text;

/// <summary>Plugs <see cref="ClipTextCleaner"/> into the Microsoft.ML.Tokenizers pipeline.</summary>
internal sealed class ClipNormalizer : Normalizer
{
    public static ClipNormalizer Instance { get; } = new();

    public override string Normalize(string original) => ClipTextCleaner.Clean(original.AsSpan());

    public override string Normalize(ReadOnlySpan<char> original) => ClipTextCleaner.Clean(original);
}
