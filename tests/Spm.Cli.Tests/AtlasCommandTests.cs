using Spm.Cli.Commands;
using Spm.Core.Atlas;
using Spm.Tests.Common;

namespace Spm.Cli.Tests;

[TestFixture]
public sealed class AtlasCommandTests
{
    private string _dir = "";

    [SetUp]
    public void SetUp() => _dir = TestPaths.NewTempDir("spm-atlas-cli");

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, true);

    private static (int Code, string Out, string Err) Run(params string[] args) => CliHarness.RunRoot(CliGlobals.CreateRoot, args);

    [Test]
    public void HsbmThenCluster_WritesTheExactHeader_AndRecoversTheTruth()
    {
        var (code, _, err) = Run("atlas", "hsbm", "--depth", "3", "--block-size", "40", "--probabilities", "0.02,0.08,0.16,0.6", "--seed", "3", "--out-dir", _dir);
        Assert.That(code, Is.EqualTo(0), err);
        var edges = Path.Combine(_dir, "hsbm-0.edges.csv");
        var truth = Path.Combine(_dir, "hsbm-0.labels.csv");
        Assert.That(File.ReadLines(edges).First(), Is.EqualTo("source,target,weight"));
        Assert.That(File.ReadLines(truth).First(), Is.EqualTo("node,level1,level2,level3"));
        foreach (var method in new[] { "bottom-up", "top-down" })
        {
            var labels = Path.Combine(_dir, $"{method}.csv");
            (code, var stdout, err) = Run("atlas", "cluster", "--graph", edges, "--depth", "3", "--method", method, "--out", labels);
            Assert.That(code, Is.EqualTo(0), err);
            Assert.That(stdout, Does.Contain("320 nodes"));
            var lines = File.ReadAllLines(labels);
            Assert.That(lines[0], Is.EqualTo("node,level1,level2,level3"));
            Assert.That(lines, Has.Length.EqualTo(321));
            var found = AtlasCsv.ReadLabels(labels);
            var expected = AtlasCsv.ReadLabels(truth);
            for (int l = 0; l < 3; l++) Assert.That(Partitions.Same(expected[l], found[l]), $"{method}, level {l + 1}");
        }
    }

    [Test]
    public void Cluster_SameSeedSameFile_AndRefusesToOverwrite()
    {
        Run("atlas", "hsbm", "--block-size", "30", "--coefficients", "1,2,3,12", "--seed", "1", "--out-dir", _dir);
        var edges = Path.Combine(_dir, "hsbm-0.edges.csv");
        string a = Path.Combine(_dir, "a.csv"), b = Path.Combine(_dir, "b.csv");
        Assert.That(Run("atlas", "cluster", "--graph", edges, "--depth", "3", "--linkage", "complete", "--communities", "8", "--seed", "5", "--out", a).Code, Is.EqualTo(0));
        Assert.That(Run("atlas", "cluster", "--graph", edges, "--depth", "3", "--linkage", "complete", "--communities", "8", "--seed", "5", "--out", b).Code, Is.EqualTo(0));
        Assert.That(File.ReadAllText(b), Is.EqualTo(File.ReadAllText(a)));
        var (code, _, err) = Run("atlas", "cluster", "--graph", edges, "--depth", "3", "--out", a);
        Assert.That(code, Is.EqualTo(ExitCodes.RuntimeFailure));
        Assert.That(err, Does.Contain("already exists"));
    }

    [Test]
    public void Cluster_BadCsv_IsExitCode4_NamingFileAndLine()
    {
        var edges = Path.Combine(_dir, "bad.csv");
        File.WriteAllText(edges, "source,target,weight\n0,1,1\n1,two,1\n");
        var (code, _, err) = Run("atlas", "cluster", "--graph", edges, "--depth", "2", "--out", Path.Combine(_dir, "l.csv"));
        Assert.That(code, Is.EqualTo(ExitCodes.BadInput));
        Assert.That(err, Does.Contain(edges).And.Contain("line 3").And.Contain("'two' is not an integer"));
        Assert.That(err.Trim().Split('\n'), Has.Length.EqualTo(1));
    }

    [Test]
    public void Cluster_MissingGraph_IsExitCode3()
    {
        var (code, _, err) = Run("atlas", "cluster", "--graph", Path.Combine(_dir, "none.csv"), "--depth", "2", "--out", Path.Combine(_dir, "l.csv"));
        Assert.That(code, Is.EqualTo(ExitCodes.MissingInput));
        Assert.That(err, Does.Contain("none.csv"));
    }

    [Test]
    public void Cluster_UnknownLinkage_IsAUsageError()
    {
        var (code, _, _) = Run("atlas", "cluster", "--graph", "x.csv", "--depth", "2", "--linkage", "ward", "--out", "l.csv");
        Assert.That(code, Is.EqualTo(ExitCodes.UsageError));
    }

    [Test]
    public void Sweep_PrintsTheTable()
    {
        var (code, stdout, err) = Run("atlas", "sweep", "--depth", "2", "--block-size", "25", "--shape", "1,2,12", "--snr", "3", "--graphs", "2");
        Assert.That(code, Is.EqualTo(0), err);
        Assert.That(stdout, Does.Contain("| SNR |").And.Contain("tree BU").And.Contain("TD inversions"));
        Assert.That(stdout.Split('\n').Count(l => l.StartsWith("| 3 |", StringComparison.Ordinal)), Is.EqualTo(1));
    }

    [Test]
    public void Show_PrintsTheDocsAtlasTree_AndDrawsSvg()
    {
        var json = Path.Combine(TestPaths.RepoRoot, "docs", "atlas", "tiny-shapes-atlas.json");
        var svg = Path.Combine(_dir, "a.svg");
        var (code, stdout, err) = Run("atlas", "show", json, "--svg", svg);
        Assert.That(code, Is.EqualTo(0), err);
        Assert.That(stdout, Does.Contain("a circle, a square, a triangle, a star"));
        Assert.That(stdout, Does.Contain("on a white background, on a black background, on a gray background, on a light blue background"));
        Assert.That(File.ReadAllText(svg), Does.StartWith("<svg"));
    }

    [Test]
    public void Show_DrawsPng_WithTheSvgLayoutAtTwicePixels_LeavesDarkOnTheirRows()
    {
        var json = Path.Combine(TestPaths.RepoRoot, "docs", "atlas", "tiny-shapes-atlas.json");
        var png = Path.Combine(_dir, "a.png");
        var (code, _, err) = Run("atlas", "show", json, "--png", png);
        Assert.That(code, Is.EqualTo(0), err);
        var (image, h, w) = Spm.Training.Evaluation.ImageGrid.LoadRgb(png);
        var layout = DendrogramLayout.Of(ConceptAtlas.Load(json));
        Assert.That((w, h), Is.EqualTo(((int)Math.Ceiling(layout.Width * 2), (int)Math.Ceiling(layout.Height * 2))));
        double Luma(int x, int y) => 0.2126 * image[y * w + x] + 0.7152 * image[h * w + y * w + x] + 0.0722 * image[2 * h * w + y * w + x];
        Assert.That(layout.Leaves, Has.Count.EqualTo(4));
        foreach (var (lx, ly) in layout.Leaves)
        {
            int y = (int)Math.Round(ly * 2);
            Assert.That(Luma((int)(lx * 2) + 4, y), Is.LessThan(0.5), $"the leaf at {lx}, {ly} is dark");
            Assert.That(Luma((int)(lx * 2) + 4, y + 12), Is.GreaterThan(0.9), $"6 units below the leaf at {lx}, {ly} is white");
        }
        Assert.That(Luma(w - 2, h - 2), Is.GreaterThan(0.9), "white background");

        (code, _, err) = Run("atlas", "show", json, "--png", png);
        Assert.That(code, Is.Not.EqualTo(0), "an existing PNG is kept without --force");
        Assert.That(err, Does.Contain("already exists"));
    }

    [Test]
    [Category(TestCategories.Slow)]
    public void Build_OnTheBuiltInModel_GroupsTheVocabularyByAttribute()
    {
        var prompts = Path.Combine(TestPaths.RepoRoot, "docs", "atlas", "tiny-shapes-concepts.txt");
        var json = Path.Combine(_dir, "atlas.json");
        var (code, _, err) = Run("atlas", "build", "--prompts", prompts, "--model", Path.Combine(TestPaths.RepoRoot, "models", "tiny-shapes"), "--out", json);
        Assert.That(code, Is.EqualTo(0), err);
        var atlas = ConceptAtlas.Load(json);
        var groups = atlas.CommunityMembers().Select(m => string.Join("|", m)).ToArray();
        Assert.That(groups, Is.EquivalentTo(new[]
        {
            "a circle|a square|a triangle|a star",
            "a red shape|a green shape|a blue shape|a yellow shape|a purple shape|an orange shape",
            "a plain pattern|a striped pattern|a dotted pattern",
            "on a white background|on a black background|on a gray background|on a light blue background",
        }));
    }
}
