using Spm.Core;
using Spm.Core.Membranes;
using Spm.Shapes.Evaluation;
using Spm.Tests.Common;
using Spm.Training.LatentAnchoring;

namespace Spm.Training.Tests.Evaluation;

public class EvalConceptResolutionTests
{
    [Test]
    public void TheConceptIsTheOneTinyShapesWordOfThePrompts()
    {
        Assert.That(EvalConcept.FromPrompts(["a red shape"], "red.safetensors").Name, Is.EqualTo("red"));
        Assert.That(EvalConcept.FromPrompts(["light blue"], "f").Name, Is.EqualTo("light blue"), "two-word values are read whole");
        Assert.That(EvalConcept.FromPrompts(["circle", "a circle"], "f").Name, Is.EqualTo("circle"));
        var ex = Assert.Throws<SpmException>(() => EvalConcept.FromPrompts(["red circle"], "two.safetensors"));
        Assert.That(ex!.Message, Does.Contain("'two.safetensors'").And.Contain("red").And.Contain("circle"));
        Assert.Throws<SpmException>(() => EvalConcept.FromPrompts(["a photo of a cat"], "cat.safetensors"));
    }

    [Test]
    public void TheTrainingActionIsReadFromTheShippedFiles()
    {
        string Action(string name) => TrainingRecord.ActionOf(SpmFile.Load(Path.Combine(TestPaths.RepoRoot, "models", "tiny-shapes", "spm", name)).Config.Extra)!;
        Assert.That(Action("circle.safetensors"), Is.EqualTo("erase_with_la"));
        Assert.That(Action("circle-noanchor.safetensors"), Is.EqualTo("erase"));
        Assert.That(TrainingRecord.ActionOf(new Dictionary<string, string> { ["training"] = "{not json" }), Is.Null);
        Assert.That(TrainingRecord.ActionOf(new Dictionary<string, string>()), Is.Null);
    }

    [Test]
    public void AFamilysConcepts_FromItsPrompts_ItsRecord_OrCommaJoinedWords()
    {
        Assert.That(EvalConcept.FamilyFromPrompts(["a circle", "a square", "a circle"], "f").Select(c => c.Name), Is.EqualTo(new[] { "circle", "square" }));
        Assert.That(EvalConcept.FamilyFromPrompts(["a red shape", "on a light blue background"], "f").Select(c => c.Name), Is.EqualTo(new[] { "red", "light blue" }));
        var ex = Assert.Throws<SpmException>(() => EvalConcept.FamilyFromPrompts(["a circle", "a red square"], "fam.safetensors"));
        Assert.That(ex!.Message, Does.Contain("'a red square'").And.Contain("'fam.safetensors'").And.Contain("--concepts"));
        Assert.Throws<SpmException>(() => EvalConcept.FamilyFromPrompts(["a circle", "a dog"], "f"));

        Assert.That(EvalConcept.ParseList("circle, square,star").Select(c => c.Name), Is.EqualTo(new[] { "circle", "square", "star" }));
        Assert.That(EvalConcept.ParseList("red").Select(c => c.Name), Is.EqualTo(new[] { "red" }));
        Assert.That(() => EvalConcept.ParseList("circle,circle"), Throws.InstanceOf<SpmException>().With.Message.Contains("twice"));
        Assert.That(() => EvalConcept.ParseList("circle,dog"), Throws.InstanceOf<SpmException>().With.Message.Contains("'dog'"));

        Assert.That(TrainingRecord.FamilyOf(new Dictionary<string, string> { ["training"] = """{"action":"erase_with_la","family":["a circle","a square"]}""" }),
            Is.EqualTo(new[] { "a circle", "a square" }));
        Assert.That(TrainingRecord.FamilyOf(new Dictionary<string, string> { ["training"] = """{"action":"erase_with_la"}""" }), Is.Null);
        Assert.That(TrainingRecord.FamilyOf(new Dictionary<string, string> { ["training"] = "{not json" }), Is.Null);
        Assert.That(TrainingRecord.FamilyOf(new Dictionary<string, string>()), Is.Null);
    }
}
