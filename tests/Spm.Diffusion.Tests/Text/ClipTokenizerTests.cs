using System.Collections.Concurrent;
using Spm.Core;
using Spm.Diffusion.Text;
using Spm.Tests.Common;

namespace Spm.Diffusion.Tests.Text;

[TestFixture]
public class ClipTokenizerTests
{
    private static string SharedClip => Path.Combine(TestPaths.Shared, "clip-tokenizer");

    private static ClipTokenizer _tok = null!;
    private static ReferenceClipBpe _ref = null!;

    [OneTimeSetUp]
    public void LoadOnce()
    {
        _tok = ClipTokenizer.Load(SharedClip);
        _ref = new ReferenceClipBpe(SharedClip);
    }

    public static readonly string[] Prompts =
    [
        "a photo of a cat",
        "A Photo Of A CAT",
        "a painting of a dog in the style of Van Gogh",
        "an astronaut riding a horse on mars, 4k, highly detailed, trending on artstation",
        "Hello, World!!! What's up?",
        "it's a dog's life; they're here, we've been, I'm sure you'll see, he'd go",
        "don't stop 'til you get enough",
        "'quoted' \"double\" `back` ''",
        "1234567890 3.14159 -42 +7 1,000,000",
        "in 2024, the year of the 12th anniversary",
        "café naïve résumé façade jalapeño",
        "Ångström über straße Œuvre ÆTHER",
        "東京タワーの夜景",
        "一只可爱的猫",
        "서울의 밤 풍경",
        "Привет, мир! Москва ночью",
        "Ελληνικά γράμματα",
        "مرحبا بالعالم",
        "नमस्ते दुनिया",
        "🐱 cat 🎉🎉 party 👍🏽",
        "emoji❤️mixed🔥text",
        "   lots    of\t\twhitespace \n\n everywhere   ",
        "punctuation... !!! ??? ;;; --- ___ *** ### @@@",
        "<|startoftext|>special tokens inside<|endoftext|> text",
        "mixed CaSe WoRdS and ALLCAPS and lowercase",
        "e-mail: someone@example.com, url https://example.org/path?q=1&x=2",
        "(masterpiece:1.2), [best quality], {ultra detailed}, <lora:thing:0.8>",
        "$100 €50 £20 ¥1000 ₹500 % ^ ~",
        "snake_case camelCase kebab-case PascalCase",
        "a b c d e f g h i j k l m n o p q r s t u v w x y z",
        "supercalifragilisticexpialidocious antidisestablishmentarianism",
        "Ⅻ ½ ² ³ ① numbers of other kinds",
        "tab\tseparated\tvalues and\r\nwindows line ends",
        string.Join(' ', Enumerable.Repeat("a beautiful landscape with mountains and rivers", 12)),
        string.Join(", ", Enumerable.Range(1, 60).Select(i => $"item{i}")),
        "",
        "!",
    ];

    [Test]
    public void MidWordMask_MarksTheTokensTheNextOneContinues()
    {
        // "ttriangle" is "t" + "triangle</w>": the "t" continues into the next token; BOS, EOS and padding never do.
        var ids = _tok.Encode("a ttriangle");
        var mask = _tok.MidWordMask(ids);
        Assert.That(mask, Has.Length.EqualTo(ids.Length));
        var content = _tok.EncodeContent("a ttriangle");
        Assert.That(content.Select(id => _tok.Decode([id])), Is.EqualTo(new[] { "a", "t", "triangle" }));
        Assert.That(mask.Take(5), Is.EqualTo(new[] { false, false, true, false, false }));
        Assert.That(mask.Skip(5), Is.All.False);
        Assert.That(_tok.ContinuesWord(_tok.BosId) || _tok.ContinuesWord(_tok.EosId) || _tok.ContinuesWord(-1), Is.False);
        Assert.That(_tok.MidWordMask(_tok.Encode("a red circle")), Is.All.False, "whole words only");
    }

    [Test]
    public void PhotoOfACat_GivesTheKnownClipIds()
    {
        var ids = _tok.Encode("a photo of a cat");
        Assert.That(ids.Take(7), Is.EqualTo(new[] { 49406, 320, 1125, 539, 320, 2368, 49407 }));
        Assert.That(ids, Has.Length.EqualTo(77));
        Assert.That(ids.Skip(7), Is.All.EqualTo(49407));
        Assert.That((_tok.BosId, _tok.EosId, _tok.PadId, _tok.MaxLength), Is.EqualTo((49406, 49407, 49407, 77)));
    }

