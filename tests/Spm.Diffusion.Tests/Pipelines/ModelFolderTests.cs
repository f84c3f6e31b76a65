using Microsoft.ML.OnnxRuntime.Tensors;
using Spm.Core;
using Spm.Diffusion.Pipelines;
using Spm.Diffusion.Runtime;
using Spm.Tests.Common;

namespace Spm.Diffusion.Tests.Pipelines;

[TestFixture]
public class ModelFolderTests
{
    /// <summary>A copy of the fixture made of symlinks, with <paramref name="change"/> applied (fast, leaves the fixture untouched).</summary>
    private static string FixtureCopy(Action<string> change)
    {
        var dir = TestPaths.NewTempDir("spm-folder");
        foreach (var sub in Directory.GetDirectories(TestPaths.TinySd1))
        {
            var target = Path.Combine(dir, Path.GetFileName(sub));
            Directory.CreateDirectory(target);
            foreach (var f in Directory.GetFiles(sub)) File.CreateSymbolicLink(Path.Combine(target, Path.GetFileName(f)), f);
        }
        File.Copy(Path.Combine(TestPaths.TinySd1, "model_index.json"), Path.Combine(dir, "model_index.json"));
        change(dir);
        return dir;
    }

    [Test]
    public void Fixture_ConfigIsRead()
    {
        var m = ModelFolder.Open(TestPaths.TinySd1);
        Assert.That(m.Name, Is.EqualTo("tiny-sd1"));
        Assert.That(m.DefaultImageSize, Is.EqualTo(256));
        Assert.That(m.VaeScalingFactor, Is.EqualTo(0.18215));
        Assert.That(m.SchedulerClassName, Is.EqualTo("PNDMScheduler"));
        var c = m.SchedulerConfig;
        Assert.That((c.BetaStart, c.BetaEnd, c.BetaSchedule, c.StepsOffset, c.SkipPrkSteps, c.SetAlphaToOne, c.ClipSample),
            Is.EqualTo((0.00085, 0.012, "scaled_linear", 1, true, false, false)));
    }

    [Test]
    public void ImageSizeMultiple_IsTheVaeFactorTimesTheUNetsDownsampling()
    {
        // tiny-sd1: two down blocks (one downsamples) and no VAE config (factor 8).
        var sd1 = ModelFolder.Open(TestPaths.TinySd1);
        Assert.That((sd1.VaeScaleFactor, sd1.UNetDownsampleCount, sd1.LatentSizeMultiple, sd1.ImageSizeMultiple), Is.EqualTo((8, 1, 2, 16)));
        // tiny-shapes: three VAE blocks (factor 4), three UNet down blocks (two downsample).
        var shapes = ModelFolder.Open(Path.Combine(TestPaths.RepoRoot, DefaultModel.RelativePath));
        Assert.That((shapes.VaeScaleFactor, shapes.UNetDownsampleCount, shapes.LatentSizeMultiple, shapes.ImageSizeMultiple), Is.EqualTo((4, 2, 4, 16)));

        Assert.That(shapes.IsValidImageSide(64), Is.True);
        Assert.That(shapes.IsValidImageSide(72), Is.False, "72 / 4 = 18 latent cells, 9 after one halving: the skip Concat fails");
        Assert.That(shapes.DescribeInvalidImageSide("--width", 64), Is.Null);
        Assert.That(shapes.DescribeInvalidImageSide("--width", 72), Is.EqualTo(
            "--width must be a multiple of 16, got 72 (model 'tiny-shapes' needs multiples of 16: the VAE scales by 4 and the UNet halves the latent 2 time(s)); try 64 or 80."));
        Assert.That(shapes.DescribeInvalidImageSide("--height", 8), Does.StartWith("--height must be at least 16, got 8 ("));
        Assert.That(shapes.DescribeInvalidImageSide("--height", 9000), Does.StartWith("--height must be at most 8192, got 9000 ("));
    }

    [Test]
    public void UNetDownsampling_WithoutAConfig_IsCountedFromTheGraph()
    {
        var dir = FixtureCopy(d =>
        {
            // Real copies: the UNet's external data must not resolve outside its folder through a symbolic link.
            foreach (var f in Directory.GetFiles(Path.Combine(d, "unet"))) File.Delete(f);
            foreach (var f in new[] { "model.onnx", "weights.pb" })
                File.Copy(Path.Combine(TestPaths.TinySd1, "unet", f), Path.Combine(d, "unet", f));
        });
        var m = ModelFolder.Open(dir);
        Assert.That((m.UNetDownsampleCount, m.ImageSizeMultiple), Is.EqualTo((1, 16)), "one strided convolution in the fixture's UNet");

        var bad = FixtureCopy(d =>
        {
            var config = Path.Combine(d, "unet", "config.json");
            File.Delete(config);
            File.WriteAllText(config, "{\"down_block_types\": \"DownBlock2D\"}");
        });
        var ex = Assert.Throws<SpmFormatException>(() => ModelFolder.Open(bad))!;
        Assert.That(ex.Message, Does.Contain(Path.Combine(bad, "unet", "config.json")).And.Contain("down_block_types"));
    }

