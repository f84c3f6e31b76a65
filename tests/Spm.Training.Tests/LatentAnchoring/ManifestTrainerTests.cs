using Spm.Core;
using Spm.Diffusion.Runtime;
using Spm.Tests.Common;
using Spm.Training.LatentAnchoring;

namespace Spm.Training.Tests.LatentAnchoring;

/// <summary>
/// A shard's concepts are isolated (one failing does not stop or change the others) and resumable (an interrupted
/// concept continues from its checkpoint to the same file an uninterrupted run writes; a finished one is skipped).
/// On the built-in model (64 pixels), a few iterations each.
/// </summary>
[NonParallelizable]
public class ManifestTrainerTests
{
    private static string Model => Path.Combine(TestPaths.RepoRoot, "models", "tiny-shapes");
    private static readonly OnnxRuntimeOptions OneThread = new() { IntraOpThreads = 1, OptimizedModelCacheFolder = SuiteGraphCache.Folder };

    private static TrainingManifest Manifest(int circleIterations) => TrainingManifest.Parse($"""
        defaults:
          warmup: 1
          checkpoint_every: 2
        concepts:
          - concept: circle
            surrogate: square
            iterations: {circleIterations}
            seed: 5
          - concept: red
            surrogate: blue
            iterations: 3
            seed: 6
        """, TrainingManifest.ModelDefaults(Model), "test.yaml");

    private sealed class Relay<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }

    /// <summary>Runs the manifest, cancelling once <paramref name="concept"/> has done <paramref name="step"/> steps (its checkpoint is then written).</summary>
    private static void RunAndStopAt(TrainingManifest m, string dir, string concept, int step)
    {
        using var cts = new CancellationTokenSource();
        var progress = new Relay<ManifestProgress>(p =>
        {
            if (p.Concept.Options.Concept == concept && p.Step?.Step == step) cts.Cancel();
        });
        Assert.Catch<OperationCanceledException>(() => ManifestTrainer.Run(Model, m, new ManifestRunOptions(dir, ShardSpec.All, OneThread), progress, cts.Token));
    }

    [Test]
    [Category(TestCategories.Slow)]
    public void InterruptedConceptResumesToTheUninterruptedFile_FinishedOnesAreSkipped()
    {
        var dir = TestPaths.NewTempDir("spm-manifest");
        var m = Manifest(circleIterations: 4);
        var straightPath = Path.Combine(dir, "straight-circle.safetensors");
        using (var t = LatentAnchoringTrainer.Create(Model, m.Concepts[0].Options, OneThread))
            t.Train(new TrainingOutput(straightPath));

        var outDir = Path.Combine(dir, "out");
        RunAndStopAt(m, outDir, "circle", 2);
        var circle = m.Concepts[0].OutputPath(outDir);
        Assert.That(File.Exists(circle), Is.False);
        Assert.That(File.Exists(circle + ".checkpoint.safetensors"), Is.True);

        var results = ManifestTrainer.Run(Model, m, new ManifestRunOptions(outDir, ShardSpec.All, OneThread));
        Assert.That(results.Select(r => r.State), Is.EqualTo(new[] { ManifestConceptState.Resumed, ManifestConceptState.Trained }));
        Assert.That(results[0].ResumedFrom, Is.EqualTo(2));
        Assert.That(File.ReadAllBytes(circle), Is.EqualTo(File.ReadAllBytes(straightPath)), "resumed file = uninterrupted file");
        Assert.That(File.Exists(circle + ".checkpoint.safetensors"), Is.False);

        var before = Directory.GetFiles(outDir).ToDictionary(f => f, File.ReadAllBytes);
        var again = ManifestTrainer.Run(Model, m, new ManifestRunOptions(outDir, ShardSpec.All, OneThread));
        Assert.That(again.Select(r => r.State), Is.All.EqualTo(ManifestConceptState.Skipped));
        foreach (var (f, bytes) in before) Assert.That(File.ReadAllBytes(f), Is.EqualTo(bytes), f);
        Assert.That(ManifestTrainer.WhyNotFinished(circle, m.Concepts[0].Options, "another model"), Does.Contain("another model"));
    }

    [Test]
    [Category(TestCategories.Slow)]
    public void AFailingConceptDoesNotStopTheOthers_NothingIsOverwrittenWithoutForce()
    {
        var dir = TestPaths.NewTempDir("spm-manifest");
        // A checkpoint of circle at 4 iterations, then the manifest changes circle to 5: its checkpoint no longer fits.
        RunAndStopAt(Manifest(circleIterations: 4), dir, "circle", 2);
        var changed = Manifest(circleIterations: 5);
        var circle = changed.Concepts[0].OutputPath(dir);
        var checkpoint = File.ReadAllBytes(circle + ".checkpoint.safetensors");

        var results = ManifestTrainer.Run(Model, changed, new ManifestRunOptions(dir, ShardSpec.All, OneThread));
        Assert.That(results.Select(r => r.State), Is.EqualTo(new[] { ManifestConceptState.Failed, ManifestConceptState.Trained }));
        Assert.That(results[0].Error, Does.Contain("SpmFormatException").And.Contain("fingerprint").And.Contain("checkpoint"));
        Assert.That(File.Exists(circle), Is.False);
        Assert.That(File.ReadAllBytes(circle + ".checkpoint.safetensors"), Is.EqualTo(checkpoint), "the other run's checkpoint is kept");
        Assert.That(File.Exists(changed.Concepts[1].OutputPath(dir)), Is.True, "red was trained after circle failed");

        // A finished file of other settings is kept and reported, unless --force.
        var red = File.ReadAllBytes(changed.Concepts[1].OutputPath(dir));
        var redChanged = TrainingManifest.Parse("concepts:\n  - concept: red\n    surrogate: blue\n    iterations: 2\n", TrainingManifest.ModelDefaults(Model));
        var kept = ManifestTrainer.Run(Model, redChanged, new ManifestRunOptions(dir, ShardSpec.All, OneThread));
        Assert.That(kept[0].State, Is.EqualTo(ManifestConceptState.Failed));
        Assert.That(kept[0].Error, Does.Contain("exists but the file was trained with other settings").And.Contain("--force"));
        Assert.That(File.ReadAllBytes(changed.Concepts[1].OutputPath(dir)), Is.EqualTo(red));

        var forced = ManifestTrainer.Run(Model, changed, new ManifestRunOptions(dir, ShardSpec.All, OneThread, Force: true));
        Assert.That(forced.Select(r => r.State), Is.EqualTo(new[] { ManifestConceptState.Trained, ManifestConceptState.Skipped }));
        Assert.That(File.Exists(circle), Is.True);
    }
}
