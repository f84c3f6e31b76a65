using System.Globalization;
using System.Text;
using Microsoft.ML.Tokenizers;

namespace Spm.Diffusion.Text;

/// <summary>
/// CLIP's pre-tokenizer, the regex
/// <c>&lt;\|startoftext\|&gt;|&lt;\|endoftext\|&gt;|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+</c>,
/// as a code-point scanner.
/// </summary>
/// <remarks>
/// A .NET <see cref="System.Text.RegularExpressions.Regex"/> classifies UTF-16 code units, so a letter outside the
/// BMP (a surrogate pair such as U+1D400) would fall into the punctuation class; Python's regex classifies code
/// points. Scanning runes keeps CLIP's behaviour for every code point and avoids regex overhead. The alternation
/// order is the regex's: at each position the special tokens win, then contractions, then a letter run, then
/// one digit, then a run of anything else that is not whitespace.
/// </remarks>
internal sealed class ClipPreTokenizer : PreTokenizer
{
    private static readonly string[] Specials = ["<|startoftext|>", "<|endoftext|>"];
    private static readonly string[] Contractions = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"];

    public override IEnumerable<(int Offset, int Length)> PreTokenize(string text) => Split(text.AsSpan());

    public override IEnumerable<(int Offset, int Length)> PreTokenize(ReadOnlySpan<char> text) => Split(text);

    internal static List<(int Offset, int Length)> Split(ReadOnlySpan<char> text)
    {
        var parts = new List<(int, int)>();
        int i = 0;
        while (i < text.Length)
        {
            Rune.DecodeFromUtf16(text[i..], out var rune, out int width);
            var kind = Classify(rune);
            if (kind == CharKind.Space) { i += width; continue; }
            int len = MatchLiteral(text, i, Specials);
            if (len == 0) len = MatchLiteral(text, i, Contractions);
            if (len == 0)
            {
                len = kind switch
                {
                    CharKind.Letter => RunLength(text, i, CharKind.Letter),
                    CharKind.Number => width,
                    _ => RunLength(text, i, CharKind.Other),
                };
            }
            parts.Add((i, len));
            i += len;
        }
        return parts;
    }

    private static int MatchLiteral(ReadOnlySpan<char> text, int start, string[] literals)
    {
        foreach (var lit in literals)
            if (text[start..].StartsWith(lit, StringComparison.OrdinalIgnoreCase)) return lit.Length;
        return 0;
    }

    private static int RunLength(ReadOnlySpan<char> text, int start, CharKind kind)
    {
        int i = start;
        while (i < text.Length)
        {
            Rune.DecodeFromUtf16(text[i..], out var rune, out int width);
            if (Classify(rune) != kind) break;
            i += width;
        }
        return i - start;
    }

    private enum CharKind { Space, Letter, Number, Other }

    private static CharKind Classify(Rune rune)
    {
        if (Rune.IsWhiteSpace(rune)) return CharKind.Space;
        return Rune.GetUnicodeCategory(rune) switch
        {
            UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
                or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter => CharKind.Letter,
            UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber => CharKind.Number,
            _ => CharKind.Other,
        };
    }
}
