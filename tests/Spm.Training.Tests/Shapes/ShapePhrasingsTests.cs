using System.Text.RegularExpressions;
using Spm.Shapes.Evaluation;
using Spm.Shapes.World;

namespace Spm.Training.Tests.Shapes;

public class ShapePhrasingsTests
{
    [TestCase("circle", "circle")]
    [TestCase("red", "red")]
    [TestCase("striped", "striped")]
    public void SynonymTargets_NeverUseTheCanonicalWord_AndReadAsTheConcept(string conceptName, string canonical)
    {
        var concept = EvalConcept.Parse(conceptName);
        var targets = ShapePhrasings.Targets(concept, 40, 3, [PhrasingKind.Synonym]);
        Assert.That(targets, Has.Count.EqualTo(40));
        foreach (var t in targets)
        {
            Assert.That(Regex.IsMatch(t.Text, $@"\b{canonical}\b", RegexOptions.IgnoreCase), Is.False, t.Text);
            Assert.That(concept.IsAskedBy(ShapePrompt.Parse(t.Text)!), Is.True, $"'{t.Text}' does not read as {conceptName}");
            Assert.That(concept.IsAskedBy(t.Intent), Is.True);
        }
    }

    [Test]
    public void DefaultRephrasings_IncludeSynonyms()
    {
        var targets = ShapePhrasings.Targets(EvalConcept.Parse("circle"), 70, 1);
        Assert.That(targets.Count(t => t.Kind == PhrasingKind.Synonym), Is.EqualTo(10));
        Assert.That(targets.Select(t => t.Kind).Distinct(), Is.EquivalentTo(ShapePhrasings.Rephrasings));
    }

    [Test]
    public void SynonymNearNeighbours_NameAnotherValue()
    {
        var circle = EvalConcept.Parse("circle");
        foreach (var p in ShapePhrasings.NearNeighbours([circle], 30, 2, [PhrasingKind.Synonym]))
        {
            Assert.That(circle.IsAskedBy(p.Intent), Is.False);
            Assert.That(ShapePrompt.Parse(p.Text)!.Shape, Is.EqualTo(p.Intent.Shape), p.Text);
        }
    }
}
