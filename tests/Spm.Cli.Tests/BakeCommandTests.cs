using System.CommandLine;
using System.Text.Json;
using Spm.Cli.Commands;
using Spm.Tests.Common;

namespace Spm.Cli.Tests;

[TestFixture]
public class BakeCommandTests
{
    private string _temp = null!;

    [OneTimeSetUp]
    public void SetUp() => _temp = TestPaths.NewTempDir("spm-bake-cli");

    [OneTimeTearDown]
    public void TearDown()
    {
        try { Directory.Delete(_temp, true); } catch (IOException) { }
    }

    private static (int Code, string Out, string Err) Run(params string[] args)
        => CliHarness.Run(c => [BakeCommand.Create(c), InspectCommand.Create(c)], args);

    private static string Spm(string caseName) => Path.Combine(TestPaths.Reference(caseName), "spm.safetensors");

    [TestCase("merge")]
    [TestCase("branch")]
    public void Bake_ThenInspect_ShowsNoMembraneInputs(string mode)
    {
        var outDir = Path.Combine(_temp, mode);
        var (code, stdout, stderr) = Run("bake", "--model", TestPaths.TinySd1, "--spm", Spm("all-layers") + ":0.8",
            "--spm", Spm("attn2-rank4"), "--multiplier", "0.8", "--multiplier", "-1.5", "--mode", mode, "--out", outDir);
        Assert.That(code, Is.EqualTo(2), "FILE:MULT together with --multiplier is refused: " + stderr);
        Assert.That(stderr, Does.Contain("not both"));

        (code, stdout, stderr) = Run("bake", "--model", TestPaths.TinySd1, "--spm", Spm("all-layers") + ":0.8",
            "--spm", Spm("attn2-rank4") + ":-1.5", "--mode", mode, "--out", outDir);
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stdout, Does.Contain("into 72 layers (" + mode + ")").And.Contain("x0.8").And.Contain("x-1.5"));

        (code, stdout, stderr) = Run("inspect", outDir, "--json");
        Assert.That(code, Is.EqualTo(0), stderr);
        using var doc = JsonDocument.Parse(stdout);
        var inputs = doc.RootElement.GetProperty("inputs").EnumerateArray().Select(i => i.GetProperty("name").GetString()).ToList();
        Assert.That(inputs, Is.EqualTo(new[] { "sample", "timestep", "encoder_hidden_states" }));
    }

    [Test]
    public void Bake_ExistingOutput_FailsWithOneLineAndKeepsIt()
    {
        var outFile = Path.Combine(_temp, "exists.onnx");
        File.WriteAllText(outFile, "not mine to lose");
        var (code, _, stderr) = Run("bake", "--model", Path.Combine(TestPaths.TinySd1, "unet"), "--spm", Spm("attn2-rank4"), "--out", outFile);
        Assert.That(code, Is.Not.EqualTo(0));
        Assert.That(stderr.Trim(), Does.StartWith("spm: error:").And.Contain("--force"));
        Assert.That(stderr.Trim().Split('\n'), Has.Length.EqualTo(1));
        Assert.That(File.ReadAllText(outFile), Is.EqualTo("not mine to lose"));
    }
}
