using System.Text.Json;
using Spm.Core;
using Spm.Core.Randomness;
using Spm.Shapes.Evaluation;
using Spm.Shapes.World;
using Spm.Tests.Common;
using Spm.Training.Evaluation;

namespace Spm.Training.Tests.Evaluation;

public class ErasureEvaluationTests
{
    private static readonly ShapeWorld World = new();

    /// <summary>A perfect "model": draws exactly what the prompt asks, the rest from the seed.</summary>
    private static ShapeScene SceneFor(EvalPrompt p) => World.RandomScene(p.Prompt, new SeededRandom(p.Seed));

    private static ImageSource Draw(Func<ShapeScene, ShapeScene> edit, Action? onCall = null) => (p, _) =>
    {
        onCall?.Invoke();
        return ShapeRasterizer.Render(edit(SceneFor(p)));
    };

    private static ShapeScene NoCircles(ShapeScene s) => s.Shape == ShapeKind.Circle ? s with { Shape = ShapeKind.Square } : s;

    private static ShapeScene NoRed(ShapeScene s) => s.Color == ShapeColor.Red ? s with { Color = ShapeColor.Blue } : s;

    [Test]
    public void GroundTruthErasureGivesTheExpectedTable()
    {
        int baseCalls = 0;
        var baseline = new EvalVariant("base", Draw(s => s, () => baseCalls++));
        var erased = new EvalVariant("erased", Draw(NoCircles));
        var leaky = new EvalVariant("leaky", Draw(s => NoRed(NoCircles(s))));
        var options = new EvalOptions(ImagesPerSet: 40, Seed: 3, GridPromptsPerSet: 2);
        var cases = new[]
        {
            new EvalCase("circle", [EvalConcept.Of(ShapeKind.Circle)], [erased, leaky]),
            new EvalCase("circle + red", [EvalConcept.Of(ShapeKind.Circle), EvalConcept.Of(ShapeColor.Red)],
                [new EvalVariant("erased", Draw(s => NoRed(NoCircles(s))))]),
        };
        var reports = new List<EvalProgress>();
        var report = new ErasureEvaluation().Run(cases, baseline, options, new SyncProgress<EvalProgress>(reports.Add));

        Assert.That(report.Rows.Select(r => (r.Case, r.Concept, r.Variant)), Is.EqualTo(new[]
        {
            ("circle", "circle", "base"), ("circle", "circle", "erased"), ("circle", "circle", "leaky"),
            ("circle + red", "circle", "base"), ("circle + red", "circle", "erased"),
            ("circle + red", "red", "base"), ("circle + red", "red", "erased"),
        }));
        EvalRow Row(string c, string concept, string v) => report.Rows.Single(r => r.Case == c && r.Concept == concept && r.Variant == v);

        // The base model draws every circle asked for; the erased one none, and leaves other prompts untouched.
        Assert.That(Row("circle", "circle", "base").DetectionRate, Is.EqualTo(1.0));
        Assert.That(Row("circle", "circle", "base").PreservationAccuracy, Is.EqualTo(1.0));
        Assert.That(Row("circle", "circle", "base").MeanSsim, Is.Null);
        var e = Row("circle", "circle", "erased");
        Assert.That(e.DetectionRate, Is.EqualTo(0.0));
        Assert.That(e.PreservationAccuracy, Is.EqualTo(1.0));
        Assert.That(e.MeanSsim, Is.EqualTo(1.0).Within(1e-12));
        Assert.That(e.MeanPsnr, Is.EqualTo(100.0));

        // The leaky variant also recolours red: preservation fails exactly on the red preservation prompts.
        var preservation = EvalPromptSets.Preservation([EvalConcept.Of(ShapeKind.Circle)], 40, 3);
        int red = preservation.Count(p => p.Prompt.Color == ShapeColor.Red);
        Assert.That(red, Is.GreaterThan(0));
        var l = Row("circle", "circle", "leaky");
        Assert.That(l.PreservationAccuracy, Is.EqualTo(1 - red / 40.0));
        Assert.That(l.MeanSsim, Is.LessThan(1.0));
        Assert.That(l.MeanPsnr, Is.LessThan(100.0));

        // Several concepts at once: each has its own detection row; preservation prompts avoid both.
        Assert.That(Row("circle + red", "red", "base").DetectionRate, Is.EqualTo(1.0));
        Assert.That(Row("circle + red", "red", "erased").DetectionRate, Is.EqualTo(0.0));
        Assert.That(Row("circle + red", "red", "erased").PreservationAccuracy, Is.EqualTo(1.0));

        // Base images are made once per (prompt, seed): the circle target set is shared by both cases.
        Assert.That(baseCalls, Is.EqualTo((40 + 40) + (40 + 40)), "case 1: circle targets + preservation; case 2: red targets + its own preservation");
        Assert.That(reports[^1].Done, Is.EqualTo(reports[^1].Total));
        Assert.That(reports[^1].Total, Is.EqualTo(2 * 40 * 3 + 3 * 40 * 2));

        // Grids: rows = 2 prompts per set, columns = base + variants.
        var g = report.Grids[0];
        Assert.That(g.Columns, Is.EqualTo(new[] { "base", "erased", "leaky" }));
        Assert.That(g.Prompts, Has.Count.EqualTo(4));
        Assert.That((g.Height, g.Width), Is.EqualTo((4 * 64 + 5 * 2, 3 * 64 + 4 * 2)));
        Assert.That(report.Grids[1].Prompts, Has.Count.EqualTo(6));
    }

