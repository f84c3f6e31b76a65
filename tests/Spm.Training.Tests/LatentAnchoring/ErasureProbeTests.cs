using System.Globalization;
using Spm.Diffusion.Runtime;
using Spm.Tests.Common;
using Spm.Training.LatentAnchoring;

namespace Spm.Training.Tests.LatentAnchoring;

/// <summary>The fixed erasure probe: a measurement next to the training loss that must never change training.</summary>
[Parallelizable(ParallelScope.All)] // each test trains on one ONNX Runtime thread (OneThread) in its own folder
public class ErasureProbeTests
{
    private static readonly OnnxRuntimeOptions OneThread = new() { IntraOpThreads = 1, OptimizedModelCacheFolder = SuiteGraphCache.Folder };

    private static LatentAnchoringOptions Small(int iterations, bool probe) => TrainerTests.Small(iterations) with { ErasureProbe = probe };

    [Test]
    public void ProbeStepsSpreadOverTheSchedule()
    {
        Assert.That(ErasureProbePlan.Steps(30), Is.EqualTo(new[] { 1, 8, 15, 22, 29 }));
        Assert.That(ErasureProbePlan.Steps(4), Is.EqualTo(new[] { 1, 2, 3 }));
        Assert.That(ErasureProbePlan.Steps(2), Is.EqualTo(new[] { 1 }));
        Assert.That(ErasureProbePlan.Size(new LatentAnchoringOptions { Concept = "c", Resolution = 256 }), Is.EqualTo(128));
        Assert.That(ErasureProbePlan.Size(new LatentAnchoringOptions { Concept = "c", Resolution = 256, DynamicResolution = false }), Is.EqualTo(256));
    }

    [Test]
    [Category(TestCategories.Slow)]
    public async Task ProbeIsLoggedAndDoesNotChangeTheResult()
    {
        var dir = TestPaths.NewTempDir();
        var plain = new TrainingOutput(Path.Combine(dir, "plain.safetensors"));
        var probed = new TrainingOutput(Path.Combine(dir, "probed.safetensors"));
        using (var t = LatentAnchoringTrainer.Create(TestPaths.TinySd1, Small(4, probe: false), OneThread, SharedTrainingGraphs.Cache)) await t.TrainAsync(plain);
        TrainingResult result;
        using (var t = LatentAnchoringTrainer.Create(TestPaths.TinySd1, Small(4, probe: true), OneThread, SharedTrainingGraphs.Cache)) result = await t.TrainAsync(probed);

        Assert.That(File.ReadAllBytes(probed.Path), Is.EqualTo(File.ReadAllBytes(plain.Path)), "the probe has a generator of its own and only reads the membranes");
        var a = File.ReadAllLines(plain.LossLog);
        var b = File.ReadAllLines(probed.LossLog);
        Assert.That(a[0], Is.EqualTo(LossLog.Header));
        Assert.That(b[0], Is.EqualTo(LossLog.Header + ",probe_erasure,probe_relative,probe_rel_k1,probe_rel_k2,probe_rel_k3"));
        Assert.That(b, Has.Length.EqualTo(a.Length));
        for (int i = 1; i < a.Length; i++)
        {
            Assert.That(b[i], Does.StartWith(a[i] + ","), $"row {i}: the training columns are unchanged");
            Assert.That(b[i].Split(',').Length, Is.EqualTo(b[0].Split(',').Length));
        }

        var info = result.Probe!;
        Assert.That(info.Steps, Is.EqualTo(new[] { 1, 2, 3 }));
        Assert.That(info.Timesteps, Is.EqualTo(new[] { 1, 2, 3 }.Select(k => IterationSampler.ReferenceQueryTimestep(k, 4))));
        Assert.That(info.FrozenLosses.All(v => v > 0 && double.IsFinite(v)), Is.True);
        // A fresh membrane (up = 0) is an exact no-op: the first reading is the frozen model's loss.
        var first = result.History[0].Probe!;
        for (int p = 0; p < 3; p++) Assert.That(first.Losses[p], Is.EqualTo(info.FrozenLosses[p]).Within(1e-9).Percent);
        Assert.That(first.MeanRelative, Is.EqualTo(1.0).Within(1e-9));
        // The row's numbers are the reading's.
        var lastRow = b[^1].Split(',');
        Assert.That(double.Parse(lastRow[12], CultureInfo.InvariantCulture), Is.EqualTo(result.History[^1].Probe!.MeanRelative));
        Assert.That(result.Timings.Probe, Is.GreaterThan(TimeSpan.Zero));
    }

