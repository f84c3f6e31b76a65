using System.Text;
using Spm.Core.Randomness;

namespace Spm.Training.Attacks;

/// <summary>The kinds of character edit a typo makes.</summary>
public enum TypoKind
{
    /// <summary>Two neighbouring letters swapped ("cirlce").</summary>
    Swap,
    /// <summary>One letter dropped ("cirle").</summary>
    Delete,
    /// <summary>One letter doubled ("ciircle").</summary>
    Duplicate,
    /// <summary>One letter replaced by another ("circke").</summary>
    Substitute,
    /// <summary>One letter inserted ("circlxe").</summary>
    Insert,
}

/// <summary>
/// Word-level rewrites that keep a prompt's meaning for a reader while changing its tokens: typos, plurals, capitals,
/// repetition and burying a phrase among other words. The raw material of the text-variant attack and of the data a
/// learned gate is fitted on. Deterministic for a given <see cref="SeededRandom"/>.
/// </summary>
public static class TextEdits
{
    /// <summary>Filler words of the kind long real prompts carry (quality tags, framing), for <see cref="Bury"/>.</summary>
    public static IReadOnlyList<string> DefaultFillers { get; } =
    [
        "a photo of", "an image of", "a picture showing", "high quality", "detailed", "simple", "centered", "digital art",
        "clean", "sharp focus", "minimal", "flat colors", "trending", "award winning", "4k", "illustration", "icon",
        "vector art", "studio lighting", "beautiful", "masterpiece", "best quality", "in the middle", "wallpaper",
    ];

    /// <summary>One typo of <paramref name="word"/> of the given kind at a random position (a word of one letter is doubled).</summary>
    public static string Typo(string word, TypoKind kind, SeededRandom rng)
    {
        ArgumentNullException.ThrowIfNull(word);
        ArgumentNullException.ThrowIfNull(rng);
        if (word.Length == 0) return word;
        var c = new StringBuilder(word);
        int i = rng.NextInt(0, word.Length);
        char letter = (char)('a' + rng.NextInt(0, 26));
        switch (kind)
        {
            case TypoKind.Swap when word.Length >= 2:
                i = rng.NextInt(0, word.Length - 1);
                (c[i], c[i + 1]) = (c[i + 1], c[i]);
                if (c.ToString() == word) c.Insert(i, c[i]); // "ll" swapped is no typo: double a letter instead.
                break;
            case TypoKind.Delete when word.Length >= 3:
                c.Remove(i, 1);
                break;
            case TypoKind.Substitute:
                if (letter == c[i]) letter = (char)('a' + (letter - 'a' + 1) % 26);
                c[i] = letter;
                break;
            case TypoKind.Insert:
                c.Insert(i, letter);
                break;
            default: // Duplicate, and the short-word fallbacks.
                c.Insert(i, c[i]);
                break;
        }
        return c.ToString();
    }

    /// <summary>A typo of a random kind.</summary>
    public static string Typo(string word, SeededRandom rng) => Typo(word, (TypoKind)rng.NextInt(0, 5), rng);

    /// <summary>The English plural of a noun by the regular rules ("circle" → "circles", "box" → "boxes", "ray" → "rays", "berry" → "berries").</summary>
    public static string Plural(string noun)
    {
        ArgumentNullException.ThrowIfNull(noun);
        if (noun.Length == 0) return noun;
        if (noun.EndsWith('s') || noun.EndsWith('x') || noun.EndsWith('z') || noun.EndsWith("ch", StringComparison.Ordinal) || noun.EndsWith("sh", StringComparison.Ordinal))
            return noun + "es";
        if (noun.Length >= 2 && noun[^1] == 'y' && "aeiou".IndexOf(noun[^2]) < 0) return noun[..^1] + "ies";
        return noun + "s";
    }

    /// <summary>The text in capitals, or with its first letter capitalised.</summary>
    public static string Capitalise(string text, bool allCapitals) =>
        allCapitals ? text.ToUpperInvariant() : text.Length == 0 ? text : char.ToUpperInvariant(text[0]) + text[1..];

    /// <summary>
    /// <paramref name="phrase"/> among <paramref name="before"/> filler phrases before and <paramref name="after"/> after,
    /// comma-separated, as long prompts are written ("a photo of, a red circle, high quality, detailed").
    /// </summary>
    public static string Bury(string phrase, int before, int after, SeededRandom rng, IReadOnlyList<string>? fillers = null)
    {
        ArgumentNullException.ThrowIfNull(phrase);
        ArgumentNullException.ThrowIfNull(rng);
        fillers ??= DefaultFillers;
        if (fillers.Count == 0) throw new ArgumentException("No filler words.", nameof(fillers));
        var parts = new List<string>(before + after + 1);
        for (int i = 0; i < before; i++) parts.Add(fillers[rng.NextInt(0, fillers.Count)]);
        parts.Add(phrase);
        for (int i = 0; i < after; i++) parts.Add(fillers[rng.NextInt(0, fillers.Count)]);
        return string.Join(", ", parts);
    }

    /// <summary>Replaces the first whole-word occurrence of <paramref name="word"/> in <paramref name="text"/> (case-insensitive); the text unchanged if absent.</summary>
    public static string ReplaceWord(string text, string word, string replacement)
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentNullException.ThrowIfNull(word);
        ArgumentNullException.ThrowIfNull(replacement);
        int from = 0;
        while (true)
        {
            int i = text.IndexOf(word, from, StringComparison.OrdinalIgnoreCase);
            if (i < 0) return text;
            bool startOk = i == 0 || !char.IsLetterOrDigit(text[i - 1]);
            bool endOk = i + word.Length == text.Length || !char.IsLetterOrDigit(text[i + word.Length]);
            if (startOk && endOk) return string.Concat(text.AsSpan(0, i), replacement, text.AsSpan(i + word.Length));
            from = i + 1;
        }
    }
}
