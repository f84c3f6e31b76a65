using Spm.Shapes.World;

namespace Spm.Training.Tests.Shapes;

public class ShapeGateDataTests
{
    private static readonly string[] Vocabulary = ["apple", "river", "lamp", "cloud", "violin", "mountain", "paper", "engine"];

    [Test]
    public void SameSeed_SamePrompts_AndAnotherShareChangesThem()
    {
        var a = ShapeGateData.Prompts(300, 7, Vocabulary, synonymShare: 0.3);
        var b = ShapeGateData.Prompts(300, 7, Vocabulary, synonymShare: 0.3);
        Assert.That(a, Is.EqualTo(b));
        Assert.That(ShapeGateData.Prompts(300, 7, Vocabulary), Is.Not.EqualTo(a));
    }

    [Test]
    public void MiningCandidates_HalfGeneratorHalfPhrasingsOfEachConceptAndItsNeighbours_Reproducibly()
    {
        var a = ShapeGateData.MiningCandidates(["circle", "red"], 801, 9, Vocabulary);
        Assert.That(a, Has.Count.EqualTo(801));
        Assert.That(ShapeGateData.MiningCandidates(["circle", "red"], 801, 9, Vocabulary), Is.EqualTo(a));
        // The first part is the generator's own prompts at that seed; 200 per concept follow.
        var generated = ShapeGateData.Prompts(401, 9, Vocabulary);
        Assert.That(a.Take(401), Is.EqualTo(generated));
        var circle = a.Skip(401).Take(200).ToList();
        var red = a.Skip(601).ToList();
        // Half of each concept's share names a near neighbour (no circle drawn as asked) in plurals and typos; a quarter
        // re-phrases the concept itself.
        int NamingCircle(IEnumerable<string> ps) => ps.Count(p => ShapePrompt.Parse(p)?.Shape == ShapeKind.Circle);
        Assert.That(NamingCircle(circle.Take(100)), Is.Zero, "near neighbours of circle never ask for a circle");
        Assert.That(NamingCircle(circle.Skip(150)), Is.GreaterThan(10), "the concept re-phrased");
        Assert.That(red.Take(100).Count(p => ShapePrompt.Parse(p)?.Color == ShapeColor.Red), Is.Zero);
        Assert.That(ShapeGateData.MiningCandidates([], 50, 9, Vocabulary), Is.EqualTo(ShapeGateData.Prompts(50, 9, Vocabulary)));
        Assert.Throws<ArgumentOutOfRangeException>(() => ShapeGateData.MiningCandidates(["circle"], -1, 9, Vocabulary));
    }

    [Test]
    public void WithoutSynonyms_OnlyCanonicalWordsNameTheValues()
    {
        var synonyms = AllSynonyms();
        var prompts = ShapeGateData.Prompts(2000, 3, Vocabulary);
        var found = prompts.Where(p => synonyms.Any(w => ContainsWord(p, w))).ToList();
        Assert.That(found, Is.Empty, "synonyms in the canonical gate data: " + string.Join(" | ", found.Take(5)));
    }

    [Test]
    public void WithSynonyms_EverySynonymOfCircleRedAndStripedAppears_AndParsesToItsValue()
    {
        var prompts = ShapeGateData.Prompts(3000, 5, Vocabulary, synonymShare: 0.3);
        foreach (var word in new[] { "disc", "round shape", "crimson", "scarlet", "stripy", "banded", "bands" })
            Assert.That(prompts.Any(p => ContainsWord(p.ToLowerInvariant(), word)), Is.True, $"no gate prompt uses '{word}'");
        // The synonym-only training captions read back as what they ask for.
        var captions = prompts.Where(p => p.Contains("crimson disc", StringComparison.OrdinalIgnoreCase)).ToList();
        Assert.That(captions, Is.Not.Empty);
        foreach (var c in captions)
            Assert.That(ShapePrompt.Parse(c), Is.Not.Null.And.Property(nameof(ShapePrompt.Shape)).EqualTo(ShapeKind.Circle), c);
    }

    [Test]
    public void WithSynonyms_NoHeldOutTemplateOrWordCombination()
    {
        var prompts = ShapeGateData.Prompts(4000, 9, Vocabulary, synonymShare: 0.5);
        var thirdShapes = ShapeLexicon.ShapeWords.Values.Select(w => w[2]).ToArray();
        var thirdColours = ShapeLexicon.ColorWords.Values.Select(w => w[2]).ToArray();
        foreach (var p in prompts)
        {
            var lower = p.ToLowerInvariant();
            bool heldOutPair = thirdShapes.Any(s => ContainsWord(lower, s)) && thirdColours.Any(c => ContainsWord(lower, c));
            Assert.That(heldOutPair, Is.False, $"held-out word combination in a gate prompt: {p}");
            Assert.That(lower, Does.Not.StartWith("a drawing of"), p);
        }
    }

    [Test]
    public void ShareOutsideZeroToOne_IsRefused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => ShapeGateData.Prompts(10, 1, Vocabulary, synonymShare: 1.5));
        Assert.Throws<ArgumentOutOfRangeException>(() => ShapeGateData.Prompts(10, 1, Vocabulary, synonymShare: double.NaN));
    }

    private static string[] AllSynonyms()
        => ShapeLexicon.ShapeWords.Values.SelectMany(w => w.Skip(1))
            .Concat(ShapeLexicon.ColorWords.Values.SelectMany(w => w.Skip(1)))
            .Concat(ShapeLexicon.PatternWords.Values.SelectMany(w => w.Skip(1)))
            .Concat(["bands", "spots", "polka dots"])
            .ToArray();

    private static bool ContainsWord(string text, string word)
        => System.Text.RegularExpressions.Regex.IsMatch(text, $@"(?<![a-z-]){System.Text.RegularExpressions.Regex.Escape(word)}(?![a-z-])", System.Text.RegularExpressions.RegexOptions.IgnoreCase);
}
