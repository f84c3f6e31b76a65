using System.CommandLine;
using Spm.Cli.Commands;
using Spm.Core.SafeTensors;
using Spm.Tests.Common;

namespace Spm.Cli.Tests;

/// <summary><c>spm grad</c> end to end: the written file reproduces the PyTorch gradients; bad input is a one-line error.</summary>
[TestFixture]
public class GradCommandTests
{
    private static (int Code, string Out, string Err) Run(params string[] args)
        => CliHarness.Run(c => [GradCommand.Create(c)], args);

    [Test]
    [Category(TestCategories.Slow)]
    public void WritesGradientsMatchingTheReference()
    {
        var dir = TestPaths.Reference("attn2-rank4");
        var output = Path.Combine(TestPaths.NewTempDir(), "g.safetensors");
        var (code, stdout, stderr) = Run("grad", "--model", Path.Combine(TestPaths.TinySd1, "unet", "model.onnx"),
            "--spm", Path.Combine(dir, "spm.safetensors"), "--multiplier", "-1.5",
            "--inputs", Path.Combine(dir, "inputs.safetensors"), "--out", output, "--threads", "2");
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stdout, Does.Contain("48 gradient tensors"));

        using var got = SafeTensorsFile.Open(output);
        using var expected = SafeTensorsFile.Open(Path.Combine(dir, "expected.safetensors"));
        var keys = expected.Tensors.Select(t => t.Name).Where(n => n.StartsWith("grad.", StringComparison.Ordinal)).ToList();
        Assert.That(got.Tensors.Select(t => t.Name), Is.EquivalentTo(keys));
        foreach (var key in keys)
        {
            var a = got.ReadFloat(key);
            var b = expected.ReadFloat(key);
            Assert.That(a.Shape, Is.EqualTo(b.Shape), key);
            double maxDiff = 0, maxRef = 0;
            for (int i = 0; i < a.Length; i++)
            {
                maxDiff = Math.Max(maxDiff, Math.Abs((double)a.Data[i] - b.Data[i]));
                maxRef = Math.Max(maxRef, Math.Abs((double)b.Data[i]));
            }
            Assert.That(maxDiff / maxRef, Is.LessThan(1e-3), key);
        }
        Assert.That(got.Metadata["multiplier"], Is.EqualTo("-1.5"));
    }

    [Test]
    public void ExistingOutputIsKeptWithoutForce()
    {
        var dir = TestPaths.Reference("attn2-rank4");
        var output = Path.Combine(TestPaths.NewTempDir(), "g.safetensors");
        File.WriteAllText(output, "keep me");
        var (code, _, stderr) = Run("grad", "--model", TestPaths.TinySd1, "--spm", Path.Combine(dir, "spm.safetensors"),
            "--inputs", Path.Combine(dir, "inputs.safetensors"), "--out", output);
        Assert.That(code, Is.Not.EqualTo(0));
        Assert.That(stderr, Does.Contain("already exists"));
        Assert.That(File.ReadAllText(output), Is.EqualTo("keep me"));
    }

    [Test]
    public void InputsFileWithoutRIsANamedError()
    {
        var dir = TestPaths.Reference("attn2-rank4");
        var output = Path.Combine(TestPaths.NewTempDir(), "g.safetensors");
        // The SPM file itself is a valid safetensors file without sample/R: the error names the file and the key.
        var (code, _, stderr) = Run("grad", "--model", TestPaths.TinySd1, "--spm", Path.Combine(dir, "spm.safetensors"),
            "--inputs", Path.Combine(dir, "spm.safetensors"), "--out", output);
        Assert.That(code, Is.EqualTo(ExitCodes.BadInput));
        Assert.That(stderr, Does.Contain("spm.safetensors").And.Contain("'sample'"));
        Assert.That(File.Exists(output), Is.False);
    }
}
