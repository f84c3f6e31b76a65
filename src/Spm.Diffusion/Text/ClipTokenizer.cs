using System.Collections.Concurrent;
using System.Text.Json;
using Microsoft.ML.Tokenizers;
using Spm.Core;

namespace Spm.Diffusion.Text;

/// <summary>
/// The CLIP BPE tokenizer of Stable Diffusion's text encoder: CLIP text cleanup and pre-tokenization, byte-level
/// BPE with the <c>&lt;/w&gt;</c> end-of-word suffix (Microsoft.ML.Tokenizers is the BPE engine), BOS/EOS framing,
/// truncation to <see cref="MaxLength"/> keeping EOS, and padding with the folder's pad token.
/// Thread-safe; results are cached per prompt.
/// </summary>
public sealed class ClipTokenizer
{
    /// <summary>CLIP's context length, the usual value of <see cref="MaxLength"/>.</summary>
    public const int DefaultMaxLength = 77;

    private const string StartToken = "<|startoftext|>";
    private const string EndToken = "<|endoftext|>";
    private const int CacheCapacity = 4096;
    private const int MaxCachedPromptChars = 4096;

    private readonly BpeTokenizer _bpe;
    private readonly ConcurrentDictionary<string, int[]> _cache = new(StringComparer.Ordinal);

    private readonly Dictionary<int, string> _idToToken;

    private ClipTokenizer(BpeTokenizer bpe, Dictionary<int, string> idToToken, int bosId, int eosId, int padId, int maxLength, string folder)
    {
        _bpe = bpe;
        _idToToken = idToToken;
        BosId = bosId;
        EosId = eosId;
        PadId = padId;
        MaxLength = maxLength;
        Folder = folder;
    }

    /// <summary>Id of &lt;|startoftext|&gt; (49406 in CLIP).</summary>
    public int BosId { get; }

    /// <summary>Id of &lt;|endoftext|&gt; (49407 in CLIP).</summary>
    public int EosId { get; }

    /// <summary>Padding id: 49407 for SD 1.x, 0 ("!") for SD 2.x, read from special_tokens_map.json.</summary>
    public int PadId { get; }

    /// <summary>Length of every <see cref="Encode"/> result, BOS and EOS included (model_max_length, 77 for CLIP).</summary>
    public int MaxLength { get; }

    /// <summary>The folder the vocabulary was loaded from.</summary>
    public string Folder { get; }

    /// <summary>Number of entries in the vocabulary.</summary>
    public int VocabularySize => _bpe.Vocabulary.Count;

    /// <summary>
    /// Loads vocab.json and merges.txt from <paramref name="folder"/>, which is either a tokenizer folder or a
    /// diffusers model folder with a <c>tokenizer/</c> subfolder. special_tokens_map.json (pad token) and
    /// tokenizer_config.json (model_max_length) are optional.
    /// </summary>
    /// <exception cref="SpmException">The folder or a required file is missing.</exception>
    /// <exception cref="SpmFormatException">A file is malformed or lacks CLIP's special tokens.</exception>
    public static ClipTokenizer Load(string folder)
    {
        ArgumentNullException.ThrowIfNull(folder);
        var dir = ResolveFolder(folder);
        var vocabPath = Path.Combine(dir, "vocab.json");
        var mergesPath = Path.Combine(dir, "merges.txt");

        var vocab = ReadVocabulary(vocabPath);
        int bos = RequireToken(vocab, StartToken, vocabPath);
        int eos = RequireToken(vocab, EndToken, vocabPath);
        var merges = ReadMerges(mergesPath);

        int maxLength = ReadMaxLength(Path.Combine(dir, "tokenizer_config.json"));
        int pad = ReadPadId(Path.Combine(dir, "special_tokens_map.json"), vocab, eos);

        var specials = new Dictionary<string, int> { [StartToken] = bos, [EndToken] = eos };
        var options = new BpeOptions(vocab)
        {
            Merges = merges,
            SpecialTokens = specials,
            PreTokenizer = new ClipPreTokenizer(),
            Normalizer = ClipNormalizer.Instance,
            EndOfWordSuffix = "</w>",
            ByteLevel = true,
            UnknownToken = EndToken,
        };
        BpeTokenizer bpe;
        try
        {
            bpe = BpeTokenizer.Create(options);
        }
        catch (Exception ex) when (ex is ArgumentException or InvalidOperationException or FormatException)
        {
            throw new SpmFormatException(mergesPath, null, $"the BPE vocabulary/merges are inconsistent: {ex.Message}", ex);
        }
        var idToToken = new Dictionary<int, string>(vocab.Count);
        foreach (var (token, id) in vocab) idToToken[id] = token;
        return new ClipTokenizer(bpe, idToToken, bos, eos, pad, maxLength, dir);
    }

