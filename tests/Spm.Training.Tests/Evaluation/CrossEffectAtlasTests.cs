using Spm.Core;
using Spm.Core.Atlas;
using Spm.Diffusion.Membranes;
using Spm.Diffusion.Pipelines;
using Spm.Tests.Common;
using Spm.Training.Evaluation;

namespace Spm.Training.Tests.Evaluation;

/// <summary>Concept atlases whose edges are measured membrane cross-effects.</summary>
[TestFixture]
public class CrossEffectAtlasTests
{
    private static string Model => Path.Combine(TestPaths.RepoRoot, "models", "tiny-shapes");

    [Test]
    public void FromMatrix_ClustersTheReachSimilarity_AndRecordsTheRawChanges()
    {
        // Two families of three membranes: each changes its own concept by 0.5, its family's by 0.2 (a reach of 0.4)
        // and the other family's by 0.01 (0.02).
        string[] names = ["a", "b", "c", "d", "e", "f"];
        var change = new double[6, 6];
        for (int s = 0; s < 6; s++)
            for (int p = 0; p < 6; p++)
                change[s, p] = s == p ? 0.5 : (s < 3) == (p < 3) ? 0.2 : 0.01;
        var matrix = new CrossEffectMatrix(names, names.Select(n => $"concept {n}").ToArray(), change, new double[6, 6], false, 2);
        var atlas = CrossEffectAtlas.FromMatrix(matrix, new ConceptAtlasOptions(new SparsifyOptions(4), Communities: 2), new Dictionary<string, string> { ["model"] = "m" });

        Assert.That(atlas.Concepts, Is.EqualTo(new[] { "concept a", "concept b", "concept c", "concept d", "concept e", "concept f" }));
        Assert.That(Partitions.Same(atlas.Hierarchy.Communities, [0, 0, 0, 1, 1, 1]), string.Join(",", atlas.Hierarchy.Communities));
        var sim = matrix.ReachSimilarity();
        Assert.That(atlas.Graph.EdgeCount, Is.GreaterThan(0));
        foreach (var e in atlas.Graph.Edges())
            Assert.That(e.Weight, Is.EqualTo(sim[e.Source, e.Target]).Within(1e-12), $"edge {e.Source}-{e.Target}");
        Assert.That(sim[0, 1], Is.EqualTo(0.4).Within(1e-12));
        Assert.That(sim[0, 3], Is.EqualTo(0.02).Within(1e-12));
        Assert.That(atlas.Metadata["model"], Is.EqualTo("m"));
        Assert.That(atlas.Metadata["edges"], Is.EqualTo("cross-effects"));
        Assert.That(atlas.Metadata["spms"], Is.EqualTo("a, b, c, d, e, f"));
        Assert.That(atlas.Metadata["gate"], Is.EqualTo("open"));
        Assert.That(atlas.Metadata["change[a]"], Is.EqualTo("0.5 0.2 0.2 0.01 0.01 0.01"));
        Assert.That(atlas.Metadata["change[f]"], Is.EqualTo("0.01 0.01 0.01 0.2 0.2 0.5"));
        Assert.That(atlas.Similarity, Does.StartWith("membrane cross-effects").And.Contain("(2 seeds, gate open)"));

        var dead = new CrossEffectMatrix(["x", "y", "z"], ["x", "y", "z"], new double[3, 3], new double[3, 3], false, 1);
        Assert.That(() => CrossEffectAtlas.FromMatrix(dead), Throws.InstanceOf<SpmException>().With.Message.Contains("SPM 'x' does not change the images of its own concept \"x\""));
    }

    [Test]
    [Category(TestCategories.Slow)]
    public void Build_OnTheShippedSpms_IsTheAtlasOfTheirMeasuredCrossEffects()
    {
        string[] files = ["circle", "red", "striped"];
        var spms = LoadedSpms.Load(Model, files.Select(f => Path.Combine(Model, "spm", f + ".safetensors")).ToArray());
        using var pipeline = StableDiffusionPipeline.Load(Model, new PipelineOptions { UNetSource = spms.UNetSource });
        var generator = new EvalImageGenerator(pipeline, spms, new EvalGenerationSettings { Steps = 6, GuidanceScale = 3, BatchSize = 8 });
        var reports = new List<double>();
        var atlas = CrossEffectAtlas.Build(generator, measure: new CrossEffectOptions(ImagesPerPrompt: 1, Seed: 2),
            progress: new SyncReports(reports));
        var matrix = MembraneCrossEffects.Measure(generator, ["circle", "red", "striped"], new CrossEffectOptions(1, 2));
        var expected = CrossEffectAtlas.FromMatrix(matrix);
        Assert.That(atlas.Concepts, Is.EqualTo(new[] { "circle", "red", "striped" }), "each SPM's concept");
        Assert.That(atlas.ToJson(), Is.EqualTo(expected.ToJson()));
        Assert.That(reports, Is.Not.Empty);
        Assert.That(reports[^1], Is.EqualTo(1.0).Within(1e-12));
        Assert.That(() => CrossEffectAtlas.Build(generator, measure: new CrossEffectOptions(1), cancellationToken: new CancellationToken(true)),
            Throws.InstanceOf<OperationCanceledException>());
    }

    [Test]
    [Category(TestCategories.Slow)]
    public void Build_RefusesTwoSpmsOfOneConcept()
    {
        string[] files = ["circle", "circle-noanchor", "red"];
        var spms = LoadedSpms.Load(Model, files.Select(f => Path.Combine(Model, "spm", f + ".safetensors")).ToArray());
        using var pipeline = StableDiffusionPipeline.Load(Model, new PipelineOptions { UNetSource = spms.UNetSource });
        var generator = new EvalImageGenerator(pipeline, spms, new EvalGenerationSettings { Steps = 2, GuidanceScale = 3 });
        Assert.That(() => CrossEffectAtlas.Build(generator), Throws.InstanceOf<SpmException>().With.Message.Contains("erase the same concept 'circle'"));
    }

    private sealed class SyncReports(List<double> into) : IProgress<double>
    {
        public void Report(double value) => into.Add(value);
    }
}
