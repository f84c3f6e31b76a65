using Spm.Shapes.Evaluation;
using Spm.Shapes.World;

namespace Spm.Training.Tests.Evaluation;

public class RetainAccuracyTests
{
    private static readonly ShapeFeatures NoFeatures = new(0, 0, 0, 0, 0, 0, 0, 0);

    private static ShapeJudgement Read(ShapeKind shape, ShapeColor color, FillPattern pattern, ShapeBackground background, bool found = true) =>
        new(found, new(shape, 1), new(color, 1), new(pattern, 1), new(background, 1), NoFeatures);

    [Test]
    public void InDomainAndCrossDomainRetainAreCountedOnHandMadeJudgements()
    {
        var circle = EvalConcept.Of(ShapeKind.Circle);
        (ShapePrompt, ShapeJudgement)[] judged =
        [
            // Named square, read square; colour right, background right: IRA 1/1, CRA 2/2.
            (new(ShapeKind.Square, ShapeColor.Red, null, ShapeBackground.White), Read(ShapeKind.Square, ShapeColor.Red, FillPattern.Plain, ShapeBackground.White)),
            // Named star, read circle (the eraser leaked); colour wrong, pattern right: IRA 0, CRA 1/2.
            (new(ShapeKind.Star, ShapeColor.Blue, FillPattern.Striped, null), Read(ShapeKind.Circle, ShapeColor.Green, FillPattern.Striped, ShapeBackground.Black)),
            // Named triangle, nothing found: every named attribute wrong but the background (read from the border): IRA 0, CRA 1/2.
            (new(ShapeKind.Triangle, ShapeColor.Yellow, null, ShapeBackground.Gray), Read(ShapeKind.Triangle, ShapeColor.Yellow, FillPattern.Plain, ShapeBackground.Gray, found: false)),
            // Shape open: not in IRA; colour right: CRA 1/1.
            (new(null, ShapeColor.Purple, null, null), Read(ShapeKind.Square, ShapeColor.Purple, FillPattern.Plain, ShapeBackground.White)),
        ];
        Assert.That(RetainAccuracy.InDomain(circle, judged), Is.EqualTo(1 / 3.0).Within(1e-12));
        Assert.That(RetainAccuracy.CrossDomain(circle, judged), Is.EqualTo(5 / 7.0).Within(1e-12));
        // Seen from the colour: IRA over the four colours (right, wrong, wrong (no object), right); CRA over the named shapes,
        // pattern and backgrounds (2/2, 1/2, 1/2, none).
        var red = EvalConcept.Of(ShapeColor.Red);
        Assert.That(RetainAccuracy.InDomain(red, judged), Is.EqualTo(0.5).Within(1e-12));
        Assert.That(RetainAccuracy.CrossDomain(red, judged), Is.EqualTo(4 / 6.0).Within(1e-12));
        Assert.That(RetainAccuracy.InDomain(EvalConcept.Of(FillPattern.Dotted), judged.Take(1)), Is.NaN);
    }

    [Test]
    public void UnlearningAccuracyIsOneMinusDetection()
    {
        var row = new EvalRow("circle", "circle", "erased", 200, 0.015, 200, 0.6, 0.99, 40);
        Assert.That(row.UnlearningAccuracy, Is.EqualTo(0.985).Within(1e-12));
    }

    [Test]
    public void WordingsKeepIntentsAndSeeds_AndHeldOutTextsAreHeldOut()
    {
        var circle = EvalConcept.Of(ShapeKind.Circle);
        var canonical = EvalPromptSets.Target(circle, 50, 3);
        var synonyms = EvalPromptSets.Target(circle, 50, 3, PromptWording.Synonyms);
        var heldOut = EvalPromptSets.Target(circle, 50, 3, PromptWording.HeldOut);
        Assert.That(synonyms.Select(p => (p.Prompt, p.Seed)), Is.EqualTo(canonical.Select(p => (p.Prompt, p.Seed))));
        Assert.That(heldOut.Select(p => (p.Prompt, p.Seed)), Is.EqualTo(canonical.Select(p => (p.Prompt, p.Seed))));
        foreach (var p in synonyms) Assert.That(ShapePrompt.Parse(p.Text), Is.EqualTo(p.Prompt), p.Text);
        foreach (var p in heldOut)
        {
            Assert.That(ShapeLexicon.IsHeldOut(p.Text), p.Text);
            Assert.That(ShapePrompt.Parse(p.Text), Is.EqualTo(p.Prompt), p.Text);
        }
        // Synonym wording never uses the canonical word of the target.
        Assert.That(synonyms.Count(p => System.Text.RegularExpressions.Regex.IsMatch(p.Text, @"\bcircles?\b", System.Text.RegularExpressions.RegexOptions.IgnoreCase)), Is.Zero);
    }
}