    [Test]
    public void Fixture_SignaturesAreReadFromTheSessions()
    {
        var p = PipelineFixture.Pipeline;
        Assert.That(p.UNet.TimestepInput.ElementType, Is.EqualTo(TensorElementType.Float));
        Assert.That(p.UNet.TimestepInput.Rank, Is.EqualTo(1));
        Assert.That(p.UNet.HiddenStatesInput.ShapeString, Is.EqualTo("[?,?,32]"));
        Assert.That(p.TextEncoder.Signature.RequireInput("input_ids").ElementType, Is.EqualTo(TensorElementType.Int32));
        Assert.That(p.Provider, Is.EqualTo(ExecutionProviderKind.Cpu));
        Assert.That(p.ProviderFallbackReason, Is.Null);
        Assert.That(p.DefaultSchedulerName, Is.EqualTo("pndm"));
    }

    [TestCase("vae_decoder/model.onnx", "the VAE decoder is missing")]
    [TestCase("unet/model.onnx", "the UNet is missing")]
    [TestCase("scheduler/scheduler_config.json", "the scheduler configuration is missing")]
    public void MissingPart_NamesTheFile(string part, string message)
    {
        var dir = FixtureCopy(d => File.Delete(Path.Combine(d, part)));
        var ex = Assert.Throws<SpmFormatException>(() => ModelFolder.Open(dir))!;
        Assert.That(ex.FilePath, Is.EqualTo(Path.Combine(dir, part)));
        Assert.That(ex.Message, Does.Contain(message));
    }

    [Test]
    public void BadSchedulerValue_NamesFileAndKey()
    {
        var dir = FixtureCopy(d =>
        {
            var p = Path.Combine(d, "scheduler", "scheduler_config.json");
            File.Delete(p);
            File.WriteAllText(p, "{\"beta_schedule\": \"cubic\", \"unknown_key\": 3}");
        });
        var ex = Assert.Throws<SpmFormatException>(() => ModelFolder.Open(dir))!;
        Assert.That(ex.Key, Is.EqualTo("beta_schedule"));
        Assert.That(ex.Message, Does.Contain("scheduler_config.json").And.Contain("cubic"));
    }

    [Test]
    public void TruncatedJson_IsAFormatError()
    {
        var dir = FixtureCopy(d => File.WriteAllText(Path.Combine(d, "model_index.json"), "{\"_class_name\": "));
        Assert.That(() => ModelFolder.Open(dir), Throws.TypeOf<SpmFormatException>().With.Message.Contains("model_index.json").And.Message.Contains("invalid JSON"));
    }

    [Test]
    public void GarbageUNet_IsAFormatErrorNamingTheFile()
    {
        var dir = FixtureCopy(d =>
        {
            var p = Path.Combine(d, "unet", "model.onnx");
            File.Delete(p);
            File.WriteAllBytes(p, [1, 2, 3, 4, 5, 6, 7, 8, 0xff, 0xfe]);
        });
        var ex = Assert.Throws<SpmFormatException>(() => StableDiffusionPipeline.Load(dir))!;
        Assert.That(ex.FilePath, Is.EqualTo(Path.Combine(dir, "unet", "model.onnx")));
    }

    [Test]
    public void UNetWithoutExpectedInputs_IsAFormatError()
    {
        // The VAE decoder is a valid ONNX model but not a UNet.
        var dir = FixtureCopy(d =>
        {
            var p = Path.Combine(d, "unet", "model.onnx");
            File.Delete(p);
            File.CreateSymbolicLink(p, Path.Combine(TestPaths.TinySd1, "vae_decoder", "model.onnx"));
        });
        Assert.That(() => StableDiffusionPipeline.Load(dir), Throws.TypeOf<SpmFormatException>().With.Message.Contains("no input 'sample'"));
    }

    [Test]
    public void CudaRequest_FallsBackToCpuWithAReason_OrRunsOnCuda()
    {
        var created = OnnxSessionFactory.Create(OnnxModelSource.FromFile(Path.Combine(TestPaths.TinySd1, "vae_decoder", "model.onnx")),
            new OnnxRuntimeOptions { Provider = ExecutionProviderKind.Cuda });
        using var s = created.Session;
        if (created.Provider == ExecutionProviderKind.Cpu)
        {
            Assert.That(created.FallbackReason, Does.Contain("CUDA"));
            Assert.That(created.FallbackReason, Does.Not.Contain("\n"));
        }
        else
        {
            Assert.That(created.FallbackReason, Is.Null);
        }
    }
}
