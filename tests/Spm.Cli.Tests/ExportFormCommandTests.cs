using Spm.Cli.Commands;
using Spm.Tests.Common;

namespace Spm.Cli.Tests;

/// <summary><c>spm export-adapter</c> end to end through the command line.</summary>
[TestFixture]
public class ExportAdapterCommandTests
{
    [Test]
    public void ExportAdapter_WritesThePair_AndRefusesToOverwrite()
    {
        var dir = TestPaths.NewTempDir("spm-cli-adapter");
        try
        {
            var spm = Path.Combine(TestPaths.Reference("attn2-rank4"), "spm.safetensors");
            var (code, stdout, stderr) = CliHarness.Run(c => [ExportAdapterCommand.Create(c)], "export-adapter", "--model", TestPaths.TinySd1, "--spm", spm + ":0.5", "--out", dir);
            Assert.That(code, Is.EqualTo(0), stderr);
            Assert.That(stdout, Does.Contain("x0.5").And.Contain("spm.onnx_adapter"));
            Assert.That(File.Exists(Path.Combine(dir, "model.onnx")) && File.Exists(Path.Combine(dir, "spm.onnx_adapter")), Is.True);
            (code, _, stderr) = CliHarness.Run(c => [ExportAdapterCommand.Create(c)], "export-adapter", "--model", TestPaths.TinySd1, "--spm", spm, "--out", dir);
            Assert.That(code, Is.Not.EqualTo(0));
            Assert.That(stderr, Does.Contain("already exists").And.Contain("--force"));
        }
        finally
        {
            try { Directory.Delete(dir, true); } catch (IOException) { }
        }
    }
}

/// <summary><c>spm convert-fp16</c> through the command line.</summary>
[TestFixture]
public class ConvertFp16CommandTests
{
    [Test]
    [Category(TestCategories.Slow)]
    public void ConvertFp16_WritesEveryComponentInFp16_AndRefusesAnExistingFolder()
    {
        var dir = TestPaths.NewTempDir("spm-cli-fp16");
        try
        {
            var outDir = Path.Combine(dir, "fp16");
            var (code, stdout, stderr) = CliHarness.Run(c => [ConvertFp16Command.Create(c)], "convert-fp16", "--model", TestPaths.TinySd1, "--out", outDir);
            Assert.That(code, Is.EqualTo(0), stderr);
            Assert.That(stdout, Does.Contain("text_encoder, unet, vae_decoder"));
            foreach (var c in new[] { "text_encoder", "unet", "vae_decoder" })
                Assert.That(Spm.Diffusion.Onnx.Fp16.Fp16Converter.IsHalf(Spm.Diffusion.Onnx.OnnxModel.Load(outDir, c)), Is.True, c);
            Assert.That(File.Exists(Path.Combine(outDir, "scheduler", "scheduler_config.json")), Is.True);
            (code, _, stderr) = CliHarness.Run(c => [ConvertFp16Command.Create(c)], "convert-fp16", "--model", TestPaths.TinySd1, "--out", outDir);
            Assert.That(code, Is.Not.EqualTo(0));
            Assert.That(stderr, Does.Contain("already exists").And.Contain("--force"));
        }
        finally
        {
            try { Directory.Delete(dir, true); } catch (IOException) { }
        }
    }
}
