using System.Text.Json;
using Spm.Cli.Commands;
using Spm.Tests.Common;

namespace Spm.Cli.Tests;

[TestFixture]
public class GraphBuildBenchCommandTests
{
    [Test]
    [Category(TestCategories.Slow)]
    public void BenchGraphBuild_MeasuresBaselineColdAndWarm_AndLeavesNoCacheBehind()
    {
        var temp = Path.GetTempPath();
        var before = Directory.GetDirectories(temp, "spm-bench-graph-build*").ToHashSet();
        var (code, stdout, stderr) = CliHarness.Run(c => [BenchCommand.Create(c)],
            ["bench", "graph-build", "--model", TestPaths.TinySd1, "--rounds", "1", "--threads", "1", "--json"]);

        Assert.That(code, Is.EqualTo(0), stderr);
        using var doc = JsonDocument.Parse(stdout);
        var variants = doc.RootElement.GetProperty("variants").EnumerateArray().ToList();
        Assert.That(variants.Select(v => v.GetProperty("name").GetString()), Is.EqualTo(new[] { "baseline", "cold", "warm" }));
        foreach (var v in variants)
        {
            Assert.That(v.GetProperty("wall_ms").GetDouble(), Is.GreaterThan(0));
            Assert.That(v.GetProperty("cpu_ms").GetDouble(), Is.GreaterThan(0));
            Assert.That(v.GetProperty("cpu_runs_ms").GetArrayLength(), Is.EqualTo(1));
        }
        Assert.That(doc.RootElement.GetProperty("nodes").GetInt32(), Is.GreaterThan(6000), "the fixture's membrane gradient graph");
        Assert.That(Directory.GetDirectories(temp, "spm-bench-graph-build*").Where(d => !before.Contains(d)), Is.Empty,
            "the benchmark's cache folders are removed");
    }
}
