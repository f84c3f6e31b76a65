using System.Text.Json;
using Spm.Cli.Commands;
using Spm.Core.Membranes;
using Spm.Shapes.Evaluation;
using Spm.Tests.Common;
using Spm.Training.Evaluation;

namespace Spm.Cli.Tests;

/// <summary>
/// <c>spm eval</c> on the tiny-sd1 fixture with the reference SPMs: its images are noise, so these tests check the
/// arguments, the cases, the table, the JSON and the grids, not erasure figures.
/// </summary>
[TestFixture]
public class EvalCommandTests
{
    private string _dir = "";
    private string _circle = "";
    private string _red = "";
    private string _circleNoLa = "";

    [SetUp]
    public void SetUp()
    {
        _dir = TestPaths.NewTempDir("spm-eval-cli");
        _circle = Copy("all-layers", "circle.safetensors");
        _red = Copy("attn2-rank4", "red.safetensors");
        _circleNoLa = Copy("all-layers", "circle-no-la.safetensors");
    }

    [TearDown]
    public void TearDown()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    private string Copy(string reference, string name)
    {
        var path = Path.Combine(_dir, name);
        File.Copy(Path.Combine(TestPaths.Reference(reference), "spm.safetensors"), path);
        return path;
    }

    private static (int Code, string Out, string Err) Run(params string[] args) => CliHarness.Run(c => [EvalCommand.Create(c)], args);

    /// <summary>The verb on the fixture at 64 px, 2 steps, 2 images per set, unless <paramref name="extra"/> sets these options itself.</summary>
    private static string[] Eval(params string[] extra)
    {
        string[][] defaults = [["--size", "64"], ["--steps", "2"], ["--images", "2"], ["--grid-prompts", "1"]];
        return ["eval", "--model", TestPaths.TinySd1, .. defaults.Where(d => !extra.Contains(d[0])).SelectMany(d => d), .. extra];
    }

