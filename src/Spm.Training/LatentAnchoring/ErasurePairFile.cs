using System.Text;
using Spm.Core;

namespace Spm.Training.LatentAnchoring;

/// <summary>
/// Reads erasure pairs (<see cref="LatentAnchoringOptions.Pairs"/>) from a text file: one pair per line,
/// <c>TARGET =&gt; SURROGATE</c> ("a red striped circle =&gt; a red plain circle"); blank lines and lines starting with
/// <c>#</c> are skipped; the surrogate may be empty (erase towards the empty prompt).
/// </summary>
public static class ErasurePairFile
{
    /// <summary>The separator between a pair's target and its surrogate.</summary>
    public const string Arrow = "=>";

    private const long MaxFileBytes = 4 << 20;
    private const int MaxPairs = 100_000;

    /// <summary>Loads the pairs of <paramref name="path"/>.</summary>
    /// <exception cref="SpmFormatException">The file is missing, too large, or a line is not a pair; the message names the file and line.</exception>
    public static IReadOnlyList<ErasurePair> Load(string path)
    {
        var info = new FileInfo(path);
        if (!info.Exists) throw new SpmFormatException(path, null, "pair file not found.");
        if (info.Length > MaxFileBytes) throw new SpmFormatException(path, null, $"pair file is {info.Length} bytes; at most {MaxFileBytes} are accepted.");
        return Parse(File.ReadAllText(path, Encoding.UTF8), path);
    }

    /// <summary>Parses the text of a pair file (see <see cref="Load"/>).</summary>
    public static IReadOnlyList<ErasurePair> Parse(string text, string? fileName = null)
    {
        ArgumentNullException.ThrowIfNull(text);
        var pairs = new List<ErasurePair>();
        var lines = text.Split('\n');
        for (int i = 0; i < lines.Length; i++)
        {
            var line = lines[i].Trim();
            if (line.Length == 0 || line.StartsWith('#')) continue;
            int arrow = line.IndexOf(Arrow, StringComparison.Ordinal);
            if (arrow < 0) throw new SpmFormatException(fileName, $"line {i + 1}", $"expected 'TARGET {Arrow} SURROGATE', got '{Shorten(line)}'.");
            var target = line[..arrow].Trim();
            var surrogate = line[(arrow + Arrow.Length)..].Trim();
            if (target.Length == 0) throw new SpmFormatException(fileName, $"line {i + 1}", "the target prompt is empty.");
            if (surrogate.Contains(Arrow, StringComparison.Ordinal)) throw new SpmFormatException(fileName, $"line {i + 1}", $"more than one '{Arrow}'.");
            if (string.Equals(target, surrogate, StringComparison.Ordinal))
                throw new SpmFormatException(fileName, $"line {i + 1}", $"the target and the surrogate are the same prompt ('{Shorten(target)}'): nothing to erase.");
            if (pairs.Count == MaxPairs) throw new SpmFormatException(fileName, $"line {i + 1}", $"more than {MaxPairs} pairs.");
            pairs.Add(new ErasurePair(target, surrogate));
        }
        if (pairs.Count == 0) throw new SpmFormatException(fileName, null, "the pair file holds no pair.");
        return pairs;
    }

    private static string Shorten(string s) => s.Length <= 80 ? s : s[..77] + "...";
}