    /// <summary>
    /// Finds a tokenizer folder: <paramref name="modelFolder"/> (or its tokenizer/ subfolder) when given, else the
    /// shared CLIP vocabulary at <c>../shared/clip-tokenizer</c> relative to the working directory or to any parent
    /// of the application folder. Returns null when nothing is found.
    /// </summary>
    public static string? FindFolder(string? modelFolder = null)
    {
        if (modelFolder is not null) return ResolveFolder(modelFolder);
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, "..", "shared", "clip-tokenizer");
                if (File.Exists(Path.Combine(candidate, "vocab.json"))) return Path.GetFullPath(candidate);
            }
        }
        return null;
    }

    /// <summary>
    /// Token ids of <paramref name="text"/>: BOS, the BPE ids truncated so that EOS still fits, EOS, then
    /// <see cref="PadId"/> up to <see cref="MaxLength"/>. Always returns a new array of length <see cref="MaxLength"/>.
    /// </summary>
    public int[] Encode(string text)
    {
        var framed = Framed(text);
        var ids = new int[MaxLength];
        framed.CopyTo(ids, 0);
        ids.AsSpan(framed.Length).Fill(PadId);
        return ids;
    }

    /// <summary>
    /// Like <see cref="Encode"/> without the padding: BOS, the (truncated) BPE ids, EOS. Used for the gate's token
    /// sets, which drop BOS, EOS and padding themselves.
    /// </summary>
    public int[] EncodeUnpadded(string text) => (int[])Framed(text).Clone();

    /// <summary>The BPE ids of <paramref name="text"/> without BOS/EOS, untruncated.</summary>
    public IReadOnlyList<int> EncodeContent(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return _bpe.EncodeToIds(text);
    }

    /// <summary>
    /// What <see cref="Encode"/> cuts from <paramref name="text"/> to fit the window (BOS, <see cref="MaxLength"/> - 2
    /// tokens, EOS), or null when the whole prompt fits.
    /// </summary>
    public PromptTruncation? FindTruncation(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var content = _bpe.EncodeToIds(text);
        int keep = MaxLength - 2;
        if (content.Count <= keep) return null;
        return new PromptTruncation(text, content.Count, keep, Decode(content.Skip(keep)));
    }

    /// <summary>
    /// Whether token <paramref name="id"/> continues into the next token of the same word: a vocabulary entry without
    /// CLIP's word-end mark <c>&lt;/w&gt;</c> ("t" in "ttriangle" = "t" + "triangle&lt;/w&gt;"). False for BOS, EOS,
    /// padding and unknown ids.
    /// </summary>
    public bool ContinuesWord(int id) =>
        id != BosId && id != EosId && id != PadId && _idToToken.TryGetValue(id, out var token) && !token.EndsWith("</w>", StringComparison.Ordinal);

    /// <summary>Per position of <paramref name="ids"/>, <see cref="ContinuesWord"/> (the mask <see cref="Spm.Core.Gating.GateText.MidWord"/> holds).</summary>
    public bool[] MidWordMask(IReadOnlyList<int> ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var mask = new bool[ids.Count];
        for (int i = 0; i < mask.Length; i++) mask[i] = ContinuesWord(ids[i]);
        return mask;
    }

    /// <summary>Decodes ids back to cleaned text as CLIP does (BOS/EOS/padding dropped, word ends become spaces).</summary>
    public string Decode(IEnumerable<int> ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        // CLIP's decode: concatenate token strings, map byte-level characters back to bytes, UTF-8 decode
        // (invalid sequences become U+FFFD), then every "</w>" is a word end.
        var bytes = new List<byte>();
        foreach (int id in ids)
        {
            if (id == BosId || id == EosId || id == PadId || !_idToToken.TryGetValue(id, out var token)) continue;
            foreach (char c in token)
                if (c < ByteDecoder.Length && ByteDecoder[c] >= 0) bytes.Add((byte)ByteDecoder[c]);
        }
        return System.Text.Encoding.UTF8.GetString(bytes.ToArray()).Replace("</w>", " ").Trim();
    }

    // Inverse of GPT-2/CLIP bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68 bytes
    // were shifted to U+0100..U+0143 in byte order.
    private static readonly int[] ByteDecoder = BuildByteDecoder();

    private static int[] BuildByteDecoder()
    {
        var decoder = new int[256 + 68];
        Array.Fill(decoder, -1);
        int shifted = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is (>= '!' and <= '~') or (>= 0xA1 and <= 0xAC) or (>= 0xAE and <= 0xFF);
            decoder[printable ? b : 256 + shifted++] = b;
        }
        return decoder;
    }

    private int[] Framed(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (_cache.TryGetValue(text, out var cached)) return cached;

        var content = _bpe.EncodeToIds(text);
        int keep = Math.Min(content.Count, MaxLength - 2);
        var framed = new int[keep + 2];
        framed[0] = BosId;
        for (int i = 0; i < keep; i++) framed[i + 1] = content[i];
        framed[keep + 1] = EosId;

        // Bounded cache: prompts repeat across a batch and between generations, but an app must not grow forever
        // (entry count and key size are both capped).
        if (text.Length <= MaxCachedPromptChars)
        {
            if (_cache.Count >= CacheCapacity) _cache.Clear();
            _cache.TryAdd(text, framed);
        }
        return framed;
    }

    private static string ResolveFolder(string folder)
    {
        if (File.Exists(Path.Combine(folder, "vocab.json"))) return Path.GetFullPath(folder);
        var sub = Path.Combine(folder, "tokenizer");
        if (File.Exists(Path.Combine(sub, "vocab.json"))) return Path.GetFullPath(sub);
        if (!Directory.Exists(folder)) throw new SpmInputNotFoundException(folder, "tokenizer or model folder");
        throw new SpmException($"No vocab.json in '{folder}' or '{sub}': not a CLIP tokenizer or model folder.");
    }

    private static Dictionary<string, int> ReadVocabulary(string path)
    {
        if (!File.Exists(path)) throw new SpmException($"Tokenizer vocabulary '{path}' is missing.");
        CheckSize(path);
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        try
        {
            using var stream = File.OpenRead(path);
            using var doc = JsonDocument.Parse(stream);
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new SpmFormatException(path, null, "expected a JSON object mapping tokens to ids");
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                if (prop.Value.ValueKind != JsonValueKind.Number || !prop.Value.TryGetInt32(out int id) || id < 0)
                    throw new SpmFormatException(path, prop.Name, "token id is not a non-negative 32-bit integer");
                vocab[prop.Name] = id;
            }
        }
        catch (JsonException ex)
        {
            throw new SpmFormatException(path, null, $"invalid JSON: {ex.Message}", ex);
        }
        if (vocab.Count == 0) throw new SpmFormatException(path, null, "the vocabulary is empty");
        return vocab;
    }

    private static List<string> ReadMerges(string path)
    {
        if (!File.Exists(path)) throw new SpmException($"Tokenizer merges '{path}' is missing.");
        CheckSize(path);
        var merges = new List<string>();
        int lineNo = 0;
        foreach (var raw in File.ReadLines(path))
        {
            lineNo++;
            // The first line of CLIP's merges.txt is a "#version: ..." header.
            if (lineNo == 1 && raw.StartsWith("#version", StringComparison.Ordinal)) continue;
            if (raw.Length == 0) continue;
            int space = raw.IndexOf(' ');
            if (space <= 0 || space == raw.Length - 1 || raw.IndexOf(' ', space + 1) >= 0)
                throw new SpmFormatException(path, $"line {lineNo}", "a merge must be two tokens separated by one space");
            merges.Add(raw);
        }
        return merges;
    }

    private static int RequireToken(Dictionary<string, int> vocab, string token, string path) =>
        vocab.TryGetValue(token, out int id) ? id : throw new SpmFormatException(path, token, "CLIP special token missing from the vocabulary");

    private static int ReadMaxLength(string path)
    {
        if (!File.Exists(path)) return DefaultMaxLength;
        using var doc = ParseJson(path);
        if (!doc.RootElement.TryGetProperty("model_max_length", out var v)) return DefaultMaxLength;
        // Some exports write a huge sentinel (1e30) meaning "no limit"; CLIP's text encoder is still 77 positions.
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetDouble(out double d) || d < 2)
            throw new SpmFormatException(path, "model_max_length", "must be a number >= 2");
        return d > 4096 ? DefaultMaxLength : (int)d;
    }

    private static int ReadPadId(string path, Dictionary<string, int> vocab, int eosId)
    {
        // CLIP's own default pad is <|endoftext|>; SD 2.x tokenizers declare "!" here.
        if (!File.Exists(path)) return eosId;
        using var doc = ParseJson(path);
        if (!doc.RootElement.TryGetProperty("pad_token", out var pad) || pad.ValueKind == JsonValueKind.Null) return eosId;
        string? token = pad.ValueKind switch
        {
            JsonValueKind.String => pad.GetString(),
            JsonValueKind.Object when pad.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String => c.GetString(),
            _ => null,
        };
        if (token is null) throw new SpmFormatException(path, "pad_token", "expected a string or an object with a string 'content'");
        return vocab.TryGetValue(token, out int id) ? id
            : throw new SpmFormatException(path, "pad_token", $"pad token '{token}' is not in the vocabulary");
    }

    // Tokenizer files come from strangers: CLIP's are ~2 MB, so refuse anything absurd before reading it.
    private const long MaxFileBytes = 64L << 20;

    private static void CheckSize(string path)
    {
        long size = new FileInfo(path).Length;
        if (size > MaxFileBytes) throw new SpmFormatException(path, null, $"file is {size} bytes; tokenizer files larger than {MaxFileBytes} bytes are refused");
    }

    private static JsonDocument ParseJson(string path)
    {
        CheckSize(path);
        try
        {
            return JsonDocument.Parse(File.ReadAllBytes(path));
        }
        catch (JsonException ex)
        {
            throw new SpmFormatException(path, null, $"invalid JSON: {ex.Message}", ex);
        }
    }
}
