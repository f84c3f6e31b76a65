using Spm.Core;
using Spm.Training.LatentAnchoring;

namespace Spm.Training.Tests.LatentAnchoring;

public class TrainingManifestTests
{
    // Stands in for the model's defaults (spm_train_defaults.json): the manifest's 'defaults' and entries go over it.
    private static readonly LatentAnchoringOptions ModelDefaults = new() { Concept = "", Iterations = 200, LearningRate = 0.01, AnchorStrength = 10, WarmupSteps = 15, Resolution = 64 };

    private const string Yaml = """
        defaults:
          seed: 7
          iterations: 50
        concepts:
          - concept: circle
            surrogate: square
          - concept: A Striped Shape!
            surrogate: a plain shape
            iterations: 300
            no_anchoring: true
            rank: 2
            alpha: 2
            fixed_resolution: yes
          - concept: red
            file: red-v2.safetensors
            lr: 3e-3
            seed: 0
        """;

    [Test]
    public void EntriesGoOverDefaultsOverTheModels()
    {
        var m = TrainingManifest.Parse(Yaml, ModelDefaults, "concepts.yaml");
        Assert.That(m.Concepts.Select(c => c.Options.Concept), Is.EqualTo(new[] { "circle", "A Striped Shape!", "red" }));
        Assert.That(m.Concepts.Select(c => c.FileName), Is.EqualTo(new[] { "circle", "a-striped-shape", "red-v2" }));
        Assert.That(m.Concepts.Select(c => c.Line), Is.EqualTo(new[] { 5, 7, 14 }));
        var (circle, striped, red) = (m.Concepts[0].Options, m.Concepts[1].Options, m.Concepts[2].Options);
        Assert.That((circle.Surrogate, circle.Iterations, circle.Seed, circle.LearningRate, circle.AnchorStrength, circle.WarmupSteps, circle.Resolution),
            Is.EqualTo(("square", 50, 7UL, 0.01, 10.0, 15, 64)));
        Assert.That(circle.Action, Is.EqualTo(TrainingAction.EraseWithAnchoring));
        Assert.That((striped.Iterations, striped.Action, striped.Rank, striped.Alpha, striped.DynamicResolution, striped.Seed),
            Is.EqualTo((300, TrainingAction.Erase, 2, 2.0, false, 7UL)));
        Assert.That((red.LearningRate, red.Seed, red.Iterations, red.Surrogate), Is.EqualTo((3e-3, 0UL, 50, "")));
        Assert.That(m.Concepts[2].OutputPath("/data/out"), Is.EqualTo(Path.Combine("/data/out", "red-v2.safetensors")));
    }

    [Test]
    public void JsonAndATopLevelListAreManifestsToo()
    {
        var json = TrainingManifest.Parse("""{"defaults": {"seed": 3}, "concepts": [{"concept": "circle", "iterations": 10}]}""", ModelDefaults, "m.json");
        Assert.That((json.Concepts[0].Options.Seed, json.Concepts[0].Options.Iterations), Is.EqualTo((3UL, 10)));
        var list = TrainingManifest.Parse("- concept: circle\n- concept: red\n", ModelDefaults);
        Assert.That(list.Concepts.Select(c => c.Index), Is.EqualTo(new[] { 0, 1 }));
    }

    [TestCase("concepts:\n  - concept: a\n    iteratons: 3\n", "concepts[0].iteratons (line 3)", "unknown key")]
    [TestCase("concepts:\n  - surrogate: a\n", "concepts[0].concept (line 2)", "missing")]
    [TestCase("concepts:\n  - concept: a\n  - concept: b\n    lr: fast\n", "concepts[1].lr (line 4)", "'fast' is not a number")]
    [TestCase("concepts:\n  - concept: a\n  - concept: A\n", "concepts[1].concept (line 3)", "already concepts[0] (line 2)")]
    [TestCase("concepts:\n  - concept: a b\n  - concept: a-b\n", "concepts[1].file (line 3)", "output name 'a-b' is already")]
    [TestCase("concepts:\n  - concept: a\n    file: ../x\n", "concepts[0].file (line 3)", "not a plain file name")]
    [TestCase("concepts:\n  - concept: a\n    iterations: 0\n", "concepts[0] (line 2)", "--iterations must be at least 1")]
    [TestCase("concepts:\n  - concept: a\n    seed: -1\n", "concepts[0].seed (line 3)", "not a seed")]
    [TestCase("defaults:\n  concept: a\nconcepts:\n  - concept: b\n", "defaults.concept (line 2)", "belongs to a concept")]
    [TestCase("concept:\n  - concept: a\n", "concept (line 1)", "unknown top-level key")]
    [TestCase("concepts: []\n", "concepts (line 1)", "empty")]
    [TestCase("defaults:\n  seed: 1\n", "concepts (line 1)", "missing")]
    [TestCase("concepts:\n  - concept: a\n    surrogate: [x, y]\n", "concepts[0].surrogate (line 3)", "single value")]
    public void BadManifestsNameTheEntryKeyAndLine(string yaml, string key, string message)
    {
        var ex = Assert.Throws<SpmFormatException>(() => TrainingManifest.Parse(yaml, ModelDefaults, "bad.yaml"))!;
        Assert.That(ex.FilePath, Is.EqualTo("bad.yaml"));
        Assert.That(ex.Key, Is.EqualTo(key));
        Assert.That(ex.Message, Does.Contain(message));
    }

