using Spm.Cli.Commands;
using Spm.Tests.Common;
using Spm.Training.LatentAnchoring;

namespace Spm.Cli.Tests;

public class TrainProbeCommandTests
{
    [Test]
    [Category(TestCategories.Slow)]
    public void ProbeColumnsAndTheAcceptanceReadingArePrinted()
    {
        var dir = TestPaths.NewTempDir();
        var output = Path.Combine(dir, "cat.safetensors");
        var (code, stdout, stderr) = CliHarness.Run(c => [TrainCommand.Create(c)],
            "train", "--model", TestPaths.TinySd1, "--concept", "a photo of a cat", "--iterations", "3", "--resolution", "128",
            "--fixed-resolution", "--threads", "1", "--warmup", "1", "--lr", "1e-2", "--checkpoint-every", "0", "--probe", "--out", output);
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stdout, Does.Contain("erasure loss last-3 / first-3 average: "));
        Assert.That(stdout, Does.Contain("; fixed probe "));
        Assert.That(stdout, Does.Match(@"anchoring loss below erasure loss in \d/3 iterations"));
        var header = File.ReadLines(output + ".loss.csv").First();
        Assert.That(header, Is.EqualTo(LossLog.HeaderWithProbe(ErasureProbePlan.Steps(30))));
        Assert.That(header, Does.EndWith("probe_rel_k1,probe_rel_k8,probe_rel_k15,probe_rel_k22,probe_rel_k29"));
    }

    [Test]
    [Category(TestCategories.Slow)]
    public void TrainWithCudaRequested_PrintsTheFallbackReasonOnce_AndTrainsOnTheCpu()
    {
        // This machine has no GPU: the run must say why it is on the CPU, once for the whole run.
        var dir = TestPaths.NewTempDir();
        var output = Path.Combine(dir, "cat.safetensors");
        var (code, stdout, stderr) = CliHarness.Run(c => [TrainCommand.Create(c)],
            "train", "--model", TestPaths.TinySd1, "--concept", "a photo of a cat", "--iterations", "1", "--resolution", "128",
            "--fixed-resolution", "--threads", "1", "--checkpoint-every", "0", "--provider", "cuda", "--out", output);
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(File.Exists(output), Is.True);
        var warnings = stderr.Split('\n').Where(l => l.Contains("running on the CPU", StringComparison.Ordinal)).ToList();
        Assert.That(warnings, Has.Count.EqualTo(1), stderr);
        Assert.That(warnings[0], Does.StartWith("spm: warning: CUDA"));
    }
}
