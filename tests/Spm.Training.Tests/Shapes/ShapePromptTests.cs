using Spm.Core.Randomness;
using Spm.Shapes.World;

namespace Spm.Training.Tests.Shapes;

public class ShapePromptTests
{
    [TestCase("a red circle on a white background", ShapeKind.Circle, ShapeColor.Red, null, ShapeBackground.White)]
    [TestCase("a striped blue star", ShapeKind.Star, ShapeColor.Blue, FillPattern.Striped, null)]
    [TestCase("a yellow square", ShapeKind.Square, ShapeColor.Yellow, null, null)]
    [TestCase("An orange triangle with dots on a light blue background", ShapeKind.Triangle, ShapeColor.Orange, FillPattern.Dotted, ShapeBackground.LightBlue)]
    [TestCase("a plain purple circle on a grey background", ShapeKind.Circle, ShapeColor.Purple, FillPattern.Plain, ShapeBackground.Gray)]
    public void ParsesHandWrittenCaptions(string text, ShapeKind shape, ShapeColor color, FillPattern? pattern, ShapeBackground? background)
    {
        Assert.That(ShapePrompt.Parse(text), Is.EqualTo(new ShapePrompt(shape, color, pattern, background)));
    }

    [Test]
    public void CanonicalTextsReadWellAndRoundTrip()
    {
        Assert.That(new ShapePrompt(ShapeKind.Circle, ShapeColor.Red, null, ShapeBackground.White).Text, Is.EqualTo("a red circle on a white background"));
        Assert.That(new ShapePrompt(ShapeKind.Star, ShapeColor.Blue, FillPattern.Striped, null).Text, Is.EqualTo("a striped blue star"));
        Assert.That(new ShapePrompt(ShapeKind.Square, ShapeColor.Orange, null, null).Text, Is.EqualTo("an orange square"));
        Assert.That(new ShapePrompt(null, ShapeColor.Red, null, null).Text, Is.EqualTo("a red shape"));
        Assert.That(new ShapePrompt(ShapeKind.Star, ShapeColor.Green, FillPattern.Dotted, ShapeBackground.Black).ToText(CaptionTemplate.WithNoun),
            Is.EqualTo("a green star with dots on a black background"));
        foreach (ShapeKind? s in ShapeVocabulary.Shapes.Cast<ShapeKind?>().Append(null))
            foreach (ShapeColor? c in ShapeVocabulary.Colors.Cast<ShapeColor?>().Append(null))
                foreach (FillPattern? p in ShapeVocabulary.Patterns.Cast<FillPattern?>().Append(null))
                    foreach (ShapeBackground? b in ShapeVocabulary.Backgrounds.Cast<ShapeBackground?>().Append(null))
                        foreach (var t in Enum.GetValues<CaptionTemplate>())
                        {
                            var prompt = new ShapePrompt(s, c, p, b);
                            Assert.That(ShapePrompt.Parse(prompt.ToText(t)), Is.EqualTo(prompt), prompt.ToText(t));
                        }
    }

    [Test]
    public void ContradictoryCaptionsDoNotParse()
    {
        Assert.That(ShapePrompt.Parse("a red blue circle"), Is.Null);
        Assert.That(ShapePrompt.Parse("a striped dotted circle"), Is.Null);
        Assert.That(ShapePrompt.Parse("a circle and a square"), Is.Null);
    }

    [Test]
    public void SampledCaptionsDescribeTheirScenesAndFollowTheRates()
    {
        var world = new ShapeWorld();
        var rng = new SeededRandom(9);
        int withBackground = 0, withPattern = 0, withNoun = 0;
        const int n = 4000;
        for (int i = 0; i < n; i++)
        {
            var sample = world.Sample(rng);
            Assert.That(ShapePrompt.Parse(sample.Caption), Is.EqualTo(sample.Prompt), sample.Caption);
            Assert.That(sample.Prompt.IsSatisfiedBy(sample.Scene), sample.Caption);
            Assert.That(sample.Prompt.Shape, Is.EqualTo(sample.Scene.Shape));
            if (sample.Prompt.Background is not null) withBackground++;
            if (sample.Prompt.Pattern is not null) withPattern++;
            if (sample.Caption.Contains(" with ")) withNoun++;
        }
        Assert.That(withBackground / (double)n, Is.EqualTo(0.5).Within(0.03));
        Assert.That(withPattern / (double)n, Is.EqualTo(0.8).Within(0.03));
        // Nouns only for named stripes/dots: 0.2 x 0.8 x 2/3.
        Assert.That(withNoun / (double)n, Is.EqualTo(0.2 * 0.8 * 2 / 3).Within(0.02));
    }

    [Test]
    public void ScenesForAPromptHonourItAndVaryTheRest()
    {
        var world = new ShapeWorld();
        var rng = new SeededRandom(4);
        var prompt = new ShapePrompt(ShapeKind.Circle, null, FillPattern.Striped, null);
        var colors = new HashSet<ShapeColor>();
        for (int i = 0; i < 200; i++)
        {
            var scene = world.RandomScene(prompt, rng);
            Assert.That(prompt.IsSatisfiedBy(scene));
            colors.Add(scene.Color);
        }
        Assert.That(colors, Has.Count.EqualTo(6));
    }
}
