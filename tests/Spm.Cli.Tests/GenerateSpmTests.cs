using System.CommandLine;
using System.Text.RegularExpressions;
using Spm.Cli.Commands;
using Spm.Core.Membranes;
using Spm.Core.SafeTensors;
using Spm.Core.Tensors;
using Spm.Diffusion.Images;
using Spm.Tests.Common;

namespace Spm.Cli.Tests;

/// <summary><c>spm generate --spm</c>: gates on stdout and in the PNG, a switched-off SPM changes nothing, mismatches fail cleanly.</summary>
[TestFixture]
public class GenerateSpmTests
{
    private string _dir = "";

    [SetUp]
    public void SetUp() => _dir = TestPaths.NewTempDir("spm-generate-spm");

    [TearDown]
    public void TearDown()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    private static (int Code, string Out, string Err) Run(params string[] args)
        => CliHarness.Run(c => [GenerateCommand.Create(c)], args);

    private static string Spm(string caseName) => Path.Combine(TestPaths.Reference(caseName), "spm.safetensors");

    private static string[] Generate(params string[] extra)
        => ["generate", "--model", TestPaths.TinySd1, "--prompt", "a photo of a cat", "--steps", "2", "--seed", "3", "--gate-calibration", "none", .. extra];

    [Test]
    [Category(TestCategories.Slow)]
    public void Gates_AreOnStdoutAndInThePng()
    {
        var png = Path.Combine(_dir, "a.png");
        var (code, stdout, stderr) = Run(Generate("--out", png, "--spm", Spm("all-layers"), "--spm", Spm("attn2-rank4") + ":0.5"));
        Assert.That(code, Is.EqualTo(0), stderr);
        var gated = Regex.Match(stdout, @"gate: spm\.safetensors gate ([0-9.]+) \(gamma ([0-9.]+), raw\)");
        Assert.That(gated.Success, Is.True, stdout);
        Assert.That(stdout, Does.Contain("gate: spm.safetensors x0.5 (fixed)"));
        // The gate is gamma squared (default curve).
        double g = double.Parse(gated.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        double gamma = double.Parse(gated.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.That(g, Is.EqualTo(gamma * gamma).Within(2e-3));
        Assert.That(PngImage.ReadParameters(png), Does.Contain($"SPM: spm.safetensors gate {gated.Groups[1].Value} (gamma {gated.Groups[2].Value}, raw), spm.safetensors x0.5 (fixed)"));

        // Linear curve: the gate equals gamma.
        (code, stdout, stderr) = Run(Generate("--out", Path.Combine(_dir, "b.png"), "--spm", Spm("all-layers"), "--gate-curve", "linear"));
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stdout, Does.Contain($"gate: spm.safetensors gate {gated.Groups[2].Value} (gamma {gated.Groups[2].Value}, raw)"));
    }

    [Test]
    [Category(TestCategories.Slow)]
    public void SpmAtZero_GivesThePlainModelsLatents_AndActiveSpmChangesThem()
    {
        var plain = Path.Combine(_dir, "plain.safetensors");
        var zero = Path.Combine(_dir, "zero.safetensors");
        var on = Path.Combine(_dir, "on.safetensors");
        Assert.That(Run(Generate("--out", Path.Combine(_dir, "p.png"), "--save-latents", plain)).Code, Is.EqualTo(0));
        var r = Run(Generate("--out", Path.Combine(_dir, "z.png"), "--save-latents", zero, "--spm", Spm("all-layers") + ":0"));
        Assert.That(r.Code, Is.EqualTo(0), r.Err);
        r = Run(Generate("--out", Path.Combine(_dir, "o.png"), "--save-latents", on, "--spm", Spm("all-layers") + ":2", "--spm-uncond-off"));
        Assert.That(r.Code, Is.EqualTo(0), r.Err);
        Assert.That(r.Out, Does.Contain("membranes off in the unconditional row"));
        FloatTensor Read(string p) { using var f = SafeTensorsFile.Open(p); return f.ReadFloat("latents"); }
        Assert.That(Read(zero).Data, Is.EqualTo(Read(plain).Data), "a multiplier of 0 must not change a bit");
        Assert.That(Read(on).Data, Is.Not.EqualTo(Read(plain).Data));
    }

    [Test]
    public void MismatchedSpm_FailsWithOneLineNamingTheLayer()
    {
        var path = Path.Combine(_dir, "sd2-like.safetensors");
        var layer = "mid_block.attentions.0.transformer_blocks.0.attn2.to_k";
        SpmFile.Save(path, new SpmAdapter(new SpmConfig(["x"], 1, 1f),
            [new Membrane(SpmKeys.KeyFor(layer), new FloatTensor(1, 1024), new FloatTensor(64, 1), 1f, layer)]), overwrite: true);
        var png = Path.Combine(_dir, "m.png");
        var (code, _, stderr) = Run(Generate("--out", png, "--spm", path));
        Assert.That(code, Is.EqualTo(ExitCodes.BadInput));
        Assert.That(stderr.Trim(), Does.StartWith("spm: error:").And.Contain(layer).And.Contain("1 of its 1 layers"));
        Assert.That(File.Exists(png), Is.False);
    }
}
