using Spm.Core.Atlas;
using Spm.Tests.Common;

namespace Spm.Core.Tests.Atlas;

[TestFixture]
public sealed class AtlasCsvTests
{
    private string _dir = "";

    [SetUp]
    public void SetUp() => _dir = TestPaths.NewTempDir("spm-atlas-csv");

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, true);

    private string Write(string text)
    {
        var path = Path.Combine(_dir, "edges.csv");
        File.WriteAllText(path, text);
        return path;
    }

    [Test]
    public void Weighted_ReadsEdgesAndNodeCount_RepeatsAddUp()
    {
        var g = AtlasCsv.ReadEdges(Write("source,target,weight\n0,1,2.5\n1,2,1\n\n2,1,0.5\n4,0,1\n"));
        Assert.That(g.NodeCount, Is.EqualTo(5));
        Assert.That(g.EdgeCount, Is.EqualTo(3));
        Assert.That(g.Weight(1, 2), Is.EqualTo(1.5));
        Assert.That(g.Weight(2, 1), Is.EqualTo(1.5));
        Assert.That(g.Weight(0, 1), Is.EqualTo(2.5));
        Assert.That(g.Degrees[3], Is.EqualTo(0), "node 3 is isolated but counted");
    }

    [Test]
    public void Unweighted_HeaderWithoutWeight_GivesUnitWeights()
    {
        var g = AtlasCsv.ReadEdges(Write("source,target\n0,1\n1,2\n"));
        Assert.That(g.Edges().Select(e => e.Weight), Is.All.EqualTo(1.0));
    }

    [TestCase("from,to,weight\n0,1,1\n", "line 1", "bad header")]
    [TestCase("source,target,weight\n0,1,1\n0,x,1\n", "line 3", "target 'x' is not an integer node id")]
    [TestCase("source,target,weight\n0,1.5,1\n", "line 2", "target '1.5' is not an integer")]
    [TestCase("source,target,weight\n0,1,1\n1,2,-0.5\n", "line 3", "weight -0.5 is negative")]
    [TestCase("source,target,weight\n-1,2,1\n", "line 2", "source -1 is negative")]
    [TestCase("source,target,weight\n0,1\n", "line 2", "expected 3 fields")]
    [TestCase("source,target,weight\n0,1,abc\n", "line 2", "weight 'abc' is not a number")]
    [TestCase("", "line 1", "empty file")]
    public void Malformed_NamesFileAndLine(string text, string line, string detail)
    {
        var path = Write(text);
        var ex = Assert.Throws<SpmFormatException>(() => AtlasCsv.ReadEdges(path))!;
        Assert.That(ex.Message, Does.Contain(path));
        Assert.That(ex.Message, Does.Contain(line));
        Assert.That(ex.Message, Does.Contain(detail));
    }

    [Test]
    public void MissingFile_IsInputNotFound_NamingThePath()
    {
        var path = Path.Combine(_dir, "nope.csv");
        var ex = Assert.Throws<SpmInputNotFoundException>(() => AtlasCsv.ReadEdges(path))!;
        Assert.That(ex.Message, Does.Contain(path).And.Contain("edge list"));
    }

    [Test]
    public void Edges_RoundTrip()
    {
        var g = WeightedGraph.FromEdges(4, [new(0, 1, 0.25), new(2, 3, 3), new(1, 3, 1)]);
        var path = Path.Combine(_dir, "out.csv");
        AtlasCsv.WriteEdges(path, g);
        Assert.That(File.ReadAllLines(path)[0], Is.EqualTo("source,target,weight"));
        var back = AtlasCsv.ReadEdges(path);
        Assert.That(back.Edges(), Is.EqualTo(g.Edges()));
    }

    [Test]
    public void Labels_ExactHeaderAndRoundTrip()
    {
        var levels = new[] { new[] { 0, 0, 1, 1 }, new[] { 0, 1, 2, 3 } };
        var path = Path.Combine(_dir, "labels.csv");
        AtlasCsv.WriteLabels(path, levels);
        var lines = File.ReadAllLines(path);
        Assert.That(lines[0], Is.EqualTo("node,level1,level2"));
        Assert.That(lines[3], Is.EqualTo("2,1,2"));
        Assert.That(AtlasCsv.ReadLabels(path), Is.EqualTo(levels));
    }

    [Test]
    public void Labels_MissingNode_IsAFormatError()
    {
        var path = Path.Combine(_dir, "labels.csv");
        File.WriteAllText(path, "node,level1\n0,0\n2,1\n");
        var ex = Assert.Throws<SpmFormatException>(() => AtlasCsv.ReadLabels(path))!;
        Assert.That(ex.Message, Does.Contain("node 1 has no row"));
    }
}
