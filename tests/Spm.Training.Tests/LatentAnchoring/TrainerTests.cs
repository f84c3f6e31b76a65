using Spm.Core;
using Spm.Core.Membranes;
using Spm.Diffusion.Runtime;
using Spm.Tests.Common;
using Spm.Training.LatentAnchoring;

namespace Spm.Training.Tests.LatentAnchoring;

[Parallelizable(ParallelScope.All)] // each test trains on one ONNX Runtime thread (OneThread) in its own folder
public class TrainerTests
{
    internal static LatentAnchoringOptions Small(int iterations, int checkpointEvery = 0) => new()
    {
        Concept = "a photo of a cat",
        Iterations = iterations,
        // One fixed small size keeps the suite fast: each new latent size builds a gradient graph.
        Resolution = 128,
        DynamicResolution = false,
        LearningRate = 1e-2,
        WarmupSteps = 2,
        Seed = 42,
        SamplingSteps = 4,
        CheckpointEvery = checkpointEvery,
    };

    private static readonly OnnxRuntimeOptions OneThread = new() { IntraOpThreads = 1, OptimizedModelCacheFolder = SuiteGraphCache.Folder };

    private sealed class SyncProgress(Action<TrainingProgress> onReport) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => onReport(value);
    }

    [Test]
    [Category(TestCategories.Slow)]
    public async Task TrainsWritesOfficialLayoutAndReducesErasureLoss()
    {
        var dir = TestPaths.NewTempDir();
        var output = new TrainingOutput(Path.Combine(dir, "cat.safetensors"));
        using var trainer = LatentAnchoringTrainer.Create(TestPaths.TinySd1, Small(12), OneThread, SharedTrainingGraphs.Cache);
        var result = await trainer.TrainAsync(output);

        Assert.That(result.History, Has.Count.EqualTo(12));
        Assert.That(result.History.All(h => double.IsFinite(h.Loss)), Is.True);
        // A fresh membrane is a no-op, so the first anchoring loss is exactly zero.
        Assert.That(result.History[0].AnchorLoss, Is.EqualTo(0).Within(1e-12));
        var adapter = SpmFile.Load(output.Path);
        Assert.That(adapter.Config.Prompts, Is.EqualTo(new[] { "a photo of a cat" }));
        Assert.That(adapter.Membranes, Has.Count.EqualTo(72));
        Assert.That(adapter.Config.Extra.Keys, Is.SupersetOf(new[] { "surrogate", "base_model", "training", "writer" }));
        Assert.That(adapter.Config.Extra.Keys, Has.No.Member("generator"), "docs/spm-format.md names the key 'writer'");
        Assert.That(adapter.Config.Writer, Is.EqualTo(SpmMetadataKeys.CurrentWriter));
        Assert.That(adapter.Membranes.Any(m => m.Up.Data.Any(v => v != 0)), Is.True, "up matrices moved away from zero");
        Assert.That(File.Exists(output.LossLog), Is.True);
        Assert.That(File.ReadAllLines(output.LossLog), Has.Length.EqualTo(13));
        Assert.That(File.Exists(output.Checkpoint), Is.False, "the checkpoint is removed after a finished run");
    }

    [Test]
    [Category(TestCategories.Slow)]
    public async Task OneGradientGraphServesEveryLatentSize()
    {
        var dir = TestPaths.NewTempDir();
        var options = Small(3) with { Resolution = 256, DynamicResolution = true, Seed = 5 };
        // The shared graph may come from the cache (built by another test at 128x128): all the better, since the claim
        // is that a graph built at one size serves the others. The per-size trainer builds its own graphs, one per size.
        using var shared = LatentAnchoringTrainer.Create(TestPaths.TinySd1, options, OneThread, SharedTrainingGraphs.Cache);
        var a = await shared.TrainAsync(new TrainingOutput(Path.Combine(dir, "shared.safetensors")));
        using var perSize = LatentAnchoringTrainer.Create(TestPaths.TinySd1, options, OneThread);
        perSize.ReuseGradientGraphAcrossSizes = false;
        var b = await perSize.TrainAsync(new TrainingOutput(Path.Combine(dir, "per-size.safetensors")));
        Assert.That(a.History.Select(h => (h.Draw.Height, h.Draw.Width)).Distinct().Count(), Is.GreaterThan(1), "the seed draws several sizes");
        for (int i = 0; i < a.History.Count; i++)
        {
            Assert.That(a.History[i].Draw, Is.EqualTo(b.History[i].Draw));
            Assert.That(a.History[i].Loss, Is.EqualTo(b.History[i].Loss).Within(1e-5).Percent);
        }
    }

    [Test]
    [Category(TestCategories.Slow)]
    public async Task SameSeedGivesIdenticalFile_WithOrWithoutASharedGraph()
    {
        // One trainer builds its own gradient graph, the other takes the shared one (built by whichever test came
        // first): same seed, same bytes, so sharing a graph never changes a result.
        var dir = TestPaths.NewTempDir();
        var a = new TrainingOutput(Path.Combine(dir, "a.safetensors"));
        var b = new TrainingOutput(Path.Combine(dir, "b.safetensors"));
        using (var t = LatentAnchoringTrainer.Create(TestPaths.TinySd1, Small(5), OneThread)) await t.TrainAsync(a);
        using (var t = LatentAnchoringTrainer.Create(TestPaths.TinySd1, Small(5), OneThread, SharedTrainingGraphs.Cache)) await t.TrainAsync(b);
        Assert.That(File.ReadAllBytes(b.Path), Is.EqualTo(File.ReadAllBytes(a.Path)));
    }

    [Test]
    [Category(TestCategories.Slow)]
    public async Task AGraphCache_BuildsEachGraphOnce_ForTrainersOfOtherConceptsAndSeeds()
    {
        var dir = TestPaths.NewTempDir();
        using var cache = new TrainingGraphCache();
        using (var t = LatentAnchoringTrainer.Create(TestPaths.TinySd1, Small(2), OneThread, cache))
            await t.TrainAsync(new TrainingOutput(Path.Combine(dir, "cat.safetensors")));
        Assert.That(cache.GraphsBuilt, Is.EqualTo(1));
        // The graph depends on the model, layout and shapes only: another concept and seed reuse it, even after the
        // first trainer is disposed (the cache owns the graph).
        using (var t = LatentAnchoringTrainer.Create(TestPaths.TinySd1, Small(2) with { Concept = "a red car", Seed = 9 }, OneThread, cache))
            await t.TrainAsync(new TrainingOutput(Path.Combine(dir, "car.safetensors")));
        Assert.That(cache.GraphsBuilt, Is.EqualTo(1));
        // Another rank is another graph.
        using (var t = LatentAnchoringTrainer.Create(TestPaths.TinySd1, Small(2) with { Rank = 2, Alpha = 2 }, OneThread, cache))
            await t.TrainAsync(new TrainingOutput(Path.Combine(dir, "rank2.safetensors")));
        Assert.That(cache.GraphsBuilt, Is.EqualTo(2));
    }

    [Test]
    [Category(TestCategories.Slow)]
    public async Task ResumeAfterInterruptionGivesTheSameFile()
    {
        var dir = TestPaths.NewTempDir();
        var straight = new TrainingOutput(Path.Combine(dir, "straight.safetensors"));
        using (var t = LatentAnchoringTrainer.Create(TestPaths.TinySd1, Small(8, checkpointEvery: 3), OneThread, SharedTrainingGraphs.Cache)) await t.TrainAsync(straight);

        var interrupted = new TrainingOutput(Path.Combine(dir, "resumed.safetensors"), Resume: true);
        using (var cts = new CancellationTokenSource())
        using (var t = LatentAnchoringTrainer.Create(TestPaths.TinySd1, Small(8, checkpointEvery: 3), OneThread, SharedTrainingGraphs.Cache))
        {
            var stopAfterFifth = new SyncProgress(p => { if (p.Step == 5) cts.Cancel(); });
            Assert.That(async () => await t.TrainAsync(interrupted, stopAfterFifth, cts.Token), Throws.InstanceOf<OperationCanceledException>());
        }
        Assert.That(File.Exists(interrupted.Checkpoint), Is.True, "the step-3 checkpoint survives the interruption");
        Assert.That(File.Exists(interrupted.Path), Is.False);
        using (var t = LatentAnchoringTrainer.Create(TestPaths.TinySd1, Small(8, checkpointEvery: 3), OneThread, SharedTrainingGraphs.Cache))
        {
            var result = await t.TrainAsync(interrupted);
            Assert.That(result.ResumedFrom, Is.EqualTo(3));
        }
        Assert.That(File.ReadAllBytes(interrupted.Path), Is.EqualTo(File.ReadAllBytes(straight.Path)));
        Assert.That(File.ReadAllLines(interrupted.LossLog), Is.EqualTo(File.ReadAllLines(straight.LossLog)));
    }

    [Test]
    [Category(TestCategories.Slow)]
    public async Task ResumeWithOtherOptionsIsRefused()
    {
        var dir = TestPaths.NewTempDir();
        var output = new TrainingOutput(Path.Combine(dir, "x.safetensors"), Resume: true);
        using (var cts = new CancellationTokenSource())
        using (var t = LatentAnchoringTrainer.Create(TestPaths.TinySd1, Small(6, checkpointEvery: 2), OneThread, SharedTrainingGraphs.Cache))
        {
            var stop = new SyncProgress(p => { if (p.Step == 2) cts.Cancel(); });
            Assert.That(async () => await t.TrainAsync(output, stop, cts.Token), Throws.InstanceOf<OperationCanceledException>());
        }
        using var other = LatentAnchoringTrainer.Create(TestPaths.TinySd1, Small(6, checkpointEvery: 2) with { Seed = 7 }, OneThread, SharedTrainingGraphs.Cache);
        var ex = Assert.ThrowsAsync<SpmFormatException>(async () => await other.TrainAsync(output))!;
        Assert.That(ex.Message, Does.Contain("other options"));
        Assert.That(ex.Message, Does.Contain(output.Checkpoint));
    }

    [Test]
    [Category(TestCategories.Slow)]
    public async Task PreviewGridsAreWrittenAndDoNotChangeTheResult()
    {
        var dir = TestPaths.NewTempDir();
        var plain = new TrainingOutput(Path.Combine(dir, "plain.safetensors"));
        var previewed = new TrainingOutput(Path.Combine(dir, "previewed.safetensors"));
        using (var t = LatentAnchoringTrainer.Create(TestPaths.TinySd1, Small(2), OneThread, SharedTrainingGraphs.Cache)) await t.TrainAsync(plain);
        var options = Small(2) with { PreviewEvery = 2, PreviewSteps = 2, PreviewPrompts = ["a photo of a dog", "a red car"] };
        using (var t = LatentAnchoringTrainer.Create(TestPaths.TinySd1, options, OneThread, SharedTrainingGraphs.Cache))
        {
            var result = await t.TrainAsync(previewed);
            Assert.That(result.Timings.Preview, Is.GreaterThan(TimeSpan.Zero));
        }
        Assert.That(File.ReadAllBytes(previewed.Path), Is.EqualTo(File.ReadAllBytes(plain.Path)), "previews use their own generator");
        Assert.That(File.Exists(previewed.Preview(1)), Is.False);
        var (_, h, w) = Spm.Training.Evaluation.ImageGrid.LoadRgb(previewed.Preview(2));
        // 3 rows (concept + 2 prompts) x 2 columns (base | membrane) of 128x128 cells with 2-pixel gaps.
        Assert.That((h, w), Is.EqualTo((3 * 128 + 4 * 2, 2 * 128 + 3 * 2)));
    }

    [Test]
    [Category(TestCategories.Slow)]
    public async Task ACudaRequestedRun_MakesOneProviderChoiceForEverySession()
    {
        // No GPU here, so CUDA cannot load: every session of the run (text encoder, injected UNet, shape probe,
        // gradient graph, preview VAE) must land on the CPU with the reason, none on a device of its own. On a machine
        // where CUDA loads, the same assertions hold with every session on CUDA.
        var dir = TestPaths.NewTempDir();
        var options = Small(2) with { PreviewEvery = 2, PreviewSteps = 2, PreviewPrompts = [] };
        using var trainer = LatentAnchoringTrainer.Create(TestPaths.TinySd1, options,
            new OnnxRuntimeOptions { Provider = ExecutionProviderKind.Cuda, IntraOpThreads = 1 });
        await trainer.TrainAsync(new TrainingOutput(Path.Combine(dir, "cat.safetensors")));

        var opened = trainer.Sessions.Opened;
        Assert.That(opened.Select(s => s.Name), Has.Some.Contains("text_encoder").And.Some.Contains("vae_decoder"));
        Assert.That(opened, Has.Count.GreaterThanOrEqualTo(5), string.Join(", ", opened));
        Assert.That(opened.Select(s => s.Provider).Distinct(), Is.EqualTo(new[] { trainer.Sessions.Provider }), string.Join(", ", opened));
        if (trainer.Sessions.Provider == ExecutionProviderKind.Cpu)
            Assert.That(trainer.Sessions.FallbackReason, Does.Contain("CUDA"));
        else
            Assert.That(trainer.Sessions.FallbackReason, Is.Null);
        Assert.That(trainer.Sessions.Requested.Provider, Is.EqualTo(ExecutionProviderKind.Cuda), "the caller's options are kept as given");
    }

    [Test]
    public void ExistingOutputIsNotOverwrittenWithoutForce()
    {
        var dir = TestPaths.NewTempDir();
        var path = Path.Combine(dir, "keep.safetensors");
        File.WriteAllText(path, "precious");
        using var t = LatentAnchoringTrainer.Create(TestPaths.TinySd1, Small(1), OneThread, SharedTrainingGraphs.Cache);
        Assert.That(async () => await t.TrainAsync(new TrainingOutput(path)), Throws.TypeOf<IOException>().With.Message.Contains("--force"));
        Assert.That(File.ReadAllText(path), Is.EqualTo("precious"));
    }
}