    [Test]
    public void BrokenYamlAndMissingFilesAreClearErrors()
    {
        Assert.That(Assert.Throws<SpmFormatException>(() => TrainingManifest.Parse("concepts: [unclosed\n", ModelDefaults, "m.yaml"))!.Message, Does.Contain("invalid YAML"));
        Assert.Throws<SpmInputNotFoundException>(() => TrainingManifest.Load(Path.Combine(Path.GetTempPath(), "no-such-manifest.yaml"), ModelDefaults));
    }

    [Test]
    public void NestingFarDeeperThanAManifestNeeds_IsRefusedBeforeTheTreeIsBuilt()
    {
        // 100,000 levels would overflow the stack of the node-tree builder; the guard reads the event stream first.
        var hostile = "concepts: " + new string('[', 100_000);
        var manifest = Assert.Throws<SpmFormatException>(() => TrainingManifest.Parse(hostile, ModelDefaults, "deep.yaml"))!.Message;
        Assert.That(manifest, Does.Contain("deep.yaml").And.Contain("nested deeper than 8 levels"));
        var config = Assert.Throws<SpmFormatException>(() => PromptConfig.Parse("- target: " + new string('[', 100_000), new LatentAnchoringOptions { Concept = "x" }, "prompts.yaml"))!.Message;
        Assert.That(config, Does.Contain("prompts.yaml").And.Contain("nested deeper than 16 levels"));
        Assert.That(TrainingManifest.Parse("concepts: [{concept: circle, iterations: 3}]", ModelDefaults, "flat.yaml").Concepts, Has.Count.EqualTo(1), "shallow nesting loads");
    }

    [Test]
    public void ShardsSplitConceptsByIndexModuloCount()
    {
        var yaml = "concepts:\n" + string.Concat(Enumerable.Range(0, 7).Select(i => $"  - concept: c{i}\n"));
        var m = TrainingManifest.Parse(yaml, ModelDefaults);
        var shards = Enumerable.Range(0, 3).Select(i => m.ShardConcepts(new ShardSpec(i, 3)).Select(c => c.Options.Concept).ToArray()).ToArray();
        Assert.That(shards[0], Is.EqualTo(new[] { "c0", "c3", "c6" }));
        Assert.That(shards[1], Is.EqualTo(new[] { "c1", "c4" }));
        Assert.That(shards[2], Is.EqualTo(new[] { "c2", "c5" }));
        Assert.That(m.ShardConcepts(ShardSpec.All), Has.Count.EqualTo(7));
    }

    [Test]
    public void ShardParsesIndexOverCountOrReadsTheSchedulersVariable()
    {
        static Func<string, string?> Env(params (string, string)[] vars) => name => vars.FirstOrDefault(v => v.Item1 == name).Item2;
        Assert.That(ShardSpec.Parse("2/3", Env()), Is.EqualTo(new ShardSpec(2, 3)));
        Assert.That(ShardSpec.Parse("auto/4", Env(("JOB_COMPLETION_INDEX", "3"))), Is.EqualTo(new ShardSpec(3, 4)));
        Assert.That(ShardSpec.Parse("auto/4", Env(("SLURM_ARRAY_TASK_ID", "2"))), Is.EqualTo(new ShardSpec(2, 4)));
        Assert.That(ShardSpec.Parse("auto/3", Env(("SLURM_ARRAY_TASK_ID", "3"), ("SLURM_ARRAY_TASK_MIN", "1"))), Is.EqualTo(new ShardSpec(2, 3)), "--array=1-3");
        Assert.That(ShardSpec.Parse("AUTO/2", Env(("JOB_COMPLETION_INDEX", "0"), ("SLURM_ARRAY_TASK_ID", "1"))), Is.EqualTo(new ShardSpec(0, 2)), "Kubernetes' variable first");

        Assert.That(Assert.Throws<SpmException>(() => ShardSpec.Parse("auto/3", Env()))!.Message, Does.Contain("JOB_COMPLETION_INDEX").And.Contain("SLURM_ARRAY_TASK_ID"));
        Assert.That(Assert.Throws<SpmException>(() => ShardSpec.Parse("3/3", Env()))!.Message, Does.Contain("numbered 0 to 2"));
        Assert.That(Assert.Throws<SpmException>(() => ShardSpec.Parse("auto/3", Env(("JOB_COMPLETION_INDEX", "5"))))!.Message, Does.Contain("shard index is 5"));
        Assert.That(Assert.Throws<SpmException>(() => ShardSpec.Parse("auto/3", Env(("SLURM_ARRAY_TASK_ID", "x"))))!.Message, Does.Contain("$SLURM_ARRAY_TASK_ID is 'x'"));
        foreach (var bad in new[] { "1", "1/0", "-1/3", "a/3", "1/3/4", "1/x" })
            Assert.Throws<SpmException>(() => ShardSpec.Parse(bad, Env()), bad);
    }
}
