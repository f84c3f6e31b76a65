using Spm.Core.Membranes;
using Spm.Core.Randomness;
using Spm.Diffusion.Runtime;
using Spm.Tests.Common;
using Spm.Training.LatentAnchoring;

namespace Spm.Training.Tests.LatentAnchoring;

/// <summary>Family anchors (<see cref="LatentAnchoringOptions.AnchorPrompts"/>) and family erasure (<see cref="LatentAnchoringOptions.FamilyPrompts"/>).</summary>
[NonParallelizable]
public class AtlasTrainingTests
{
    private static string Model => Path.Combine(TestPaths.RepoRoot, "models", "tiny-shapes");
    private static readonly OnnxRuntimeOptions OneThread = new() { IntraOpThreads = 1, OptimizedModelCacheFolder = SuiteGraphCache.Folder };

    private static LatentAnchoringOptions Quick => new()
    {
        Concept = "a circle", Surrogate = "", Iterations = 3, LearningRate = 0.01, WarmupSteps = 1, AnchorStrength = 10,
        Resolution = 64, Seed = 1, CheckpointEvery = 0,
    };

    [Test]
    public void DrawPromptIndices_AreDistinctAndUniform_AndAllInOrderWhenThePoolIsSmall()
    {
        var rng = new SeededRandom(3);
        var counts = new int[12];
        const int draws = 6000;
        for (int d = 0; d < draws; d++)
        {
            var idx = AnchorSampler.DrawPromptIndices(rng, 12, 4);
            Assert.That(idx, Has.Length.EqualTo(4));
            Assert.That(idx, Is.Unique);
            Assert.That(idx, Is.All.InRange(0, 11));
            foreach (int i in idx) counts[i]++;
        }
        // Each prompt is in 4/12 of the draws: 2000 expected, binomial sd ~37.
        Assert.That(counts, Is.All.InRange(1850, 2150), string.Join(" ", counts));
        Assert.That(AnchorSampler.DrawPromptIndices(new SeededRandom(9), 12, 4), Is.EqualTo(AnchorSampler.DrawPromptIndices(new SeededRandom(9), 12, 4)));

        // A pool no larger than the anchor count: every prompt, in order, and the generator is left alone.
        var a = new SeededRandom(5);
        Assert.That(AnchorSampler.DrawPromptIndices(a, 3, 4), Is.EqualTo(new[] { 0, 1, 2 }));
        Assert.That(AnchorSampler.DrawPromptIndices(a, 4, 4), Is.EqualTo(new[] { 0, 1, 2, 3 }));
        Assert.That(a.NextDouble(), Is.EqualTo(new SeededRandom(5).NextDouble()));
    }

    [Test]
    public void Validate_RejectsContradictoryAtlasOptions()
    {
        Assert.That(() => (Quick with { AnchorPrompts = [] }).Validate(), Throws.ArgumentException.With.Message.Contains("anchor prompts is empty"));
        Assert.That(() => (Quick with { AnchorPrompts = ["a red shape"], ReferenceQuirk = true }).Validate(), Throws.ArgumentException.With.Message.Contains("--reference-quirk"));
        Assert.That(() => (Quick with { FamilyPrompts = [] }).Validate(), Throws.ArgumentException.With.Message.Contains("at least one non-empty prompt"));
        Assert.That(() => (Quick with { FamilyPrompts = ["a circle"], Positive = "a disc" }).Validate(), Throws.ArgumentException.With.Message.Contains("positive prompt"));
        Assert.That(() => (Quick with { FamilyPrompts = ["a circle", "a square"], AnchorPrompts = ["A Square"] }).Validate(),
            Throws.ArgumentException.With.Message.EqualTo("'A Square' is both a family member (erased) and an anchor (kept)."));
    }

    [Test]
    [Category(TestCategories.Slow)]
    public void FamilyRun_WritesEveryMemberAsAConcept_RecordsItsAnchors_AndLearnsOtherwiseThanItsFirstMember()
    {
        var dir = TestPaths.NewTempDir("spm-family");
        try
        {
            var family = Quick with { FamilyPrompts = ["a circle", "a square", "a triangle"], AnchorPrompts = ["a red shape", "a blue shape", "a plain pattern", "on a white background", "a star"] };
            var familyPath = Path.Combine(dir, "family.safetensors");
            var singlePath = Path.Combine(dir, "single.safetensors");
            using (var t = LatentAnchoringTrainer.Create(Model, family, OneThread))
            {
                var before = t.Parameters.ToDictionary(p => p.Name, p => p.Value.ToArray());
                var result = t.Train(new TrainingOutput(familyPath));
                Assert.That(t.Parameters.Any(p => !p.Value.AsSpan().SequenceEqual(before[p.Name])), "the membrane learned");
                Assert.That(result.History.Select(h => h.AnchorLoss), Is.All.GreaterThan(0), "the anchor prompts are anchored");
            }
            using (var t = LatentAnchoringTrainer.Create(Model, Quick with { AnchorPrompts = family.AnchorPrompts }, OneThread))
                t.Train(new TrainingOutput(singlePath));
            var f = SpmFile.Load(familyPath);
            Assert.That(f.Config.Prompts, Is.EqualTo(new[] { "a circle", "a square", "a triangle" }));
            var settings = f.Config.Extra[SpmMetadataKeys.Training];
            Assert.That(settings, Is.EqualTo(LatentAnchoringTrainer.SettingsJson(family)));
            Assert.That(settings, Does.Contain("\"family\":[\"a circle\",\"a square\",\"a triangle\"]")
                .And.Contain("\"anchor_prompts\":[\"a red shape\",\"a blue shape\",\"a plain pattern\",\"on a white background\",\"a star\"]"));
            Assert.That(SpmFile.Load(singlePath).Config.Prompts, Is.EqualTo(new[] { "a circle" }));
            Assert.That(LatentAnchoringTrainer.SettingsJson(Quick), Does.Not.Contain("family").And.Not.Contain("anchor_prompts"), "ordinary runs keep their settings");
            Assert.That(File.ReadAllBytes(familyPath), Is.Not.EqualTo(File.ReadAllBytes(singlePath)), "the family's other members are erased too");
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
