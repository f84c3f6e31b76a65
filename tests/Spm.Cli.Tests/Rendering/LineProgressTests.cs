using Spm.Cli.Rendering;

namespace Spm.Cli.Tests.Rendering;

[TestFixture]
public class LineProgressTests
{
    [Test]
    public void EachPhase_HasItsOwnRateAndRemainingTime_AndTheElapsedTimeIsTheWholeRun()
    {
        double now = 0;
        var output = new StringWriter { NewLine = "\n" };
        var lines = new ProgressBars.LineProgress("train", 100, "it", output, () => now);
        now = 50;
        lines.Report(new ProgressUpdate(10, 100, "autoencoder"));     // 10 its in 50 s: 5 s/it, 90 left
        now = 500;
        lines.Report(new ProgressUpdate(100, 100));
        // The next phase has another total: its rate counts from the end of the one before.
        now = 510;
        lines.Report(new ProgressUpdate(5, 50, "decoder"));          // the phase began at the last report (500): 5 in 10 s
        now = 520;
        lines.Report(new ProgressUpdate(10, 50));
        // A phase of the same length after it: less done than before starts it.
        now = 600;
        lines.Report(new ProgressUpdate(50, 50));
        now = 640;
        lines.Report(new ProgressUpdate(10, 50, "unet 2/2"));
        var text = output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(text, Is.EqualTo(new[]
        {
            "autoencoder: 10/100 its, 5.00 s/it, elapsed 50.0s, ETA 00:07:30",
            "decoder: 5/50 its, 2.00 s/it, elapsed 510.0s, ETA 00:01:30",
            "decoder: 10/50 its, 2.00 s/it, elapsed 520.0s, ETA 00:01:20",
            "unet 2/2: 10/50 its, 4.00 s/it, elapsed 640.0s, ETA 00:02:40",
        }), string.Join("\n", text));
    }
}
