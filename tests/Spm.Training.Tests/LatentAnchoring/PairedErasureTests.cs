using Spm.Core;
using Spm.Core.Membranes;
using Spm.Diffusion.Runtime;
using Spm.Tests.Common;
using Spm.Training.LatentAnchoring;

namespace Spm.Training.Tests.LatentAnchoring;

/// <summary>Paired erasure (<see cref="LatentAnchoringOptions.Pairs"/>, <c>spm train --pairs</c>) and its file format.</summary>
[NonParallelizable]
public class PairedErasureTests
{
    private static string Model => Path.Combine(TestPaths.RepoRoot, "models", "tiny-shapes");
    private static readonly OnnxRuntimeOptions OneThread = new() { IntraOpThreads = 1, OptimizedModelCacheFolder = SuiteGraphCache.Folder };

    private static LatentAnchoringOptions Quick => new()
    {
        Concept = "a striped circle", Surrogate = "a plain circle", Iterations = 3, LearningRate = 0.01, WarmupSteps = 1, AnchorStrength = 10,
        Resolution = 64, Seed = 1, CheckpointEvery = 0,
    };

    [Test]
    public void Parse_ReadsPairsSkipsCommentsAndBlankLines_AndAllowsAnEmptySurrogate()
    {
        var pairs = ErasurePairFile.Parse("# striped in context\n\na striped red circle => a plain red circle\r\n  striped=>plain  \na circle with stripes =>\n");
        Assert.That(pairs, Is.EqualTo(new[]
        {
            new ErasurePair("a striped red circle", "a plain red circle"),
            new ErasurePair("striped", "plain"),
            new ErasurePair("a circle with stripes", ""),
        }));
    }

    [TestCase("a striped circle\n", "line 1", "expected 'TARGET => SURROGATE'")]
    [TestCase("ok => fine\n => plain\n", "line 2", "the target prompt is empty")]
    [TestCase("a => b => c\n", "line 1", "more than one '=>'")]
    [TestCase("# only a comment\n", null, "holds no pair")]
    [TestCase("x => y\nsame => same\n", "line 2", "nothing to erase")]
    public void Parse_BadLines_AreFormatErrorsNamingTheFileAndLine(string text, string? where, string message)
    {
        var ex = Assert.Throws<SpmFormatException>(() => ErasurePairFile.Parse(text, "pairs.txt"))!;
        Assert.That(ex.Message, Does.Contain("pairs.txt").And.Contain(message));
        if (where is not null) Assert.That(ex.Message, Does.Contain(where));
    }

    [Test]
    public void Load_MissingFile_NamesIt()
    {
        var path = Path.Combine(TestPaths.NewTempDir("spm-pairs"), "none.txt");
        Assert.That(() => ErasurePairFile.Load(path), Throws.TypeOf<SpmFormatException>().With.Message.Contains(path).And.Message.Contains("not found"));
    }

    [Test]
    public void Validate_RejectsPairsWithAFamilyOrAPositive()
    {
        var one = new[] { new ErasurePair("a striped circle", "a plain circle") };
        Assert.That(() => (Quick with { Pairs = [] }).Validate(), Throws.ArgumentException.With.Message.Contains("pairs is empty"));
        Assert.That(() => (Quick with { Pairs = one, FamilyPrompts = ["a circle"] }).Validate(), Throws.ArgumentException.With.Message.Contains("concept family"));
        Assert.That(() => (Quick with { Pairs = one, Positive = "a disc" }).Validate(), Throws.ArgumentException.With.Message.Contains("positive prompt"));
        Assert.That(() => (Quick with { Pairs = [new ErasurePair(" ", "plain")] }).Validate(), Throws.ArgumentException.With.Message.Contains("empty target"));
    }

    [Test]
    [Category(TestCategories.Slow)]
    public void OnePair_TrainsExactlyAsTheConceptAgainstItsSurrogate_AndMorePairsLearnOtherwise_NamingTheConcept()
    {
        var dir = TestPaths.NewTempDir("spm-pairs");
        try
        {
            // The concept "striped" in one context: the pair's target and surrogate replace --concept and --surrogate.
            var onePair = Quick with { Concept = "striped", Surrogate = "plain", Pairs = [new ErasurePair("a striped circle", "a plain circle")] };
            var twoPairs = onePair with { Pairs = [.. onePair.Pairs!, new ErasurePair("a red square with stripes", "a plain red square")] };
            var paths = new[] { "plain", "one", "two" }.Select(n => Path.Combine(dir, n + ".safetensors")).ToArray();
            foreach (var (options, path) in new[] { Quick, onePair, twoPairs }.Zip(paths))
            {
                using var t = LatentAnchoringTrainer.Create(Model, options, OneThread);
                t.Train(new TrainingOutput(path));
            }
            var files = paths.Select(p => SpmFile.Load(p)).ToArray();
            static float[] Weights(SpmAdapter a) => a.Membranes.SelectMany(m => m.Down.Data.ToArray().Concat(m.Up.Data.ToArray())).ToArray();
            // The same training up to the text encoder's batch (the pair's prompts are encoded with more rows, so the
            // embeddings differ in the last bits and AdamW's normalisation carries that to ~1e-5); a second pair moves the
            // weights by ~3e-2.
            static double MaxDiff(float[] a, float[] b) => a.Zip(b).Max(p => Math.Abs(p.First - (double)p.Second));
            var plain = Weights(files[0]);
            Assert.That(MaxDiff(Weights(files[1]), plain), Is.LessThan(1e-4), "one pair = the concept against its surrogate");
            Assert.That(MaxDiff(Weights(files[2]), plain), Is.GreaterThan(1e-2), "the second pair is trained too");
            Assert.That(files[2].Config.Prompts, Is.EqualTo(new[] { "striped" }), "the file names the concept, not its contexts");
            Assert.That(files[2].Config.Extra[SpmMetadataKeys.ModelFamily], Is.EqualTo(SpmModelFamily.Sd1), "the built-in model is an SD 1.x pipeline");
            Assert.That(files[2].Config.Extra[SpmMetadataKeys.Training],
                Does.Contain("\"pairs\":[[\"a striped circle\",\"a plain circle\"],[\"a red square with stripes\",\"a plain red square\"]]"));
            Assert.That(LatentAnchoringTrainer.SettingsJson(Quick), Does.Not.Contain("pairs"), "ordinary runs keep their settings");
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
