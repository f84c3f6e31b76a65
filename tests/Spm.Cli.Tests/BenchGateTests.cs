using System.Text.Json.Nodes;
using Spm.Cli.Commands;
using Spm.Tests.Common;

namespace Spm.Cli.Tests;

/// <summary><c>spm bench gate</c> runs on the built-in model's text encoder and writes the figures the issue asks for (not a timing test).</summary>
[TestFixture]
public class BenchGateTests
{
    [Test]
    [Category(TestCategories.Slow)]
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
    [Category(TestCategories.Slow)]
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

    [Test]
    [Category(TestCategories.Slow)]
    public void InjectionBench_OneSessionAtATime_ReportsEveryInjectedPhaseAgainstThePlainOnesAroundIt()
    {
        var model = Path.Combine(TestPaths.RepoRoot, "models", "tiny-shapes");
        var (code, stdout, stderr) = CliHarness.Run(c => [BenchCommand.Create(c)],
            "bench", "injection", "--model", model, "--spms", "3", "--rounds", "2", "--latent", "8", "--one-session-at-a-time", "--injected-phases", "2", "--json");
        Assert.That(code, Is.EqualTo(0), stderr);
        var o = JsonNode.Parse(stdout.Trim().Split('\n')[^1])!.AsObject();
        Assert.That((bool)o["one_session_at_a_time"]!, Is.True);
        var phases = o["phases"]!.AsArray();
        Assert.That(phases, Has.Count.EqualTo(2));
        // Phase 1's "after" plain phase is phase 2's "before" one.
        Assert.That((double)phases[0]!["plain_after_ms"]!, Is.EqualTo((double)phases[1]!["plain_before_ms"]!));
        Assert.That((double)phases[0]!["plain_before_ms"]!, Is.EqualTo((double)o["base_before_ms"]!));
        Assert.That((double)phases[1]!["plain_after_ms"]!, Is.EqualTo((double)o["base_after_ms"]!));
        foreach (var key in new[] { "base_ms", "one_spm_ms", "many_spm_ms", "one_spm_ratio", "many_spm_ratio" })
            Assert.That((double)o[key]!, Is.GreaterThan(0), key);
        Assert.That(stderr, Does.Contain("plain phase 3"));

        (code, _, stderr) = CliHarness.Run(c => [BenchCommand.Create(c)],
            "bench", "injection", "--model", model, "--spms", "3", "--routed", "1", "--rounds", "1", "--latent", "8", "--one-session-at-a-time");
        Assert.That(code, Is.Not.EqualTo(0));
        Assert.That(stderr, Does.Contain("--one-session-at-a-time"));
    }
}
