using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Spm.Diffusion.Tests.Text;

/// <summary>
/// A deliberately plain transcription of OpenAI CLIP's published simple_tokenizer (bytes_to_unicode, regex
/// pre-tokenization, greedy lowest-rank merge loop), used as the independent oracle for ClipTokenizer.
/// It shares no code with the production tokenizer and does not use Microsoft.ML.Tokenizers.
/// </summary>
internal sealed class ReferenceClipBpe
{
    private static readonly Regex Pattern = new(
        @"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+",
        RegexOptions.IgnoreCase | RegexOptions.CultureInvariant);

    private readonly Dictionary<string, int> _encoder;
    private readonly Dictionary<(string, string), int> _ranks = new();
    private readonly string[] _byteEncoder;

    public ReferenceClipBpe(string folder)
    {
        _encoder = JsonSerializer.Deserialize<Dictionary<string, int>>(File.ReadAllText(Path.Combine(folder, "vocab.json")))!;
        var lines = File.ReadAllLines(Path.Combine(folder, "merges.txt"));
        int rank = 0;
        foreach (var line in lines.Skip(1)) // first line is the "#version" header
        {
            if (line.Length == 0) continue;
            var parts = line.Split(' ');
            _ranks[(parts[0], parts[1])] = rank++;
        }
        _byteEncoder = BytesToUnicode();
    }

    public int MergeCount => _ranks.Count;

    /// <summary>bytes_to_unicode(): printable bytes map to themselves, the rest to 256, 257, ...</summary>
    private static string[] BytesToUnicode()
    {
        var bs = new List<int>();
        for (int b = '!'; b <= '~'; b++) bs.Add(b);
        for (int b = 0xA1; b <= 0xAC; b++) bs.Add(b);
        for (int b = 0xAE; b <= 0xFF; b++) bs.Add(b);
        var cs = new List<int>(bs);
        int n = 0;
        for (int b = 0; b < 256; b++)
        {
            if (bs.Contains(b)) continue;
            bs.Add(b);
            cs.Add(256 + n);
            n++;
        }
        var map = new string[256];
        for (int i = 0; i < bs.Count; i++) map[bs[i]] = ((char)cs[i]).ToString();
        return map;
    }

    /// <summary>whitespace_clean(basic_clean(text)).lower() for plain text (no ftfy repairs, no HTML entities).</summary>
    public static string Clean(string text) => Regex.Replace(text, @"\s+", " ").Trim().ToLowerInvariant();

    /// <summary>Content ids (no BOS/EOS) of the published encode().</summary>
    public List<int> Encode(string text)
    {
        var ids = new List<int>();
        foreach (Match m in Pattern.Matches(Clean(text)))
            ids.AddRange(EncodeWord(m.Value));
        return ids;
    }

    /// <summary>Ids of one pre-tokenized word.</summary>
    public IEnumerable<int> EncodeWord(string word)
    {
        if (word is "<|startoftext|>" or "<|endoftext|>") return [_encoder[word]];
        var mapped = string.Concat(Encoding.UTF8.GetBytes(word).Select(b => _byteEncoder[b]));
        return Bpe(mapped).Select(t => _encoder[t]);
    }

    private List<string> Bpe(string token)
    {
        var word = token[..^1].Select(c => c.ToString()).ToList();
        word.Add(token[^1] + "</w>");
        while (word.Count > 1)
        {
            (string, string)? best = null;
            int bestRank = int.MaxValue;
            for (int i = 0; i < word.Count - 1; i++)
            {
                if (_ranks.TryGetValue((word[i], word[i + 1]), out int r) && r < bestRank)
                {
                    bestRank = r;
                    best = (word[i], word[i + 1]);
                }
            }
            if (best is null) break;
            var (first, second) = best.Value;
            var next = new List<string>();
            for (int i = 0; i < word.Count;)
            {
                if (i < word.Count - 1 && word[i] == first && word[i + 1] == second)
                {
                    next.Add(first + second);
                    i += 2;
                }
                else
                {
                    next.Add(word[i]);
                    i++;
                }
            }
            word = next;
        }
        return word;
    }
}