    [Test]
    public void FindTruncation_TellsHowManyTokensTheWindowDropsAndFromWhere()
    {
        Assert.That(_tok.FindTruncation("a photo of a cat"), Is.Null);
        // "a photo of a cat" is 5 tokens: 15 copies are exactly the 75 the window keeps, a 16th is cut whole.
        var fits = string.Join(" ", Enumerable.Repeat("a photo of a cat", 15));
        Assert.That(_tok.FindTruncation(fits), Is.Null);
        var cut = _tok.FindTruncation(fits + " in a red hat")!;
        Assert.That((cut.TotalTokens, cut.KeptTokens, cut.DroppedTokens), Is.EqualTo((79, 75, 4)));
        Assert.That(cut.DroppedText, Is.EqualTo("in a red hat"));
        Assert.That(cut.Describe(), Is.EqualTo("the prompt is 79 tokens but the text encoder reads 75: the last 4 token(s) are ignored, from \"in a red hat\"."));
        var huge = _tok.FindTruncation(string.Concat(Enumerable.Repeat("circle ", 300)))!;
        Assert.That(huge.DroppedTokens, Is.EqualTo(225));
        Assert.That(huge.Describe("the negative prompt"), Does.StartWith("the negative prompt is 300 tokens").And.EndWith("circle circle...\"."));
    }

    [Test]
    public void ReferenceOracle_IsTheFullClipMergeTable() => Assert.That(_ref.MergeCount, Is.EqualTo(48894));

    [TestCaseSource(nameof(Prompts))]
    public void Encode_MatchesThePublishedAlgorithm(string prompt)
    {
        var content = _ref.Encode(prompt);
        var expected = new List<int> { 49406 };
        expected.AddRange(content.Take(75));
        expected.Add(49407);
        Assert.That(_tok.EncodeUnpadded(prompt), Is.EqualTo(expected), $"content ids {string.Join(' ', content)}");
        var padded = _tok.Encode(prompt);
        Assert.That(padded, Has.Length.EqualTo(77));
        Assert.That(padded.Take(expected.Count), Is.EqualTo(expected));
        Assert.That(padded.Skip(expected.Count), Is.All.EqualTo(49407));
        Assert.That(_tok.EncodeContent(prompt), Is.EqualTo(content));
    }

    private sealed record HfCase(string Text, int[] Ids);

    [Test]
    public void SixHundredFuzzedPrompts_MatchHuggingFaceTokenizers()
    {
        // Ids from Hugging Face's Rust tokenizers engine configured as CLIPTokenizerFast (see Text/Data/README.md).
        var path = Path.Combine(TestPaths.RepoRoot, "tests", "Spm.Diffusion.Tests", "Text", "Data", "hf-tokenizers-reference.json");
        var cases = System.Text.Json.JsonSerializer.Deserialize<HfCase[]>(File.ReadAllText(path),
            new System.Text.Json.JsonSerializerOptions { PropertyNameCaseInsensitive = true })!;
        Assert.That(cases, Has.Length.EqualTo(600));
        var mismatches = cases.Where(c => !_tok.EncodeContent(c.Text).SequenceEqual(c.Ids)).Select(c => c.Text).ToList();
        Assert.That(mismatches, Is.Empty);
        // The oracle is not vacuous: the set covers long prompts (truncated by Encode) and non-Latin scripts.
        Assert.That(cases.Count(c => c.Ids.Length > 75), Is.GreaterThan(50));
        Assert.That(cases.Count(c => c.Text.Any(ch => ch >= 0x3040 && ch <= 0x9FFF)), Is.GreaterThan(50));
    }

    [Test]
    public void LongPrompt_IsTruncatedTo77KeepingEos()
    {
        var prompt = string.Join(' ', Enumerable.Repeat("a red fox jumps", 40));
        var content = _ref.Encode(prompt);
        Assert.That(content, Has.Count.GreaterThan(150));
        var ids = _tok.Encode(prompt);
        Assert.That(ids, Has.Length.EqualTo(77));
        Assert.That(ids[0], Is.EqualTo(49406));
        Assert.That(ids[76], Is.EqualTo(49407));
        Assert.That(ids[1..76], Is.EqualTo(content.Take(75)));
        Assert.That(_tok.EncodeUnpadded(prompt), Is.EqualTo(ids));
    }

    [Test]
    public void SeventyFiveContentTokens_FitExactly()
    {
        var prompt = string.Join(' ', Enumerable.Repeat("cat", 75));
        var ids = _tok.Encode(prompt);
        Assert.That(ids[1..76], Is.All.EqualTo(2368));
        Assert.That(ids[76], Is.EqualTo(49407));
        Assert.That(_tok.Encode(prompt + " dog")[1..77], Is.EqualTo(ids[1..77]));
    }

