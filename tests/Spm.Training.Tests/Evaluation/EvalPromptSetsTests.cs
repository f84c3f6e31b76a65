using Spm.Core;
using Spm.Shapes.Evaluation;
using Spm.Shapes.World;

namespace Spm.Training.Tests.Evaluation;

public class EvalPromptSetsTests
{
    [TestCase("circle", ConceptAttribute.Shape, (int)ShapeKind.Circle)]
    [TestCase("Red", ConceptAttribute.Color, (int)ShapeColor.Red)]
    [TestCase("striped", ConceptAttribute.Pattern, (int)FillPattern.Striped)]
    [TestCase("light-blue", ConceptAttribute.Background, (int)ShapeBackground.LightBlue)]
    public void ConceptsParseFromTheirWords(string word, ConceptAttribute attribute, int value)
    {
        var c = EvalConcept.Parse(word);
        Assert.That(c, Is.EqualTo(new EvalConcept(attribute, value)));
        Assert.That(EvalConcept.Parse(c.Name), Is.EqualTo(c));
    }

    [Test]
    public void UnknownConceptIsAClearError()
    {
        var ex = Assert.Throws<SpmException>(() => EvalConcept.Parse("hexagon"));
        Assert.That(ex!.Message, Does.Contain("'hexagon'"));
    }

    [Test]
    public void TargetPromptsAskForTheConceptAndVaryTheRest()
    {
        foreach (var concept in new[] { EvalConcept.Of(ShapeKind.Circle), EvalConcept.Of(ShapeColor.Red), EvalConcept.Of(FillPattern.Striped) })
        {
            var set = EvalPromptSets.Target(concept, 200, 7);
            Assert.That(set, Has.Count.EqualTo(200));
            Assert.That(set.All(p => concept.IsAskedBy(p.Prompt) && ShapePrompt.Parse(p.Text) == p.Prompt), concept.Name);
            Assert.That(set.Select(p => p.Text).Distinct().Count(), Is.GreaterThan(50));
            Assert.That(set.Select(p => p.Seed).Distinct().Count(), Is.EqualTo(200));
            Assert.That(EvalPromptSets.Target(concept, 200, 7), Is.EqualTo(set), "deterministic");
        }
        Assert.That(EvalPromptSets.Target(EvalConcept.Of(ShapeKind.Circle), 5, 7).Select(p => p.Seed),
            Is.Not.EqualTo(EvalPromptSets.Target(EvalConcept.Of(ShapeKind.Square), 5, 7).Select(p => p.Seed)));
    }

    [Test]
    public void PreservationPromptsNameAnotherValueForEveryErasedAttribute()
    {
        var erased = new[] { EvalConcept.Of(ShapeKind.Circle), EvalConcept.Of(ShapeColor.Red), EvalConcept.Of(FillPattern.Striped) };
        var set = EvalPromptSets.Preservation(erased, 300, 2);
        foreach (var p in set)
        {
            Assert.That(erased.Any(c => c.IsAskedBy(p.Prompt)), Is.False, p.Text);
            Assert.That(p.Prompt.Shape, Is.Not.Null);
            Assert.That(p.Prompt.Color, Is.Not.Null);
            Assert.That(p.Prompt.Pattern, Is.Not.Null, "the pattern must be named when a pattern is erased");
        }
        Assert.That(set.Select(p => p.Prompt.Pattern).Distinct(), Is.EquivalentTo(new FillPattern?[] { FillPattern.Plain, FillPattern.Dotted }));
        Assert.That(set.Select(p => p.Prompt.Shape).Distinct().Count(), Is.EqualTo(3));
        var allShapes = ShapeVocabulary.Shapes.Select(EvalConcept.Of).ToArray();
        // A family erasing every shape: the shape is left open (was an error before family membranes were evaluated).
        Assert.That(EvalPromptSets.Preservation(allShapes, 3, 1).Select(p => p.Prompt.Shape), Is.All.Null);
    }
}
