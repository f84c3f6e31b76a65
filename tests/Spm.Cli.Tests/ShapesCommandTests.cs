using System.CommandLine;
using System.Text.Json;
using Spm.Cli.Commands;
using Spm.Shapes.World;
using Spm.Tests.Common;

namespace Spm.Cli.Tests;

[TestFixture]
public class ShapesCommandTests
{
    private static (int Code, string Out, string Err) Run(params string[] args)
        => CliHarness.Run(c => [ShapesCommand.Create(c)], args);

    [Test]
    public void RenderWritesCaptionedPicturesThatJudgeReadsBack()
    {
        var dir = TestPaths.NewTempDir("spm-shapes");
        try
        {
            var (code, stdout, stderr) = Run("shapes", "render", "--count", "12", "--seed", "5", "--out", dir);
            Assert.That(code, Is.EqualTo(0), stderr);
            Assert.That(stdout, Does.Contain("wrote 12 pictures"));
            var lines = File.ReadAllLines(Path.Combine(dir, "captions.jsonl"));
            Assert.That(lines, Has.Length.EqualTo(12));
            Assert.That(File.Exists(Path.Combine(dir, "grid.png")));

            var files = lines.Select(l => Path.Combine(dir, JsonDocument.Parse(l).RootElement.GetProperty("file").GetString()!)).ToArray();
            (code, stdout, stderr) = Run(["shapes", "judge", "--json", .. files]);
            Assert.That(code, Is.EqualTo(0), stderr);
            var judged = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.That(judged, Has.Length.EqualTo(12));
            for (int i = 0; i < 12; i++)
            {
                var truth = JsonDocument.Parse(lines[i]).RootElement;
                var read = JsonDocument.Parse(judged[i]).RootElement;
                foreach (var key in new[] { "shape", "color", "pattern", "background" })
                    Assert.That(read.GetProperty(key).GetString(), Is.EqualTo(truth.GetProperty(key).GetString()), $"{files[i]} {key}");
                // The caption names a subset of the true attributes.
                var prompt = ShapePrompt.Parse(truth.GetProperty("caption").GetString()!)!;
                Assert.That(prompt.Shape.HasValue && ShapeVocabulary.Word(prompt.Shape.Value) == truth.GetProperty("shape").GetString());
            }

            // Same seed, same bytes.
            var again = TestPaths.NewTempDir("spm-shapes");
            try
            {
                Assert.That(Run("shapes", "render", "--count", "3", "--seed", "5", "--out", again).Code, Is.EqualTo(0));
                Assert.That(File.ReadAllBytes(Path.Combine(again, "000002.png")), Is.EqualTo(File.ReadAllBytes(files[2])));
            }
            finally
            {
                Directory.Delete(again, true);
            }
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Test]
    public void JudgeOfAMissingOrBrokenFileIsAOneLineError()
    {
        var (code, stdout, stderr) = Run("shapes", "judge", "/no/such.png");
        Assert.That(code, Is.Not.EqualTo(0));
        Assert.That(stderr.Trim(), Does.StartWith("spm: error:").And.Contain("/no/such.png"));
        Assert.That(stderr.Trim().Split('\n'), Has.Length.EqualTo(1));

        var dir = TestPaths.NewTempDir("spm-shapes");
        try
        {
            var broken = Path.Combine(dir, "broken.png");
            File.WriteAllBytes(broken, [0x89, 0x50, 0x4E, 0x47, 1, 2, 3]);
            (code, _, stderr) = Run("shapes", "judge", broken);
            Assert.That(code, Is.Not.EqualTo(0));
            Assert.That(stderr, Does.Contain("broken.png"));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
