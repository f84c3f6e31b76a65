using System.Diagnostics;
using Spm.Core.SafeTensors;
using Spm.Tests.Common;

namespace Spm.Cli.Tests;

/// <summary>
/// Acceptance 2 of the trainer, literally: the built <c>spm</c> tool is started as its own process, killed with SIGKILL
/// (no chance to clean up) once a checkpoint exists, and continued with <c>--resume</c>; the final SPM file and the
/// loss log must be byte-identical to an uninterrupted run of the same seed and thread count.
/// </summary>
[TestFixture]
[NonParallelizable] // three training processes; running them beside other tests only makes all of them slower
public class TrainKillResumeTests
{
    // Generous: a quiet machine needs ~30 s for the whole test, a shared one under heavy load several minutes.
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(10);

    // Tiny but real: 6 iterations at 64x64 (8x8 latents; 128x128 cost a third more CPU and proved nothing more),
    // checkpoints after steps 2 and 4, one thread.
    private static string[] TrainArgs(string model, string output, params string[] extra) =>
    [
        "train", "--model", model, "--concept", "a photo of a cat", "--iterations", "6", "--resolution", "64",
        "--fixed-resolution", "--checkpoint-every", "2", "--threads", "1", "--seed", "3", "--warmup", "2", "--lr", "1e-2",
        "--out", output, .. extra,
    ];

    [Test]
    [Category(TestCategories.Slow)]
    public void SigkilledRunResumesToTheSameFileAsAnUninterruptedRun() => KillAndResume(TestPaths.TinySd1);

    /// <summary>The same on the tiny SDXL pipeline: two encoders, pooled embeddings and time ids in every UNet call.</summary>
    [Test]
    [Category(TestCategories.Slow)]
    public void SigkilledSdxlRunResumesToTheSameFileAsAnUninterruptedRun() => KillAndResume(TinySdxl.Folder);

    private static void KillAndResume(string model)
    {
        string[] TrainArgs(string output, params string[] extra) => TrainKillResumeTests.TrainArgs(model, output, extra);
        var dir = TestPaths.NewTempDir("spm-kill");
        var straight = Path.Combine(dir, "straight.safetensors");
        var resumed = Path.Combine(dir, "resumed.safetensors");
        var checkpoint = resumed + ".checkpoint.safetensors";

        // The uninterrupted run goes beside the one to be killed (one thread each, so results do not depend on it).
        var first = SpmProcess.Start(TrainArgs(straight));
        // --resume from the start, as a restart script would: without a checkpoint it simply begins at step 0.
        var victim = SpmProcess.Start(TrainArgs(resumed, "--resume"));
        var sw = Stopwatch.StartNew();
        while (!File.Exists(checkpoint) && !victim.HasExited && sw.Elapsed < Timeout) Thread.Sleep(20);
        Assert.That(victim.HasExited, Is.False, "the run ended before it could be killed:\n" + victim.Output);
        Assert.That(File.Exists(checkpoint), Is.True, "no checkpoint appeared in time:\n" + victim.Output);
        victim.KillHard(); // Process.Kill is SIGKILL on Unix: no finally blocks, no flushing
        Assert.That(victim.WaitForExit(Timeout), Is.Not.EqualTo(0), "a killed process does not exit cleanly");
        Assert.That(File.Exists(resumed), Is.False, "no output is written by an interrupted run");
        Assert.That(File.Exists(checkpoint), Is.True);
        int killedAfter = CheckpointStep(checkpoint);
        Assert.That(killedAfter, Is.InRange(2, 4), "killed between the first checkpoint and the end");
        Assert.That(first.WaitForExit(Timeout), Is.EqualTo(0), first.Output);

        var rest = SpmProcess.Start(TrainArgs(resumed, "--resume"));
        Assert.That(rest.WaitForExit(Timeout), Is.EqualTo(0), rest.Output);
        Assert.That(rest.Output, Does.Contain($"resumed from step {killedAfter}"));

        Assert.That(File.ReadAllBytes(resumed), Is.EqualTo(File.ReadAllBytes(straight)), "the SPM file of the killed+resumed run");
        Assert.That(File.ReadAllText(resumed + ".loss.csv"), Is.EqualTo(File.ReadAllText(straight + ".loss.csv")), "the loss log");
        Assert.That(File.Exists(checkpoint), Is.False, "the checkpoint is removed after the finished run");
    }

    private static int CheckpointStep(string path)
    {
        using var file = SafeTensorsFile.Open(path);
        return int.Parse(file.Metadata["step"], System.Globalization.CultureInfo.InvariantCulture);
    }
}