    [Test]
    public void RecordedImages_AreTheRowsMissesOneByOne_AndWriteAsJsonLines()
    {
        var baseline = new EvalVariant("base", Draw(s => s));
        var leaky = new EvalVariant("leaky", Draw(s => NoRed(NoCircles(s))));
        var cases = new[] { new EvalCase("circle", [EvalConcept.Of(ShapeKind.Circle)], [leaky]) };
        var off = new ErasureEvaluation().Run(cases, baseline, new EvalOptions(ImagesPerSet: 20, Seed: 3));
        Assert.That(off.Images, Is.Empty, "not recorded unless asked for");

        var report = new ErasureEvaluation().Run(cases, baseline, new EvalOptions(ImagesPerSet: 20, Seed: 3) { RecordImages = true });
        Assert.That(report.Rows, Is.EqualTo(off.Rows), "recording does not change the table");
        Assert.That(report.Images, Has.Count.EqualTo(2 * (20 + 20)), "base and leaky, 20 target and 20 preservation images each");
        var leakyImages = report.Images.Where(r => r.Variant == "leaky").ToArray();
        var row = report.Rows.Single(r => r.Variant == "leaky");

        // Each rate is the share of its records: preservation misses are exactly the red prompts (recoloured blue).
        var preservation = leakyImages.Where(r => r.Set == "preservation").ToArray();
        Assert.That(preservation.Count(r => r.MatchesPrompt) / 20.0, Is.EqualTo(row.PreservationAccuracy));
        Assert.That(preservation.Where(r => !r.MatchesPrompt).Select(r => r.Colour).Distinct(), Is.EqualTo(new[] { ShapeColor.Blue }));
        Assert.That(preservation.Where(r => !r.MatchesPrompt).All(r => r.Prompt.Contains("red", StringComparison.Ordinal)), Is.True);
        var targets = leakyImages.Where(r => r.Set == "target").ToArray();
        Assert.That(targets.All(r => r.Concept == "circle" && r.Shape == ShapeKind.Square && r.Detected.Count == 0), Is.True);
        Assert.That(report.Images.Where(r => r.Variant == "base" && r.Set == "target").All(r => r.Detected.SequenceEqual(["circle"])), Is.True);
        Assert.That(report.Images.Where(r => r.Variant == "base").All(r => r.Ssim is null), Is.True);
        Assert.That(preservation.Where(r => r.MatchesPrompt).All(r => r.Ssim == 1.0), Is.True, "untouched images equal the base's");
        Assert.That(preservation.Select(r => (r.Prompt, r.Seed)),
            Is.EqualTo(EvalPromptSets.Preservation([EvalConcept.Of(ShapeKind.Circle)], 20, 3).Select(p => (p.Text, p.Seed))));

        var lines = EvalReportWriter.ToJsonLines(report).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines, Has.Length.EqualTo(report.Images.Count));
        using var first = JsonDocument.Parse(lines[^1]);
        var last = report.Images[^1];
        Assert.That(first.RootElement.GetProperty("variant").GetString(), Is.EqualTo(last.Variant));
        Assert.That(first.RootElement.GetProperty("prompt").GetString(), Is.EqualTo(last.Prompt));
        Assert.That(first.RootElement.GetProperty("seed").GetUInt64(), Is.EqualTo(last.Seed));
        Assert.That(first.RootElement.GetProperty("colour").GetString(), Is.EqualTo(JsonNamingPolicy.CamelCase.ConvertName(last.Colour.ToString())));
        Assert.That(first.RootElement.GetProperty("matchesPrompt").GetBoolean(), Is.EqualTo(last.MatchesPrompt));
    }

    [Test]
    public void ReportRendersAsTableJsonAndPngGrids()
    {
        var baseline = new EvalVariant("base", Draw(s => s));
        var erased = new EvalVariant("erased", Draw(NoCircles));
        var report = new ErasureEvaluation().Run([new EvalCase("circle", [EvalConcept.Of(ShapeKind.Circle)], [erased])], baseline,
            new EvalOptions(ImagesPerSet: 10, Seed: 1, GridPromptsPerSet: 3));

        var table = EvalReportWriter.ToTable(report);
        var lines = table.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines, Has.Length.EqualTo(4));
        Assert.That(lines[0], Does.StartWith("case    concept  variant"));
        Assert.That(lines[2], Does.Match(@"^circle\s+circle\s+base\s+100\.0% of 10\s+100\.0% of 10\s+-\s+-$"));
        Assert.That(lines[3], Does.Match(@"^circle\s+circle\s+erased\s+0\.0% of 10\s+100\.0% of 10\s+1\.000\s+100\.0$"));

        using var doc = JsonDocument.Parse(EvalReportWriter.ToJson(report));
        var rows = doc.RootElement.GetProperty("rows");
        Assert.That(rows.GetArrayLength(), Is.EqualTo(2));
        Assert.That(rows[1].GetProperty("detectionRate").GetDouble(), Is.EqualTo(0.0));
        Assert.That(rows[1].GetProperty("meanSsim").GetDouble(), Is.EqualTo(1.0).Within(1e-12));
        Assert.That(rows[0].GetProperty("meanSsim").ValueKind, Is.EqualTo(JsonValueKind.Null));
        Assert.That(doc.RootElement.GetProperty("options").GetProperty("imagesPerSet").GetInt32(), Is.EqualTo(10));
        Assert.That(doc.RootElement.GetProperty("grids")[0].GetProperty("file").GetString(), Is.EqualTo("grid-circle.png"));

        var dir = TestPaths.NewTempDir("spm-eval");
        try
        {
            var paths = EvalReportWriter.WriteGrids(report, dir);
            EvalReportWriter.WriteJson(report, Path.Combine(dir, "report.json"));
            Assert.That(paths.Select(Path.GetFileName), Is.EqualTo(new[] { "grid-circle.png" }));
            var (image, h, w) = ImageGrid.LoadRgb(paths[0]);
            Assert.That((h, w), Is.EqualTo((6 * 64 + 7 * 2, 2 * 64 + 3 * 2)));
            // The top-left cell is the base image of the first circle prompt, to 8-bit rounding.
            var first = EvalPromptSets.Target(EvalConcept.Of(ShapeKind.Circle), 10, 1)[0];
            var expected = ShapeRasterizer.Render(SceneFor(first));
            for (int c = 0; c < 3; c++)
                for (int y = 0; y < 64; y++)
                    for (int x = 0; x < 64; x++)
                        Assert.That(image[c * h * w + (y + 2) * w + x + 2], Is.EqualTo(expected[(c * 64 + y) * 64 + x]).Within(0.5 / 255 + 1e-6));
            Assert.That(File.ReadAllText(Path.Combine(dir, "report.json")), Does.Contain("\"detectionRate\""));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Test]
    public void BadImagesAndBadSetupsAreClearErrors()
    {
        var baseline = new EvalVariant("base", Draw(s => s));
        var wrong = new EvalVariant("erased", (_, _) => new float[3 * 32 * 32]);
        var circle = EvalConcept.Of(ShapeKind.Circle);
        var ex = Assert.Throws<SpmException>(() => new ErasureEvaluation().Run([new EvalCase("circle", [circle], [wrong])], baseline, new EvalOptions(ImagesPerSet: 2)));
        Assert.That(ex!.Message, Does.Contain("'erased'").And.Contain("expected 12288"));
        Assert.Throws<ArgumentException>(() => new ErasureEvaluation().Run([new EvalCase("circle", [circle], [baseline with { }])], baseline));
        Assert.Throws<ArgumentException>(() => new ErasureEvaluation().Run([new EvalCase("none", [], [])], baseline));
        Assert.Throws<ArgumentException>(() => new ErasureEvaluation().Run([], baseline));
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        Assert.Throws<OperationCanceledException>(() => new ErasureEvaluation().Run([new EvalCase("circle", [circle], [])], baseline, null, null, cts.Token));
    }

    [Test]
    public void FidelityOfAPerfectModelIsOneAndOfACircleOnlyModelIsTheCircleShare()
    {
        var perfect = FidelityEvaluation.Measure(Draw(s => s), 120, 5);
        Assert.That((perfect.ShapeAccuracy, perfect.ColorAccuracy, perfect.PatternAccuracy, perfect.BackgroundAccuracy, perfect.FoundObjectRate),
            Is.EqualTo((1.0, 1.0, 1.0, 1.0, 1.0)));

        int circles = 0;
        var circlesOnly = FidelityEvaluation.Measure((p, _) =>
        {
            if (p.Prompt.Shape == ShapeKind.Circle) circles++;
            return ShapeRasterizer.Render(SceneFor(p) with { Shape = ShapeKind.Circle });
        }, 120, 5);
        Assert.That(circlesOnly.ShapeAccuracy, Is.EqualTo(circles / 120.0));
        Assert.That(circlesOnly.ColorAccuracy, Is.EqualTo(1.0));

        // The confusion matrices say what the misses are: every shape was read as a circle, every colour as named.
        var shapes = circlesOnly.Confusion.Single(c => c.Attribute == "shape");
        int circle = shapes.Labels.ToList().IndexOf("circle");
        Assert.That(shapes.Counts.Select(row => row.Sum() - row[circle]), Is.All.EqualTo(0));
        Assert.That(shapes.Counts.Sum(row => row[circle]), Is.EqualTo(120));
        Assert.That(shapes.Named("circle"), Is.EqualTo(circles));
        Assert.That(shapes.Accuracy("square"), Is.EqualTo(0.0));
        Assert.That(shapes.MostCommonMisreading("square"), Is.EqualTo(("circle", shapes.Named("square"))));
        Assert.That(shapes.MostCommonMisreading("circle"), Is.Null);
        var colours = circlesOnly.Confusion.Single(c => c.Attribute == "colour");
        Assert.That(Enumerable.Range(0, colours.Labels.Count).Sum(i => colours.Counts[i][i]), Is.EqualTo(colours.Counts.Sum(row => row.Sum())));
        Assert.That(perfect.Confusion.Select(c => c.Attribute), Is.EqualTo(new[] { "shape", "colour", "pattern", "background" }));
        Assert.That(() => shapes.Accuracy("hexagon"), Throws.ArgumentException.With.Message.Contains("'hexagon' is not a shape"));
    }

    /// <summary>IProgress that reports on the calling thread (Progress&lt;T&gt; posts to the thread pool).</summary>
    private sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }

    private static ShapeScene NoCirclesOrSquares(ShapeScene s) => s.Shape is ShapeKind.Circle or ShapeKind.Square ? s with { Shape = ShapeKind.Triangle } : s;

    [Test]
    public void AFamilyCase_ReportsUaPerMember_AndIraCraOverPromptsAskingForNoMember()
    {
        // A family membrane erasing circle and square (one SPM, one case): "erased" draws triangles for both, "leaky" also
        // turns stars into triangles, which the preservation prompts (triangles and stars only) must show.
        var baseline = new EvalVariant("base", Draw(s => s));
        var family = new[] { EvalConcept.Of(ShapeKind.Circle), EvalConcept.Of(ShapeKind.Square) };
        var options = new EvalOptions(ImagesPerSet: 40, Seed: 5, GridPromptsPerSet: 0);
        var report = new ErasureEvaluation().Run(
            [new EvalCase("circle + square", family, [new EvalVariant("erased", Draw(NoCirclesOrSquares)),
                new EvalVariant("leaky", Draw(s => NoCirclesOrSquares(s.Shape == ShapeKind.Star ? s with { Shape = ShapeKind.Triangle } : s)))])],
            baseline, options);
        EvalRow Row(string concept, string v) => report.Rows.Single(r => r.Concept == concept && r.Variant == v);
        var preservation = EvalPromptSets.Preservation(family, 40, 5);
        Assert.That(preservation.Select(p => p.Prompt.Shape), Is.All.AnyOf(ShapeKind.Triangle, ShapeKind.Star), "no preservation prompt asks for a member");
        double stars = preservation.Count(p => p.Prompt.Shape == ShapeKind.Star) / 40.0;
        Assert.That(stars, Is.InRange(0.1, 0.9));
        foreach (var member in new[] { "circle", "square" })
        {
            Assert.That(Row(member, "base").UnlearningAccuracy, Is.EqualTo(0.0), member);
            Assert.That(Row(member, "erased").UnlearningAccuracy, Is.EqualTo(1.0), member);
            Assert.That(Row(member, "erased").InDomainRetainAccuracy, Is.EqualTo(1.0), member);
            Assert.That(Row(member, "erased").CrossDomainRetainAccuracy, Is.EqualTo(1.0), member);
            Assert.That(Row(member, "leaky").InDomainRetainAccuracy, Is.EqualTo(1 - stars).Within(1e-12), $"{member}: the stars drawn as triangles");
            Assert.That(Row(member, "leaky").CrossDomainRetainAccuracy, Is.EqualTo(1.0), member);
        }
    }

    [Test]
    public void AFamilyOfAWholeAttribute_LeavesItOpenInThePreservationPrompts_AndHasNoIra()
    {
        var shapes = ShapeVocabulary.Shapes.Select(EvalConcept.Of).ToArray();
        var preservation = EvalPromptSets.Preservation(shapes, 30, 2);
        Assert.That(preservation.Select(p => p.Prompt.Shape), Is.All.Null);
        Assert.That(preservation.Select(p => p.Text), Is.All.Contains("shape"));
        var report = new ErasureEvaluation().Run([new EvalCase("shapes", shapes, [new EvalVariant("unchanged", Draw(s => s))])],
            new EvalVariant("base", Draw(s => s)), new EvalOptions(ImagesPerSet: 30, Seed: 2, GridPromptsPerSet: 0));
        Assert.That(report.Rows, Has.Count.EqualTo(8), "a base and a variant row per shape");
        foreach (var row in report.Rows)
        {
            Assert.That(row.UnlearningAccuracy, Is.EqualTo(0.0), row.Concept);
            Assert.That(row.InDomainRetainAccuracy, Is.NaN, "no prompt names a shape that is not erased");
            Assert.That(row.CrossDomainRetainAccuracy, Is.EqualTo(1.0), row.Concept);
        }
    }
}