    [Test]
    public void SupplementaryPlaneLetters_FormOneWordLikePythonsRegex()
    {
        // U+1D400.. are letters (Lu) outside the BMP; Python's regex keeps them in one [\p{L}]+ run with "x".
        const string word = "x\U0001D400\U0001D401";
        Assert.That(_tok.EncodeContent(word), Is.EqualTo(_ref.EncodeWord(word)));
        // ...and a supplementary digit is a single [\p{N}] token, like an ASCII digit.
        const string digits = "\U0001D7CF\U0001D7D0";
        Assert.That(_tok.EncodeContent(digits), Is.EqualTo(_ref.EncodeWord("\U0001D7CF").Concat(_ref.EncodeWord("\U0001D7D0"))));
    }

    [TestCase("it\u2019s a \u201Cquote\u201D", "it's a \"quote\"")]
    [TestCase("\uFF21\uFF22\uFF23 \uFF11\uFF12\uFF01", "abc 12!")]
    [TestCase("\uFB01ne \uFB02ower", "fine flower")]
    [TestCase("salt &amp; pepper &lt;3 &amp;amp;", "salt & pepper <3 &")]
    [TestCase("a\u0000b\u001Fc\u200Bd\uFEFF", "ab" + "c\u200Bd")]
    [TestCase("line\u2028sep\u3000space", "line sep space")]
    public void CleanupFollowsClipBasicClean(string raw, string equivalent) =>
        Assert.That(_tok.Encode(raw), Is.EqualTo(_tok.Encode(equivalent)));

    [TestCase("ΟΔΟΣ", "οδος")]
    [TestCase("ΣΑΣ ΣΟΦΟΣ.", "σας σοφος.")]
    [TestCase("Σ", "σ")]
    [TestCase("İstanbul", "i\u0307stanbul")]
    [TestCase("MIXED Case", "mixed case")]
    [TestCase("ÅÆŒ ÉÇÑ ПРИВЕТ ΑΒΓΔ ẞ Ǆ", "åæœ éçñ привет αβγδ ß ǆ")]
    public void Lowercasing_IsPythons(string raw, string lower) =>
        Assert.That(ClipTextCleaner.LowerLikePython(raw), Is.EqualTo(lower));

    [Test]
    public void Contractions_AndPunctuationRuns_SplitLikeTheRegex()
    {
        // "'st" matches the contraction "'s" first; "!'s" is one punctuation run then "s".
        Assert.That(ClipPreTokenizer.Split("'stop !'s".AsSpan()).Select(p => "'stop !'s".Substring(p.Offset, p.Length)),
            Is.EqualTo(new[] { "'s", "top", "!'", "s" }));
    }

    [Test]
    public void ModelFolder_UsesItsTokenizerSubfolder()
    {
        var fromModel = ClipTokenizer.Load(TestPaths.TinySd1);
        Assert.That(fromModel.Folder, Is.EqualTo(Path.Combine(TestPaths.TinySd1, "tokenizer")));
        Assert.That(fromModel.Encode("a photo of a cat"), Is.EqualTo(_tok.Encode("a photo of a cat")));
        Assert.That(fromModel.PadId, Is.EqualTo(49407));
    }

    [TestCase("{\"pad_token\": \"!\"}", 0)]
    [TestCase("{\"pad_token\": {\"content\": \"!\", \"lstrip\": false}}", 0)]
    [TestCase("{\"pad_token\": \"<|endoftext|>\"}", 49407)]
    [TestCase("{\"bos_token\": \"<|startoftext|>\"}", 49407)]
    [Category(TestCategories.Slow)]
    public void PadId_ComesFromSpecialTokensMap(string map, int expectedPad)
    {
        var dir = CopyVocab();
        File.WriteAllText(Path.Combine(dir, "special_tokens_map.json"), map);
        var tok = ClipTokenizer.Load(dir);
        Assert.That(tok.PadId, Is.EqualTo(expectedPad));
        var ids = tok.Encode("a photo of a cat");
        Assert.That(ids.Take(7), Is.EqualTo(new[] { 49406, 320, 1125, 539, 320, 2368, 49407 }));
        Assert.That(ids.Skip(7), Is.All.EqualTo(expectedPad));
    }

    [Test]
    public void MissingFolder_IsAClearError()
    {
        var ex = Assert.Throws<SpmInputNotFoundException>(() => ClipTokenizer.Load("/nonexistent/model"));
        Assert.That(ex!.Message, Does.Contain("/nonexistent/model"));
    }

