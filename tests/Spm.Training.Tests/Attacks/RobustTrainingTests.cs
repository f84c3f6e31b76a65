using System.Text.Json.Nodes;
using Spm.Core;
using Spm.Core.Gating;
using Spm.Core.Membranes;
using Spm.Tests.Common;
using Spm.Training.Attacks;
using Spm.Training.LatentAnchoring;

namespace Spm.Training.Tests.Attacks;

/// <summary>Robust mode on the built-in model at the smallest sizes that run every step.</summary>
[TestFixture]
[Category(TestCategories.Slow)]
public class RobustTrainingTests
{
    private static string Model => Path.Combine(TestPaths.RepoRoot, "models", "tiny-shapes");

    private static string Shipped(string name) => Path.Combine(Model, "spm", name + ".safetensors");

    // The shipped circle's own training settings (its 'training' metadata).
    private static LatentAnchoringOptions CircleTraining => new()
    {
        Concept = "circle", Surrogate = "square", LearningRate = 0.01, AnchorStrength = 10, Iterations = 200, WarmupSteps = 15,
        Resolution = 64, Seed = 1,
    };

    [Test]
    public void Harden_AttacksThenErases_RecordsTheRounds_AndKeepsTheLearnedGate()
    {
        var dir = TestPaths.NewTempDir("spm-robust");
        try
        {
            var output = Path.Combine(dir, "circle-robust.safetensors");
            var progress = new List<RobustTrainingProgress>();
            var options = new RobustTrainingOptions
            {
                Rounds = 1, IterationsPerRound = 3, Goals = 2, ImageSteps = 4,
                Attack = new GradientAttackOptions { Steps = 2, Candidates = 1, Tokens = 2, BatchSize = 2 },
                GoalPrompts = ["a red circle on a white background"],
            };
            var result = RobustTraining.Harden(Model, Shipped("circle"), CircleTraining, options, output, overwrite: false,
                new Diffusion.Runtime.OnnxRuntimeOptions { IntraOpThreads = 2 }, new SyncProgress<RobustTrainingProgress>(progress.Add));

            Assert.That(result.AdversarialPrompts, Has.Count.InRange(1, 2));
            Assert.That(result.AdversarialPrompts, Has.All.EndWith(" a red circle on a white background"));
            Assert.That(result.AttackLosses, Has.Count.EqualTo(1));
            Assert.That(progress.Select(p => (p.Round, p.Phase)).Distinct(), Is.EqualTo(new[] { (1, "attack"), (1, "erase") }));

            var start = SpmFile.Load(Shipped("circle"));
            var hardened = SpmFile.Load(output);
            var record = JsonNode.Parse(hardened.Config.Extra[RobustTraining.MetadataKey])!;
            Assert.That((int)record["rounds"]!, Is.EqualTo(1));
            Assert.That(record["adversarial_prompts"]!.AsArray().Select(p => (string)p!), Is.EqualTo(result.AdversarialPrompts));
            Assert.That(hardened.Config.Extra[ConceptProbe.MetadataKey], Is.EqualTo(start.Config.Extra[ConceptProbe.MetadataKey]), "the learned gate travels with the membrane");
            Assert.That(hardened.Config.Extra["training"], Does.Contain("\"adversarial_prompts\":").And.Contain("\"initial_spm\":"));
            Assert.That(hardened.Membranes.Select(m => m.Key), Is.EqualTo(start.Membranes.Select(m => m.Key)));
            Assert.That(hardened.Membranes.Zip(start.Membranes).Any(p => !p.First.Up.Data.SequenceEqual(p.Second.Up.Data)), Is.True, "the rounds trained the membrane");
            Assert.That(Directory.GetFiles(dir), Is.EqualTo(new[] { output }), "round files are cleaned up");

            Assert.That(() => RobustTraining.Harden(Model, Shipped("circle"), CircleTraining, options, output, overwrite: false),
                Throws.TypeOf<IOException>().With.Message.Contains("already exists"));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Test]
    public void Harden_APairedRun_AttacksItsPairs_AndErasesEachFindTowardsItsOwnPairsSurrogate()
    {
        var dir = TestPaths.NewTempDir("spm-robust-pairs");
        try
        {
            ErasurePair[] pairs =
            [
                new("a red circle", "a red square"),
                new("a blue circle on a white background", "a blue square on a white background"),
                new("circle", "square"),
            ];
            var training = CircleTraining with { Pairs = pairs };
            var output = Path.Combine(dir, "circle-paired-robust.safetensors");
            var options = new RobustTrainingOptions
            {
                Rounds = 1, IterationsPerRound = 2, Goals = 3, ImageSteps = 4,
                Attack = new GradientAttackOptions { Steps = 1, Candidates = 1, Tokens = 1, BatchSize = 3 },
            };
            var result = RobustTraining.Harden(Model, Shipped("circle"), training, options, output, overwrite: false,
                new Diffusion.Runtime.OnnxRuntimeOptions { IntraOpThreads = 2 });

            // Without goal prompts the goals are the pairs' targets; each find is recorded with the pair it attacks.
            var settings = JsonNode.Parse(SpmFile.Load(output).Config.Extra["training"])!;
            var goals = settings["adversarial_goals"]!.AsArray().Select(g => (int)g!).ToList();
            Assert.That(goals, Has.Count.EqualTo(result.AdversarialPrompts.Count));
            Assert.That(result.AdversarialPrompts, Has.Count.InRange(1, 3));
            for (int i = 0; i < goals.Count; i++)
                Assert.That(result.AdversarialPrompts[i], Does.EndWith(" " + pairs[goals[i]].Target), $"find {i} belongs to pair {goals[i]}");
            Assert.That(goals, Is.Unique, "three goals walk through three different pairs");
            Assert.That(settings["pairs"]!.AsArray(), Has.Count.EqualTo(3));

            // A goal prompt must be one of the pairs' targets.
            Assert.That(() => RobustTraining.Harden(Model, Shipped("circle"), training, options with { GoalPrompts = ["a green circle"] },
                    Path.Combine(dir, "other.safetensors"), overwrite: false),
                Throws.ArgumentException.With.Message.Contains("'a green circle' is not the target of any erasure pair"));
            Assert.That(() => (training with { AdversarialPrompts = ["x circle"] }).Validate(),
                Throws.ArgumentException.With.Message.Contains("needs the pair each one attacks"));
            Assert.That(() => (training with { AdversarialPrompts = ["x circle"], AdversarialGoals = [3] }).Validate(),
                Throws.ArgumentException.With.Message.Contains("not an index of the 3 erasure pairs"));
            Assert.That(() => (CircleTraining with { AdversarialGoals = [0] }).Validate(),
                Throws.ArgumentException.With.Message.Contains("this run has none"));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Test]
    public void InitialSpm_OfAnotherRank_IsAMismatchNamingTheFile()
    {
        var options = CircleTraining with { Rank = 2, InitialSpm = Shipped("circle"), Iterations = 1 };
        Assert.That(() => LatentAnchoringTrainer.Create(Model, options).Dispose(),
            Throws.TypeOf<SpmMismatchException>().With.Message.Contains("circle.safetensors").And.Message.Contains("rank 1"));
    }

    private sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
