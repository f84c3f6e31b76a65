using System.Net;
using System.Text;

namespace Spm.Diffusion.Text;

/// <summary>
/// CLIP's text preparation before BPE: <c>basic_clean</c> (ftfy.fix_text, then HTML unescape twice, strip),
/// <c>whitespace_clean</c> (runs of whitespace to one space) and Python's <c>str.lower()</c>.
/// </summary>
/// <remarks>
/// ftfy is reproduced only in its deterministic character-level fixes that change CLIP ids for ordinary prompts:
/// curly quotes, Latin ligatures, full-width ASCII, control characters and line breaks. Its mojibake repair
/// (re-decoding text that was mis-decoded as Latin-1/cp1252) and NFC normalization are not replicated: the
/// process runs with invariant globalization, where .NET has no Unicode normalization tables, so decomposed
/// input (e.g. "e" + U+0301) tokenizes as written, as CLIPTokenizerFast without NFC would.
/// </remarks>
internal static class ClipTextCleaner
{
    /// <summary>Returns the text exactly as CLIP's BPE sees it.</summary>
    public static string Clean(ReadOnlySpan<char> text)
    {
        var fixedText = FixText(text);
        // html.unescape(html.unescape(x)): a second pass decodes double-escaped entities such as "&amp;amp;".
        var unescaped = WebUtility.HtmlDecode(WebUtility.HtmlDecode(fixedText));
        return LowerLikePython(CollapseWhitespace(unescaped));
    }

    /// <summary>The ftfy subset: quotes, ligatures, width, control characters (see the type remarks).</summary>
    private static string FixText(ReadOnlySpan<char> text)
    {
        var sb = new StringBuilder(text.Length);
        foreach (var rune in text.EnumerateRunes())
        {
            int c = rune.Value;
            switch (c)
            {
                // uncurl_quotes: ftfy maps U+02BC and U+2018..U+201B to ', U+201C..U+201F to ".
                case 0x02BC or >= 0x2018 and <= 0x201B: sb.Append('\''); continue;
                case >= 0x201C and <= 0x201F: sb.Append('"'); continue;
                // fix_latin_ligatures.
                case 0xFB00: sb.Append("ff"); continue;
                case 0xFB01: sb.Append("fi"); continue;
                case 0xFB02: sb.Append("fl"); continue;
                case 0xFB03: sb.Append("ffi"); continue;
                case 0xFB04: sb.Append("ffl"); continue;
                case 0xFB05: sb.Append("\u017Ft"); continue;
                case 0xFB06: sb.Append("st"); continue;
                case 0x0132: sb.Append("IJ"); continue;
                case 0x0133: sb.Append("ij"); continue;
                // fix_character_width: full-width ASCII forms and the ideographic space become their ASCII twins.
                case >= 0xFF01 and <= 0xFF5E: sb.Append((char)(c - 0xFF01 + 0x21)); continue;
                case 0x3000: sb.Append(' '); continue;
                // fix_line_breaks: every line separator becomes \n (whitespace_clean later turns it into a space).
                case 0x2028 or 0x2029 or 0x0085: sb.Append('\n'); continue;
            }
            if (IsFtfyControl(c)) continue; // remove_control_chars
            sb.Append(rune.ToString());
        }
        return sb.ToString();
    }

    // ftfy's remove_control_chars keeps \t \n \f \r but drops the other C0 controls, DEL, the deprecated
    // formatting characters, the BOM / zero-width no-break space and the interlinear annotation marks.
    private static bool IsFtfyControl(int c) =>
        c is <= 0x08 or 0x0B or (>= 0x0E and <= 0x1F) or 0x7F or (>= 0x206A and <= 0x206F) or 0xFEFF
            or (>= 0xFFF9 and <= 0xFFFC) or (>= 0x1D173 and <= 0x1D17A) or (>= 0xE0000 and <= 0xE007F);

    /// <summary>Python's <c>str.isspace()</c>, which is what <c>re.sub(r'\s+', ' ', text)</c> matches.</summary>
    internal static bool IsPythonSpace(int c) =>
        c is (>= 0x09 and <= 0x0D) or (>= 0x1C and <= 0x20) or 0x85 or 0xA0 or 0x1680 or (>= 0x2000 and <= 0x200A)
            or 0x2028 or 0x2029 or 0x202F or 0x205F or 0x3000;

    /// <summary>whitespace_clean plus basic_clean's strip: single spaces between words, none at the ends.</summary>
    private static string CollapseWhitespace(string text)
    {
        var sb = new StringBuilder(text.Length);
        bool pendingSpace = false;
        foreach (char ch in text)
        {
            if (IsPythonSpace(ch)) { pendingSpace = sb.Length > 0; continue; }
            if (pendingSpace) { sb.Append(' '); pendingSpace = false; }
            sb.Append(ch);
        }
        return sb.ToString();
    }

    /// <summary>
    /// Python's <c>str.lower()</c>: simple lowercase mappings plus the two rules .NET lacks, U+0130 to "i" + U+0307
    /// (the only unconditional multi-character lowercase mapping) and the Greek final sigma.
    /// </summary>
    internal static string LowerLikePython(string text)
    {
        var sb = new StringBuilder(text.Length);
        for (int i = 0; i < text.Length;)
        {
            var rune = Rune.GetRuneAt(text, i);
            if (rune.Value == 0x0130) sb.Append("i\u0307");
            else if (rune.Value == 0x03A3) sb.Append(IsFinalSigma(text, i) ? '\u03C2' : '\u03C3');
            else sb.Append(Rune.ToLowerInvariant(rune).ToString());
            i += rune.Utf16SequenceLength;
        }
        return sb.ToString();
    }

    // Unicode's Final_Sigma condition: a cased letter before (skipping case-ignorables) and none after.
    private static bool IsFinalSigma(string text, int index)
    {
        bool casedBefore = false;
        for (int j = index; j > 0;)
        {
            var r = Rune.GetRuneAt(text, PreviousRuneStart(text, j));
            j -= r.Utf16SequenceLength;
            if (IsCaseIgnorable(r)) continue;
            casedBefore = IsCased(r);
            break;
        }
        if (!casedBefore) return false;
        for (int j = index + 1; j < text.Length;)
        {
            var r = Rune.GetRuneAt(text, j);
            j += r.Utf16SequenceLength;
            if (IsCaseIgnorable(r)) continue;
            return !IsCased(r);
        }
        return true;
    }

    private static int PreviousRuneStart(string text, int end) =>
        end >= 2 && char.IsLowSurrogate(text[end - 1]) && char.IsHighSurrogate(text[end - 2]) ? end - 2 : end - 1;

    private static bool IsCased(Rune r) =>
        Rune.GetUnicodeCategory(r) is System.Globalization.UnicodeCategory.UppercaseLetter
            or System.Globalization.UnicodeCategory.LowercaseLetter or System.Globalization.UnicodeCategory.TitlecaseLetter;

    private static bool IsCaseIgnorable(Rune r) =>
        r.Value is '\'' or '.' or ':' or 0x00B7 or 0x2019 ||
        Rune.GetUnicodeCategory(r) is System.Globalization.UnicodeCategory.NonSpacingMark
            or System.Globalization.UnicodeCategory.EnclosingMark or System.Globalization.UnicodeCategory.Format
            or System.Globalization.UnicodeCategory.ModifierLetter or System.Globalization.UnicodeCategory.ModifierSymbol;
}
