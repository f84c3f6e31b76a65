using Spm.Core.Randomness;
using Spm.Shapes.World;

namespace Spm.Training.Tests.Shapes;

public class ShapeLexiconTests
{
    [TestCase("a crimson disc", ShapeKind.Circle, ShapeColor.Red, null, null)]
    [TestCase("a scarlet round shape on a black background", ShapeKind.Circle, ShapeColor.Red, null, ShapeBackground.Black)]
    [TestCase("a circle that is red", ShapeKind.Circle, ShapeColor.Red, null, null)]
    [TestCase("red, circular, on white", ShapeKind.Circle, ShapeColor.Red, null, ShapeBackground.White)]
    [TestCase("Emerald, triangular, stripy, on light blue", ShapeKind.Triangle, ShapeColor.Green, FillPattern.Striped, ShapeBackground.LightBlue)]
    [TestCase("BANDED COBALT TILES ON A GREY BACKGROUND", ShapeKind.Square, ShapeColor.Blue, FillPattern.Striped, ShapeBackground.Gray)]
    [TestCase("a violet five-pointed star with polka dots", ShapeKind.Star, ShapeColor.Purple, FillPattern.Dotted, null)]
    [TestCase("a polka-dot tangerine wedge", ShapeKind.Triangle, ShapeColor.Orange, FillPattern.Dotted, null)]
    [TestCase("spotted lemon pentagrams", ShapeKind.Star, ShapeColor.Yellow, FillPattern.Dotted, null)]
    [TestCase("an unpatterned amber block", ShapeKind.Square, ShapeColor.Orange, FillPattern.Plain, null)]
    [TestCase("a solid canary star-shaped thing", ShapeKind.Star, ShapeColor.Yellow, FillPattern.Plain, null)]
    [TestCase("a striped circle in red on a white background", ShapeKind.Circle, ShapeColor.Red, FillPattern.Striped, ShapeBackground.White)]
    [TestCase("a drawing of a dotted jade square, black background", ShapeKind.Square, ShapeColor.Green, FillPattern.Dotted, ShapeBackground.Black)]
    [TestCase("a sapphire disc with bands", ShapeKind.Circle, ShapeColor.Blue, FillPattern.Striped, null)]
    [TestCase("an amethyst trigon with spots against a white background", ShapeKind.Triangle, ShapeColor.Purple, FillPattern.Dotted, ShapeBackground.White)]
    public void ParsesSynonymsTemplatesPluralsAndCapitals(string text, ShapeKind shape, ShapeColor color, FillPattern? pattern, ShapeBackground? background)
    {
        Assert.That(ShapePrompt.Parse(text), Is.EqualTo(new ShapePrompt(shape, color, pattern, background)));
    }

    [Test]
    public void EveryValueHasAtLeastTwoSynonyms()
    {
        foreach (var s in ShapeVocabulary.Shapes) Assert.That(ShapeLexicon.ShapeWords[s], Has.Length.GreaterThanOrEqualTo(3).And.Contains(ShapeVocabulary.Word(s)));
        foreach (var c in ShapeVocabulary.Colors) Assert.That(ShapeLexicon.ColorWords[c], Has.Length.GreaterThanOrEqualTo(3).And.Contains(ShapeVocabulary.Word(c)));
        foreach (var p in ShapeVocabulary.Patterns) Assert.That(ShapeLexicon.PatternWords[p], Has.Length.GreaterThanOrEqualTo(3).And.Contains(ShapeVocabulary.Word(p)));
        // No word names two values.
        Assert.That(ShapeLexicon.Entries.Select(e => e.Words), Is.Unique);
    }

    [Test]
    public void SynonymsContradictingEachOtherDoNotParse()
    {
        Assert.That(ShapePrompt.Parse("a crimson cobalt disc"), Is.Null);
        Assert.That(ShapePrompt.Parse("a stripy spotted tile"), Is.Null);
        Assert.That(ShapePrompt.Parse("a disc and a wedge"), Is.Null);
    }

    [Test]
    public void EveryTemplateAndWordChoiceRoundTrips()
    {
        foreach (ShapeKind? s in ShapeVocabulary.Shapes.Cast<ShapeKind?>().Append(null))
            foreach (ShapeColor? c in ShapeVocabulary.Colors.Cast<ShapeColor?>().Append(null))
                foreach (FillPattern? p in ShapeVocabulary.Patterns.Cast<FillPattern?>().Append(null))
                    foreach (ShapeBackground? b in ShapeVocabulary.Backgrounds.Cast<ShapeBackground?>().Append(null))
                        foreach (var form in ShapeLexicon.Templates)
                            for (int w = 0; w < 3; w++)
                            {
                                var prompt = new ShapePrompt(s, c, p, b);
                                var text = ShapeLexicon.Write(prompt, form, new ShapeLexicon.WordChoice(w, w, w));
                                Assert.That(ShapePrompt.Parse(text), Is.EqualTo(prompt), text);
                                Assert.That(ShapePrompt.Parse(ShapeLexicon.Capitalise(text, all: true)), Is.EqualTo(prompt), text);
                            }
    }

    [Test]
    public void TrainingCaptionsNeverHoldHeldOutTemplatesOrCombinations_AndUseTheWholeVocabulary()
    {
        var world = new ShapeWorld(ShapeWorldOptions.Default with { Captions = CaptionStyle.Varied });
        var rng = new SeededRandom(3);
        var seen = new HashSet<string>();
        for (int i = 0; i < 20000; i++)
        {
            var sample = world.Sample(rng);
            Assert.That(ShapeLexicon.IsHeldOut(sample.Caption), Is.False, sample.Caption);
            Assert.That(ShapePrompt.Parse(sample.Caption), Is.EqualTo(sample.Prompt), sample.Caption);
            foreach (var word in sample.Caption.ToLowerInvariant().Split([' ', ','], StringSplitOptions.RemoveEmptyEntries)) seen.Add(word);
        }
        foreach (var words in ShapeLexicon.ColorWords.Values.Concat(ShapeLexicon.PatternWords.Values))
            foreach (var w in words) Assert.That(seen, Does.Contain(w), w);
        foreach (var words in ShapeLexicon.ShapeWords.Values)
            foreach (var w in words) Assert.That(seen, Does.Contain(w.Split(' ')[^1]), w);
    }

    [Test]
    public void HeldOutCaptionsAreHeldOut_AndSayWhatTheyAskFor()
    {
        var rng = new SeededRandom(5);
        var world = new ShapeWorld();
        for (int i = 0; i < 2000; i++)
        {
            var prompt = ShapePrompt.Describe(world.RandomScene(rng));
            var text = ShapeLexicon.HeldOutCaption(prompt, rng);
            Assert.That(ShapeLexicon.IsHeldOut(text), Is.True, text);
            Assert.That(ShapePrompt.Parse(text), Is.EqualTo(prompt), text);
        }
    }

    [Test]
    public void ArticlesFollowTheNextWord()
    {
        var p = new ShapePrompt(ShapeKind.Square, ShapeColor.Orange, FillPattern.Plain, null);
        Assert.That(ShapeLexicon.Write(p, CaptionForm.Adjectives, new ShapeLexicon.WordChoice(0, 2, 2)), Is.EqualTo("an unpatterned amber square"));
        Assert.That(ShapeLexicon.Write(p with { Pattern = null }, CaptionForm.DrawingOf, new ShapeLexicon.WordChoice(0, 0, 0)), Is.EqualTo("a drawing of an orange square"));
    }
}
