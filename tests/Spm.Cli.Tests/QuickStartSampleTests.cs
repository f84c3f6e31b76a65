using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using Spm.Diffusion.Images;
using Spm.Samples.QuickStart;
using Spm.Shapes.World;
using Spm.Tests.Common;
using Spm.Training.Evaluation;

namespace Spm.Cli.Tests;

/// <summary>Runs the QuickStart sample's logic on the tiny fixture (2 steps, 64x64) and checks what it writes.</summary>
public class QuickStartSampleTests
{
    [Test]
    public async Task QuickStart_WritesDecodablePngsWithGatesFromFacilitatedTransport()
    {
        var output = TestPaths.NewTempDir("spm-quickstart");
        try
        {
            var spm = Path.Combine(TestPaths.Reference("all-layers"), "spm.safetensors");
            var log = new StringWriter();
            var written = await QuickStart.RunAsync(
                new QuickStartOptions(TestPaths.TinySd1, [spm], ["the reference concept", "a cat"], output, Steps: 2, Seed: 7, Size: 64),
                log);

            Assert.That(written, Has.Count.EqualTo(2));
            var gates = new List<double>();
            foreach (var path in written)
            {
                Assert.That(File.Exists(path), path);
                using var image = Image.Load<Rgb24>(path);
                Assert.That((image.Width, image.Height), Is.EqualTo((64, 64)));
                var parameters = PngImage.ReadParameters(path) ?? "";
                Assert.That(parameters, Does.Contain("SPM: spm.safetensors gate "));
                var text = parameters[(parameters.IndexOf("gate ", StringComparison.Ordinal) + 5)..];
                gates.Add(double.Parse(text[..text.IndexOf(' ')], System.Globalization.CultureInfo.InvariantCulture));
            }
            // The prompt naming the SPM's concept opens its gate fully (token union 1, square curve 1); the other less.
            Assert.That(gates[0], Is.EqualTo(1.0).Within(1e-3));
            Assert.That(gates[1], Is.LessThan(gates[0]));
            Assert.That(log.ToString(), Does.Contain("quickstart-0.png"));
        }
        finally
        {
            Directory.Delete(output, recursive: true);
        }
    }

    [Test]
    public async Task QuickStart_OnTheBuiltInModel_ErasesTheCircle_AndKeepsTheTriangle()
    {
        // What `dotnet run --project samples/QuickStart` runs by default (Program.cs): the built-in model, its circle
        // SPM, the README's seed. The images must be shapes the evaluator reads, not the random fixture's noise.
        var output = TestPaths.NewTempDir("spm-quickstart-builtin");
        try
        {
            var model = Path.Combine(TestPaths.RepoRoot, "models", "tiny-shapes");
            var log = new StringWriter();
            var written = await QuickStart.RunAsync(
                new QuickStartOptions(model, [Path.Combine(model, "spm", "circle.safetensors")],
                    ["a red circle on a white background", "a green triangle on a black background"], output, Seed: 1),
                log);
            var evaluator = new ShapeEvaluator();
            var judged = written.Select(path =>
            {
                var (rgb, h, w) = ImageGrid.LoadRgb(path);
                var j = evaluator.Evaluate(rgb, h, w);
                return (j.Shape.Value, j.Color.Value, j.Background.Value);
            }).ToList();
            // The README's picture: the red circle becomes a red square on white. The triangle prompt names no circle, so
            // the learned gate stays shut (the image is the base model's, whatever it drew).
            Assert.That(judged, Has.Count.EqualTo(2));
            Assert.That(judged[0], Is.EqualTo((ShapeKind.Square, ShapeColor.Red, ShapeBackground.White)));
            var lines = log.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.That(lines[1], Does.Contain("\"a green triangle on a black background\"").And.Contain("gate 0 (gamma 0, learned)"), log.ToString());
            Assert.That(lines[0], Does.Contain("gate 1.5 (gamma 1, learned)"), log.ToString());
            Assert.That(judged[1].Item2, Is.EqualTo(ShapeColor.Green));
        }
        finally
        {
            Directory.Delete(output, recursive: true);
        }
    }
}
