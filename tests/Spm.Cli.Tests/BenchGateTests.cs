using System.Text.Json.Nodes;
using Spm.Cli.Commands;
using Spm.Tests.Common;

namespace Spm.Cli.Tests;

/// <summary><c>spm bench gate</c> runs on the built-in model's text encoder and writes the figures the issue asks for (not a timing test).</summary>
[TestFixture]
public class BenchGateTests
{
    [Test]
    public void WritesTheJsonFigures_AndTheBatchedSubsetsEqualThePerSpmLoop()
    {
        var dir = TestPaths.NewTempDir("spm-bench-gate");
        try
        {
            var json = Path.Combine(dir, "gate.json");
            var (code, stdout, stderr) = CliHarness.Run(c => [BenchCommand.Create(c)],
                "bench", "gate", "--model", Path.Combine(TestPaths.RepoRoot, "models", "tiny-shapes"), "--spms", "60", "--prompts", "4", "--rounds", "1", "--json", json);
            Assert.That(code, Is.EqualTo(0), stderr);
            var o = JsonNode.Parse(File.ReadAllText(json))!.AsObject();
            Assert.That((int)o["spms"]!, Is.EqualTo(60));
            Assert.That((int)o["learned_spms"]!, Is.InRange(15, 45), "about half the synthetic SPMs carry a learned gate");
            foreach (var key in new[] { "route_ms_median", "route_ms_with_text_encoder_median", "per_spm_loop_ms_median", "encode_ms_median" })
                Assert.That((double)o[key]!, Is.GreaterThan(0), key);
            Assert.That((int)o["samples"]!, Is.EqualTo(4));
            Assert.That((int)o["subset_mismatches"]!, Is.EqualTo(0));
            Assert.That((double)o["mean_routed"]!, Is.GreaterThan(0));
            Assert.That(stdout, Does.Contain("per-SPM gate loop (baseline"));

            (code, _, stderr) = CliHarness.Run(c => [BenchCommand.Create(c)], "bench", "gate", "--spms", "5", "--json", json);
            Assert.That(code, Is.Not.EqualTo(0));
            Assert.That(stderr, Does.Contain("already exists"));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Test]
    public void InjectionBench_Routed_ReportsTheRoutedStepAgainstTheSameSpmsOnTheirOwn()
    {
        var (code, stdout, stderr) = CliHarness.Run(c => [BenchCommand.Create(c)],
            "bench", "injection", "--model", Path.Combine(TestPaths.RepoRoot, "models", "tiny-shapes"), "--spms", "6", "--routed", "2", "--rounds", "1", "--latent", "8", "--json");
        Assert.That(code, Is.EqualTo(0), stderr);
        var o = JsonNode.Parse(stdout.Trim().Split('\n')[^1])!.AsObject();
        Assert.That((int)o["routed_spms"]!, Is.EqualTo(2));
        foreach (var key in new[] { "routed_ms", "routed_by_hand_ms", "routed_ratio", "select_ms" })
            Assert.That((double)o[key]!, Is.GreaterThan(0), key);
    }
}
