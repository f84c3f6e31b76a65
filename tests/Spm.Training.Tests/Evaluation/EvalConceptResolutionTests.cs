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
}