    [Test]
    public void CasesTogether_WithoutAblations_RunsOnlyTheErasedVariantOfTheCombinedCase()
    {
        var json = Path.Combine(_dir, "together.json");
        var (code, stdout, stderr) = Run(Eval("--spm", _circle, _red, "--concepts", "circle", "red", "--cases", "together", "--no-ablations",
            "--json", json, "--seed", "4", "--gate-calibration", "none"));
        Assert.That(code, Is.EqualTo(0), stderr);
        var rows = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Skip(2)
            .Select(l => l.Split("  ", StringSplitOptions.RemoveEmptyEntries).Select(x => x.Trim()).ToArray()).Select(r => $"{r[0]}|{r[1]}|{r[2]}");
        Assert.That(rows, Is.EqualTo(new[] { "circle + red|circle|base", "circle + red|circle|erased", "circle + red|red|base", "circle + red|red|erased" }));
        Assert.That(stderr, Does.Contain("1 case(s): circle + red [erased]"));
        using var doc = JsonDocument.Parse(File.ReadAllText(json));
        var run = doc.RootElement.GetProperty("run");
        Assert.That((run.GetProperty("cases").GetString(), run.GetProperty("ablations").GetBoolean()), Is.EqualTo(("together", false)));
        // Base and erased images of 2 + 2 target and 2 preservation prompts: the raw gate differs from 0 on every prompt.
        Assert.That(run.GetProperty("imagesGenerated").GetInt32(), Is.EqualTo(2 * 6));

        (code, stdout, stderr) = Run(Eval("--spm", _circle, _red, "--concepts", "circle", "red", "--cases", "each", "--no-ablations", "--seed", "4", "--gate-calibration", "none"));
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stderr, Does.Contain("2 case(s): circle [erased]; red [erased]"));
    }

    [Test]
    [Category(TestCategories.Slow)]
    public void TwoSpmsAndAnAblation_TableJsonAndGrids()
    {
        var json = Path.Combine(_dir, "out.json");
        var grids = Path.Combine(_dir, "grids");
        var imagesJsonl = Path.Combine(_dir, "images.jsonl");
        // The spec's raw gate: every variant's multipliers differ from the base's on every prompt, so the image count below is
        // exact (a calibrated gate of 0 makes an erased image the base image, generated once).
        var (code, stdout, stderr) = Run(Eval("--spm", _circle, _red, "--concepts", "circle", "red", "circle", "--no-anchoring-spm", _circleNoLa,
            "--json", json, "--grid-dir", grids, "--seed", "4", "--gate-calibration", "none", "--images-jsonl", imagesJsonl));
        Assert.That(code, Is.EqualTo(0), stderr);

        // The table: a header, then one line per (case, concept, variant).
        var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines[0], Does.StartWith("case").And.Contain("detected").And.Contain("SSIM"));
        var rows = lines.Skip(2).Select(l => l.Split("  ", StringSplitOptions.RemoveEmptyEntries).Select(s => s.Trim()).ToArray()).ToArray();
        Assert.That(rows.Select(r => $"{r[0]}|{r[1]}|{r[2]}"), Is.EqualTo(new[]
        {
            "circle|circle|base", "circle|circle|erased", "circle|circle|erased, no transport", "circle|circle|erased, no anchoring",
            "red|red|base", "red|red|erased", "red|red|erased, no transport",
            "circle + red|circle|base", "circle + red|circle|erased", "circle + red|circle|erased, no transport",
            "circle + red|red|base", "circle + red|red|erased", "circle + red|red|erased, no transport",
        }));
        Assert.That(rows.Where(r => r[2] == "base").Select(r => r[^1]), Is.All.EqualTo("-"), "no SSIM/PSNR against itself");
        Assert.That(stderr, Does.Contain("3 case(s)").And.Contain("images generated"));

        using var doc = JsonDocument.Parse(File.ReadAllText(json));
        var root = doc.RootElement;
        Assert.That(root.GetProperty("options").GetProperty("imagesPerSet").GetInt32(), Is.EqualTo(2));
        Assert.That(root.GetProperty("options").GetProperty("seed").GetUInt64(), Is.EqualTo(4UL));
        Assert.That(root.GetProperty("options").GetProperty("imageSize").GetInt32(), Is.EqualTo(64));
        var jsonRows = root.GetProperty("rows").EnumerateArray().ToArray();
        Assert.That(jsonRows, Has.Length.EqualTo(13));
        foreach (var r in jsonRows)
        {
            Assert.That(r.GetProperty("targetImages").GetInt32(), Is.EqualTo(2));
            Assert.That(r.GetProperty("detectionRate").GetDouble(), Is.InRange(0.0, 1.0));
            Assert.That(r.GetProperty("preservationAccuracy").GetDouble(), Is.InRange(0.0, 1.0));
            bool isBase = r.GetProperty("variant").GetString() == "base";
            Assert.That(r.GetProperty("meanSsim").ValueKind, Is.EqualTo(isBase ? JsonValueKind.Null : JsonValueKind.Number));
            if (!isBase) Assert.That(r.GetProperty("meanSsim").GetDouble(), Is.InRange(-1.0, 1.0));
        }
        var run = root.GetProperty("run");
        Assert.That(run.GetProperty("steps").GetInt32(), Is.EqualTo(2));
        Assert.That(run.GetProperty("scheduler").GetString(), Is.EqualTo("pndm"), "the fixture's configured scheduler");
        var spms = run.GetProperty("spms").EnumerateArray().Select(s => (s.GetProperty("name").GetString(), s.GetProperty("concept").GetString(), s.GetProperty("role").GetString())).ToArray();
        Assert.That(spms, Is.EqualTo(new[] { ("circle.safetensors", "circle", "erase"), ("red.safetensors", "red", "erase"), ("circle-no-la.safetensors", "circle", "no-anchoring") }));
        // 2 target + 2 preservation prompts per single case, 2 + 2 + 2 for both: base once per distinct prompt, every variant per prompt.
        int generated = run.GetProperty("imagesGenerated").GetInt32();
        Assert.That(generated, Is.InRange(4 * 3 + 4 * 2 + 6 * 2 + 8, 4 * 3 + 4 * 2 + 6 * 2 + 12));

        // Every image read, one JSON line each: per case (target sets + preservation) x (base + variants) = 4 x 4 + 4 x 3 + 6 x 3;
        // each row's preservation accuracy is the share of its case's and variant's preservation lines that match their prompt.
        var images = File.ReadAllLines(imagesJsonl).Select(l => JsonDocument.Parse(l).RootElement).ToArray();
        Assert.That(images, Has.Length.EqualTo(46));
        Assert.That(stderr, Does.Contain("(46 images)"));
        // Each line carries the multiplier every SPM (circle, red, circle without anchoring) drew it at.
        float[] Multipliers(JsonElement i) => i.GetProperty("multipliers").EnumerateArray().Select(v => v.GetSingle()).ToArray();
        string Of(JsonElement i, string key) => i.GetProperty(key).GetString()!;
        Assert.That(images.Where(i => Of(i, "variant") == "base").Select(Multipliers), Is.All.EqualTo(new float[3]));
        Assert.That(images.Where(i => Of(i, "case") == "circle" && Of(i, "variant") == "erased, no transport").Select(Multipliers), Is.All.EqualTo(new[] { 1f, 0f, 0f }));
        Assert.That(images.Where(i => Of(i, "case") == "circle + red" && Of(i, "variant") == "erased, no transport").Select(Multipliers), Is.All.EqualTo(new[] { 1f, 1f, 0f }));
        var noAnchoring = images.Where(i => Of(i, "variant") == "erased, no anchoring").Select(Multipliers).ToArray();
        Assert.That(noAnchoring, Is.Not.Empty);
        Assert.That(noAnchoring.All(m => m[0] == 0 && m[1] == 0 && m[2] > 0), Is.True, "the raw gate of the no-anchoring circle SPM alone");
        foreach (var r in jsonRows)
        {
            var mine = images.Where(i => i.GetProperty("case").GetString() == r.GetProperty("case").GetString()
                && i.GetProperty("variant").GetString() == r.GetProperty("variant").GetString() && i.GetProperty("set").GetString() == "preservation").ToArray();
            Assert.That(mine.Count(i => i.GetProperty("matchesPrompt").GetBoolean()) / (double)mine.Length, Is.EqualTo(r.GetProperty("preservationAccuracy").GetDouble()));
        }

        // One grid per case: rows = 1 prompt per set, columns = base + variants, 64 px cells with 2 px gaps.
        var gridFiles = root.GetProperty("grids").EnumerateArray().Select(g => g.GetProperty("file").GetString()).ToArray();
        Assert.That(gridFiles, Is.EqualTo(new[] { "grid-circle.png", "grid-red.png", "grid-circle-red.png" }));
        var (_, h, w) = ImageGrid.LoadRgb(Path.Combine(grids, "grid-circle.png"));
        Assert.That((h, w), Is.EqualTo((2 * 64 + 3 * 2, 4 * 64 + 5 * 2)));
        (_, h, w) = ImageGrid.LoadRgb(Path.Combine(grids, "grid-circle-red.png"));
        Assert.That((h, w), Is.EqualTo((3 * 64 + 4 * 2, 3 * 64 + 4 * 2)));
    }

    [Test]
    [Category(TestCategories.Slow)]
    public void ConceptsComeFromTheSpmsPrompts()
    {
        // A copy of the reference membranes whose prompts name a tiny-shapes concept inside a phrase.
        var adapter = SpmFile.Load(_circle);
        var striped = Path.Combine(_dir, "striped.safetensors");
        SpmFile.Save(striped, new SpmAdapter(adapter.Config with { Prompts = ["a striped shape"] }, adapter.Membranes));
        var json = Path.Combine(_dir, "s.json");
        var (code, stdout, stderr) = Run(Eval("--spm", striped, "--images", "1", "--json", json, "--batch", "3"));
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stdout, Does.Contain("striped  base").And.Contain("striped  erased, no transport"));
        Assert.That(stdout, Does.Not.Contain("no anchoring"));
        using var doc = JsonDocument.Parse(File.ReadAllText(json));
        Assert.That(doc.RootElement.GetProperty("run").GetProperty("spms")[0].GetProperty("concept").GetString(), Is.EqualTo("striped"));
        Assert.That(doc.RootElement.GetProperty("run").GetProperty("batch").GetInt32(), Is.EqualTo(3));
    }

    [Test]
    [Category(TestCategories.Slow)]
    public void AFamilyMembrane_IsOneCase_WithARowPerMember()
    {
        // A hand-made family file: the reference membranes with the prompts and training record of
        // 'spm train --concept-family' erasing circle and square.
        var adapter = SpmFile.Load(_circle);
        var family = Path.Combine(_dir, "family.safetensors");
        var extra = new Dictionary<string, string>(adapter.Config.Extra) { ["training"] = """{"action":"erase_with_la","family":["a circle","a square"]}""" };
        SpmFile.Save(family, new SpmAdapter(adapter.Config with { Prompts = ["a circle", "a square"], Extra = extra }, adapter.Membranes));
        var json = Path.Combine(_dir, "f.json");
        var (code, stdout, stderr) = Run(Eval("--spm", family, _red, "--concepts", "", "red", "--images", "1", "--grid-prompts", "0", "--json", json));
        Assert.That(code, Is.Not.EqualTo(0), "an empty --concepts word names no concept");
        Assert.That(stderr, Does.Contain("names no concept"));

        (code, stdout, stderr) = Run(Eval("--spm", family, "--images", "1", "--grid-prompts", "0", "--json", json));
        Assert.That(code, Is.EqualTo(0), stderr);
        var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var rows = lines.Skip(2).Select(l => l.Split("  ", StringSplitOptions.RemoveEmptyEntries).Select(s => s.Trim()).ToArray()).ToArray();
        Assert.That(rows.Select(r => $"{r[0]}|{r[1]}|{r[2]}"), Is.EqualTo(new[]
        {
            "circle + square|circle|base", "circle + square|circle|erased", "circle + square|circle|erased, no transport",
            "circle + square|square|base", "circle + square|square|erased", "circle + square|square|erased, no transport",
        }));
        using (var doc = JsonDocument.Parse(File.ReadAllText(json)))
        {
            var spm = doc.RootElement.GetProperty("run").GetProperty("spms")[0];
            Assert.That(spm.GetProperty("concept").GetString(), Is.EqualTo("circle + square"));
            Assert.That(spm.GetProperty("concepts").EnumerateArray().Select(c => c.GetString()), Is.EqualTo(new[] { "circle", "square" }));
        }

        // Without the record, the concepts are given: a family's words joined by commas, next to an ordinary SPM.
        var plain = Path.Combine(_dir, "plain-family.safetensors");
        SpmFile.Save(plain, new SpmAdapter(adapter.Config with { Prompts = ["a circle", "a square"] }, adapter.Membranes));
        (code, stdout, stderr) = Run(Eval("--spm", plain, "--images", "1", "--grid-prompts", "0"));
        Assert.That(code, Is.EqualTo(2), "two concepts in the prompts and no family record: ambiguous");
        Assert.That(stderr, Does.Contain("pass --concepts"));
        (code, stdout, stderr) = Run(Eval("--spm", plain, _red, "--concepts", "circle,square", "red", "--images", "1", "--grid-prompts", "0"));
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stderr, Does.Contain("3 case(s): circle + square [").And.Contain("; red [").And.Contain("; (circle + square) + red ["));
        Assert.That(stdout, Does.Contain("(circle + square) + red  square"));
    }

    [TestCase(new string[0], "nothing to evaluate")]
    [TestCase(new[] { "--fidelity", "--spm", "{circle}" }, "--fidelity measures the base model")]
    [TestCase(new[] { "--fidelity", "--images-jsonl", "{dir}/images.jsonl" }, "--images-jsonl lists the images of an erasure evaluation")]
    [TestCase(new[] { "--fidelity", "--cases", "together" }, "--cases and --no-ablations choose erasure cases")]
    [TestCase(new[] { "--spm", "{circle}", "--concepts", "circle", "circle", "--no-anchoring-spm", "{red}", "--no-ablations" }, "--no-ablations leaves out the \"no anchoring\" rows")]
    [TestCase(new[] { "--spm", "{circle}", "{red}", "--concepts", "circle" }, "--concepts names 1 concept(s) for 2 --spm file(s)")]
    [TestCase(new[] { "--spm", "{circle}", "--concepts", "dog" }, "Unknown concept 'dog'")]
    [TestCase(new[] { "--spm", "{circle}" }, "cannot tell which tiny-shapes concept")]
    [TestCase(new[] { "--spm", "{circle}", "{red}", "--concepts", "circle", "circle" }, "Two erasing SPMs erase 'circle'")]
    [TestCase(new[] { "--spm", "{circle}", "--concepts", "circle", "red", "--no-anchoring-spm", "{red}" }, "'red' has no erasing SPM")]
    [TestCase(new[] { "--spm", "{circle}", "--concepts", "circle", "--batch", "0" }, "batch size must be 1..256")]
    [TestCase(new[] { "--spm", "{circle}", "--concepts", "circle", "--size", "60" }, "--size must be a multiple of 16, got 60 (model 'tiny-sd1' needs multiples of 16: the VAE scales by 8 and the UNet halves the latent 1 time(s)); try 48 or 64.")]
    public void BadArguments_FailWithOneLine(string[] args, string message)
    {
        var resolved = args.Select(a => a.Replace("{circle}", _circle).Replace("{red}", _red).Replace("{dir}", _dir)).ToArray();
        var (code, stdout, stderr) = Run(Eval(resolved));
        Assert.That(code, Is.EqualTo(2), stderr);
        Assert.That(stderr.Trim(), Does.StartWith("spm: error:").And.Contain(message));
        Assert.That(stderr.Trim().Split('\n'), Has.Length.EqualTo(1));
        Assert.That(stdout, Is.Empty);
    }

    [Test]
    [Category(TestCategories.Slow)]
    public void ExistingJson_IsKeptUnlessForced_AndCheckedBeforeAnyWork()
    {
        var json = Path.Combine(_dir, "keep.json");
        File.WriteAllText(json, "precious");
        var (code, _, stderr) = Run(Eval("--spm", _circle, "--concepts", "circle", "--json", json));
        Assert.That(code, Is.EqualTo(1));
        Assert.That(stderr, Does.Contain("already exists (use --force to overwrite)").And.Not.Contain("images generated"));
        Assert.That(File.ReadAllText(json), Is.EqualTo("precious"));
        (code, _, stderr) = Run(Eval("--spm", _circle, "--concepts", "circle", "--json", json, "--force", "--images", "1"));
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(File.ReadAllText(json), Does.StartWith("{"));
    }

    [Test]
    [Category(TestCategories.Slow)]
    public void Fidelity_PrintsAttributeAccuracies_AndWritesJson()
    {
        var json = Path.Combine(_dir, "fidelity.json");
        var (code, stdout, stderr) = Run(Eval("--fidelity", "--images", "6", "--json", json, "--batch", "4"));
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stdout, Does.StartWith("fidelity on 6 images"));
        foreach (var attribute in new[] { "shape", "colour", "pattern", "background", "object found" })
            Assert.That(stdout, Does.Match($@"\n  {attribute} +(\d+\.\d%|-)\n"), attribute);
        using var doc = JsonDocument.Parse(File.ReadAllText(json));
        var fidelity = doc.RootElement.GetProperty("fidelity");
        Assert.That(fidelity.GetProperty("images").GetInt32(), Is.EqualTo(6));
        Assert.That(fidelity.GetProperty("shapeAccuracy").GetDouble(), Is.InRange(0.0, 1.0));
        Assert.That(doc.RootElement.GetProperty("run").GetProperty("imagesGenerated").GetInt32(), Is.EqualTo(6));
    }

    [Test]
    public void FidelityTable_ListsTheValuesThatWereMisread()
    {
        var colours = new Spm.Shapes.Evaluation.AttributeConfusion("colour", ["red", "orange", "yellow"], [[4, 0, 0], [0, 1, 3], [0, 1, 0]]);
        var text = EvalReportWriter.FidelityTable(new FidelityResult(9, 1, 5 / 9.0, double.NaN, double.NaN, 1) { Confusion = [colours] });
        Assert.That(text, Does.EndWith(
            "misread (objects found; named value, share read right, most common misreading)\n" +
            "  colour       orange        25.0% of   4  (read as yellow: 3)\n" +
            "  colour       yellow         0.0% of   1  (read as orange: 1)\n"));
    }

    [Test]
    public void FidelityTable_ShowsUnnamedAttributesAsDash()
    {
        var text = EvalReportWriter.FidelityTable(new FidelityResult(10, 0.9, 0.955, double.NaN, 1.0, 0.8));
        Assert.That(text, Is.EqualTo(
            "fidelity on 10 images (attribute read as the caption names it)\n" +
            "  shape          90.0%\n" +
            "  colour         95.5%\n" +
            "  pattern            -\n" +
            "  background    100.0%\n" +
            "  object found   80.0%\n"));
    }
}