    [Test]
    public void TruncatedVocabulary_IsAFormatErrorNamingTheFile()
    {
        var dir = CopyVocab();
        var vocab = Path.Combine(dir, "vocab.json");
        var bytes = File.ReadAllBytes(vocab);
        File.WriteAllBytes(vocab, bytes[..(bytes.Length / 2)]);
        var ex = Assert.Throws<SpmFormatException>(() => ClipTokenizer.Load(dir));
        Assert.That(ex!.FilePath, Is.EqualTo(vocab));
    }

    [Test]
    public void VocabularyWithoutSpecialTokens_IsAFormatError()
    {
        var dir = TestPaths.NewTempDir();
        File.WriteAllText(Path.Combine(dir, "vocab.json"), "{\"a</w>\": 0, \"b\": 1}");
        File.WriteAllText(Path.Combine(dir, "merges.txt"), "#version: 0.2\n");
        var ex = Assert.Throws<SpmFormatException>(() => ClipTokenizer.Load(dir));
        Assert.That(ex!.Key, Is.EqualTo("<|startoftext|>"));
    }

    [Test]
    public void MalformedMergeLine_IsAFormatErrorNamingTheLine()
    {
        var dir = CopyVocab();
        File.AppendAllText(Path.Combine(dir, "merges.txt"), "\nonlyonetoken\n");
        var ex = Assert.Throws<SpmFormatException>(() => ClipTokenizer.Load(dir));
        Assert.That(ex!.Key, Does.StartWith("line "));
        Assert.That(ex.FilePath, Does.EndWith("merges.txt"));
    }

    [Test]
    public void MergeProducingAnUnknownToken_IsAFormatError()
    {
        var dir = TestPaths.NewTempDir();
        File.WriteAllText(Path.Combine(dir, "vocab.json"),
            "{\"a\": 0, \"b\": 1, \"a</w>\": 2, \"b</w>\": 3, \"<|startoftext|>\": 4, \"<|endoftext|>\": 5}");
        File.WriteAllText(Path.Combine(dir, "merges.txt"), "#version: 0.2\na b</w>\n");
        var ex = Assert.Throws<SpmFormatException>(() => ClipTokenizer.Load(dir));
        Assert.That(ex!.FilePath, Does.EndWith("merges.txt"));
        Assert.That(ex.Message, Does.Contain("ab</w>"));
    }

    [Test]
    public void UnknownPadToken_IsAFormatError()
    {
        var dir = CopyVocab();
        File.WriteAllText(Path.Combine(dir, "special_tokens_map.json"), "{\"pad_token\": \"<pad-not-here>\"}");
        var ex = Assert.Throws<SpmFormatException>(() => ClipTokenizer.Load(dir));
        Assert.That(ex!.Key, Is.EqualTo("pad_token"));
    }

    [Test]
    [Category(TestCategories.Slow)]
    public void ConcurrentEncoding_GivesTheSameIdsAsSequential()
    {
        var tok = ClipTokenizer.Load(SharedClip); // fresh instance: cold caches are where races would show
        var prompts = Prompts.Concat(Enumerable.Range(0, 200).Select(i => $"prompt number {i} with word{i % 17}")).ToArray();
        var expected = prompts.Select(p => _tok.Encode(p)).ToArray();
        var results = new ConcurrentDictionary<int, int[]>();
        Parallel.For(0, prompts.Length * 4, new ParallelOptions { MaxDegreeOfParallelism = 8 }, k =>
        {
            int i = k % prompts.Length;
            var ids = tok.Encode(prompts[i]);
            if (!ids.SequenceEqual(expected[i])) results[i] = ids;
        });
        Assert.That(results, Is.Empty);
    }

    [Test]
    public void Encode_ReturnsAFreshArrayEachTime()
    {
        var a = _tok.Encode("a photo of a dog");
        a[1] = -1;
        Assert.That(_tok.Encode("a photo of a dog")[1], Is.EqualTo(320));
        var u = _tok.EncodeUnpadded("a photo of a dog");
        u[1] = -1;
        Assert.That(_tok.EncodeUnpadded("a photo of a dog")[1], Is.EqualTo(320));
    }

    [Test]
    public void Decode_RoundTripsCleanText() =>
        Assert.That(_tok.Decode(_tok.Encode("a photo of a cat, 4k")), Is.EqualTo("a photo of a cat , 4 k"));

    private static string CopyVocab()
    {
        var dir = TestPaths.NewTempDir();
        File.Copy(Path.Combine(SharedClip, "vocab.json"), Path.Combine(dir, "vocab.json"));
        File.Copy(Path.Combine(SharedClip, "merges.txt"), Path.Combine(dir, "merges.txt"));
        return dir;
    }
}
