using Spm.Cli.Commands;
using Spm.Core.Gating;
using Spm.Core.Membranes;
using Spm.Tests.Common;

namespace Spm.Cli.Tests;

/// <summary><c>spm gate set</c>: a fitted gate recalibrated without refitting; the probe and the tensors stay as they were.</summary>
public class GateSetCommandTests
{
    private string _dir = "";

    private static string Shipped => Path.Combine(TestPaths.RepoRoot, "models", "tiny-shapes", "spm", "circle.safetensors");

    [SetUp]
    public void SetUp() => _dir = TestPaths.NewTempDir("spm-gate-set");

    [TearDown]
    public void TearDown()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    private static (int Code, string Out, string Err) Run(params string[] args) => CliHarness.Run(c => [GateCommand.Create(c)], args);

    private static ConceptProbe ProbeOf(string file) => ConceptProbe.FromJson(SpmFile.Load(file).Config.Extra[ConceptProbe.MetadataKey], file);

    [Test]
    public void Set_ChangesOnlyTheThresholdsAndStrengthAsked_AndKeepsTheProbeAndTensors()
    {
        var before = ProbeOf(Shipped);
        var output = Path.Combine(_dir, "circle.safetensors");
        var (code, stdout, stderr) = Run("gate", "set", Shipped, "--closed", "0.3", "--out", output);
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stdout.Trim(), Is.EqualTo($"circle.safetensors: gate 'circle' shut <= 0.1 -> 0.3, open >= 0.35 -> 0.35, strength {before.Strength:0.###} -> {before.Strength:0.###}"));

        var after = ProbeOf(output);
        Assert.That((after.Closed, after.Open, after.Strength), Is.EqualTo((0.3f, before.Open, before.Strength)));
        Assert.That((after.Concept, after.Bias, after.Temperature, after.ReadLast, after.LookAhead), Is.EqualTo((before.Concept, before.Bias, before.Temperature, before.ReadLast, before.LookAhead)));
        var original = SpmFile.Load(Shipped);
        var written = SpmFile.Load(output);
        Assert.That(written.Config.Prompts, Is.EqualTo(original.Config.Prompts));
        Assert.That(written.Config.Extra.Where(kv => kv.Key != ConceptProbe.MetadataKey), Is.EquivalentTo(original.Config.Extra.Where(kv => kv.Key != ConceptProbe.MetadataKey)));
        Assert.That(written.Membranes.Select(m => m.Key), Is.EqualTo(original.Membranes.Select(m => m.Key)));
        for (int i = 0; i < written.Membranes.Count; i++)
        {
            Assert.That(written.Membranes[i].Down.Data, Is.EqualTo(original.Membranes[i].Down.Data), written.Membranes[i].Key);
            Assert.That(written.Membranes[i].Up.Data, Is.EqualTo(original.Membranes[i].Up.Data), written.Membranes[i].Key);
        }

        // In place, the other two settings; the thresholds set before are kept.
        (code, stdout, stderr) = Run("gate", "set", output, "--open", "0.5", "--strength", "1.25", "--in-place");
        Assert.That(code, Is.EqualTo(0), stderr);
        after = ProbeOf(output);
        Assert.That((after.Closed, after.Open, after.Strength), Is.EqualTo((0.3f, 0.5f, 1.25f)));
        // An existing --out file needs --force.
        AssertError(Run("gate", "set", Shipped, "--closed", "0.2", "--out", output), "already exists (use --force");
        Assert.That(ProbeOf(output).Closed, Is.EqualTo(0.3f), "kept");
    }

    [Test]
    public void BadRequests_NameWhatIsWrong_AndWriteNothing()
    {
        var output = Path.Combine(_dir, "out.safetensors");
        AssertError(Run("gate", "set", Shipped, "--closed", "0.2"), "--out FILE, or --in-place");
        AssertError(Run("gate", "set", Shipped, "--out", output), "nothing to change");
        AssertError(Run("gate", "set", Shipped, "--closed", "0.5", "--out", output), "0 <= closed < open <= 1, got closed 0.5 and open 0.35");
        AssertError(Run("gate", "set", Shipped, "--strength", "0", "--out", output), "--strength must be a positive number");

        // A file without a learned gate.
        var adapter = SpmFile.Load(Shipped);
        var extra = adapter.Config.Extra.Where(kv => kv.Key != ConceptProbe.MetadataKey).ToDictionary(kv => kv.Key, kv => kv.Value);
        var plain = Path.Combine(_dir, "plain.safetensors");
        SpmFile.Save(plain, new SpmAdapter(adapter.Config with { Extra = extra }, adapter.Membranes, adapter.StorageDType), dtype: adapter.StorageDType);
        AssertError(Run("gate", "set", plain, "--closed", "0.2", "--out", output), $"'{plain}' has no learned gate (metadata 'gate_probe'): fit one with spm gate fit");
        Assert.That(File.Exists(output), Is.False);
    }

    private static void AssertError((int Code, string Out, string Err) r, string message)
    {
        Assert.That(r.Code, Is.Not.EqualTo(0), r.Out);
        Assert.That(r.Err, Does.Contain(message));
    }
}