    [Test]
    [Category(TestCategories.Slow)]
    public async Task ProbeFallsWhenTheMembraneLearnsWithoutAnchoring()
    {
        // 16 iterations at 128x128 with 4 sampling steps, lr 1e-2, no anchoring: the erasure loss on the fixed
        // probe, which the k draw cannot move, must fall clearly (measured 1 -> ~0.5 at this seed and thread count).
        var dir = TestPaths.NewTempDir();
        var options = Small(16, probe: true) with { Action = TrainingAction.Erase };
        using var t = LatentAnchoringTrainer.Create(TestPaths.TinySd1, options, OneThread, SharedTrainingGraphs.Cache);
        var result = await t.TrainAsync(new TrainingOutput(Path.Combine(dir, "erase.safetensors")));
        var s = LossWindowSummary.From(result.History, window: 3);
        TestContext.Out.WriteLine($"probe relative {s.FirstProbeRelative:F3} -> {s.LastProbeRelative:F3}, probe ratio {s.ProbeRatio:F3}, raw ratio {s.ErasureRatio:F3}");
        Assert.That(s.LastProbeRelative, Is.LessThan(0.8 * s.FirstProbeRelative));
        Assert.That(s.ProbeRatio, Is.LessThan(0.8));
    }

    [Test]
    [Category(TestCategories.Slow)]
    public async Task ResumedRunLogsTheSameProbe()
    {
        var dir = TestPaths.NewTempDir();
        var options = Small(6, probe: true) with { CheckpointEvery = 3 };
        var straight = new TrainingOutput(Path.Combine(dir, "straight.safetensors"));
        using (var t = LatentAnchoringTrainer.Create(TestPaths.TinySd1, options, OneThread, SharedTrainingGraphs.Cache)) await t.TrainAsync(straight);
        var resumed = new TrainingOutput(Path.Combine(dir, "resumed.safetensors"), Resume: true);
        using (var cts = new CancellationTokenSource())
        using (var t = LatentAnchoringTrainer.Create(TestPaths.TinySd1, options, OneThread, SharedTrainingGraphs.Cache))
        {
            var stop = new SyncProgress(p => { if (p.Step == 4) cts.Cancel(); });
            Assert.That(async () => await t.TrainAsync(resumed, stop, cts.Token), Throws.InstanceOf<OperationCanceledException>());
        }
        // Without the probe, the checkpoint is refused (the log's columns would not match).
        using (var t = LatentAnchoringTrainer.Create(TestPaths.TinySd1, options with { ErasureProbe = false }, OneThread, SharedTrainingGraphs.Cache))
            Assert.That(async () => await t.TrainAsync(resumed), Throws.InstanceOf<Spm.Core.SpmFormatException>().With.Message.Contains("other options"));
        using (var t = LatentAnchoringTrainer.Create(TestPaths.TinySd1, options, OneThread, SharedTrainingGraphs.Cache)) await t.TrainAsync(resumed);
        Assert.That(File.ReadAllLines(resumed.LossLog), Is.EqualTo(File.ReadAllLines(straight.LossLog)));
        Assert.That(File.ReadAllBytes(resumed.Path), Is.EqualTo(File.ReadAllBytes(straight.Path)));
    }

    [Test]
    public void WindowSummaryReadsTheAcceptanceNumbers()
    {
        var draw = new IterationDraw(1, 128, 128, 966);
        var timings = new TrainingTimings();
        // Erasure 8, 8, 4, 2 with frozen 8 each; anchors 1, 9, 1, 1; probe relative 1, 1, 0.5, 0.25.
        double[] era = [8, 8, 4, 2], anc = [1, 9, 1, 1], probeRel = [1, 1, 0.5, 0.25];
        var history = Enumerable.Range(0, 4).Select(i => new TrainingProgress(i + 1, 4, era[i], era[i], anc[i], 0.1, draw, timings, false)
        {
            FrozenErasureLoss = 8,
            Probe = new ErasureProbeReading([2 * probeRel[i], 2 * probeRel[i]], [probeRel[i], probeRel[i]]),
        }).ToList();
        var s = LossWindowSummary.From(history, window: 2);
        Assert.That(s.Window, Is.EqualTo(2));
        Assert.That(s.ErasureRatio, Is.EqualTo(3.0 / 8.0).Within(1e-12));
        Assert.That((s.FirstRelative, s.LastRelative), Is.EqualTo((1.0, 0.375)));
        Assert.That(s.ProbeRatio, Is.EqualTo(0.375 / 1.0).Within(1e-12));
        Assert.That(s.LastProbeRelative, Is.EqualTo(0.375).Within(1e-12));
        Assert.That(s.AnchorBelowErasure, Is.EqualTo(3));
        Assert.That(LossWindowSummary.From(history, window: 10).Window, Is.EqualTo(4), "the window shrinks to a short run");
        Assert.That(double.IsNaN(LossWindowSummary.From([history[0] with { Probe = null }]).ProbeRatio), Is.True);
    }

    private sealed class SyncProgress(Action<TrainingProgress> onReport) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => onReport(value);
    }
}
