using Spm.Core.Membranes;
using Spm.Diffusion.Runtime;
using Spm.Tests.Common;
using Spm.Training.LatentAnchoring;

namespace Spm.Training.Tests.LatentAnchoring;

/// <summary>
/// Growing a library (<see cref="LatentAnchoringOptions.LibrarySpms"/>): the library's SPMs are loaded next to the new
/// membrane and stay exactly as they are, only the new membrane learns and is written, and the library changes what
/// it learns (it trains against the combined model and anchors the library's concepts). Whether the combined library
/// still erases every concept is measured with <c>spm eval</c> (docs/library.md, "Growing").
/// </summary>
[NonParallelizable]
public class LibraryGrowingTests
{
    private static string Model => Path.Combine(TestPaths.RepoRoot, "models", "tiny-shapes");
    private static readonly OnnxRuntimeOptions OneThread = new() { IntraOpThreads = 1, OptimizedModelCacheFolder = SuiteGraphCache.Folder };

    private static LatentAnchoringOptions Green => new()
    {
        Concept = "green", Surrogate = "yellow", Iterations = 3, LearningRate = 0.01, WarmupSteps = 1, AnchorStrength = 10,
        Resolution = 64, Seed = 1, CheckpointEvery = 0,
    };

    [Test]
    [Category(TestCategories.Slow)]
    public void LibraryMembranesStayFrozen_OnlyTheNewOneIsTrainedAndWritten()
    {
        var dir = TestPaths.NewTempDir("spm-grow");
        string[] library = [Path.Combine(Model, "spm", "circle.safetensors"), Path.Combine(Model, "spm", "red.safetensors")];
        var grown = Path.Combine(dir, "green-grown.safetensors");
        var plain = Path.Combine(dir, "green-plain.safetensors");

        using (var t = LatentAnchoringTrainer.Create(Model, Green with { LibrarySpms = library }, OneThread))
        {
            // Stacked tensors: rank 1 of ours, then circle's and red's columns.
            var before = t.Parameters.ToDictionary(p => p.Name, p => p.Value.ToArray());
            t.Train(new TrainingOutput(grown));
            int changedOwn = 0;
            foreach (var p in t.Parameters)
            {
                var old = before[p.Name];
                bool isDown = p.Name.EndsWith(".down", StringComparison.Ordinal);
                if (isDown)
                {
                    int rowLen = p.Value.Length / p.Shape[0];
                    Assert.That(p.Shape[0], Is.EqualTo(3), p.Name);
                    Assert.That(p.Value.AsSpan(rowLen).SequenceEqual(old.AsSpan(rowLen)), Is.True, $"{p.Name}: the library's rows changed");
                    if (!p.Value.AsSpan(0, rowLen).SequenceEqual(old.AsSpan(0, rowLen))) changedOwn++;
                }
                else
                {
                    Assert.That(p.Shape[^1], Is.EqualTo(3), p.Name);
                    for (int o = 0; o < p.Value.Length / 3; o++)
                    {
                        Assert.That(p.Value.AsSpan(o * 3 + 1, 2).SequenceEqual(old.AsSpan(o * 3 + 1, 2)), Is.True, $"{p.Name}: the library's columns changed (row {o})");
                        if (p.Value[o * 3] != old[o * 3]) changedOwn++;
                    }
                }
            }
            Assert.That(changedOwn, Is.GreaterThan(0), "the new membrane learned");
        }
        using (var t = LatentAnchoringTrainer.Create(Model, Green, OneThread))
            t.Train(new TrainingOutput(plain));

        var g = SpmFile.Load(grown);
        var p0 = SpmFile.Load(plain);
        Assert.That(g.Config.Prompts, Is.EqualTo(new[] { "green" }));
        Assert.That(g.Config.Rank, Is.EqualTo(1));
        Assert.That(g.Membranes.Select(m => (m.Key, string.Join(",", m.Down.Shape), string.Join(",", m.Up.Shape))),
            Is.EqualTo(p0.Membranes.Select(m => (m.Key, string.Join(",", m.Down.Shape), string.Join(",", m.Up.Shape)))), "the same layout as an ordinary SPM");
        Assert.That(g.Config.Extra[SpmMetadataKeys.Training], Does.Contain("\"library\":[\"circle.safetensors sha256:").And.Contain("red.safetensors sha256:"));
        Assert.That(p0.Config.Extra[SpmMetadataKeys.Training], Does.Not.Contain("library"));
        Assert.That(File.ReadAllBytes(grown), Is.Not.EqualTo(File.ReadAllBytes(plain)), "the combined model and the library's anchors change what the membrane learns");
        Assert.That(LatentAnchoringTrainer.SettingsJson(Green with { LibrarySpms = library }), Is.EqualTo(g.Config.Extra[SpmMetadataKeys.Training]));
    }

    [Test]
    public void AConceptTheLibraryAlreadyErasesIsRefused()
    {
        var ex = Assert.Throws<Spm.Core.SpmException>(() => LatentAnchoringTrainer.Create(Model,
            Green with { Concept = "Circle", LibrarySpms = [Path.Combine(Model, "spm", "circle.safetensors")] }, OneThread))!;
        Assert.That(ex.Message, Does.Contain("already erased by the library's circle.safetensors").And.Contain("--replace"));
    }
}
