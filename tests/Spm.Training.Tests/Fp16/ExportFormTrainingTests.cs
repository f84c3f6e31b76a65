using Spm.Core;
using Spm.Core.Membranes;
using Spm.Diffusion.Onnx;
using Spm.Diffusion.Onnx.Fp16;
using Spm.Diffusion.Onnx.Fused;
using Spm.Diffusion.Runtime;
using Spm.Tests.Common;
using Spm.Training.LatentAnchoring;
using Spm.Training.Tests.LatentAnchoring;

namespace Spm.Training.Tests.Fp16;

/// <summary><c>spm train</c> on the exports users download: an fp16 pipeline trains (in fp32); a fused one is refused clearly.</summary>
[TestFixture]
public sealed class ExportFormTrainingTests
{
    private static readonly OnnxRuntimeOptions OneThread = new() { IntraOpThreads = 1, OptimizedModelCacheFolder = SuiteGraphCache.Folder };

    [Test]
    [Category(TestCategories.Slow)]
    public async Task Fp16Pipeline_TrainsInFp32_AndWritesAValidSpm()
    {
        var dir = TestPaths.NewTempDir("spm-train-fp16");
        try
        {
            var half = Path.Combine(dir, "fp16");
            Fp16PipelineConverter.Convert(TestPaths.TinySd1, half);
            var output = new TrainingOutput(Path.Combine(dir, "cat.safetensors"));
            using (var trainer = LatentAnchoringTrainer.Create(half, TrainerTests.Small(3), OneThread))
            {
                var result = await trainer.TrainAsync(output);
                Assert.That(result.History, Has.Count.EqualTo(3));
                Assert.That(result.History.All(h => double.IsFinite(h.Loss)), Is.True);
            }
            var adapter = SpmFile.Load(output.Path);
            Assert.That(adapter.Membranes, Has.Count.EqualTo(72));
            Assert.That(adapter.StorageDType.ToString(), Is.EqualTo("F32"), "a normal SPM file");
            Assert.That(adapter.Membranes.Any(m => m.Up.Data.Any(v => v != 0)), Is.True, "the membranes moved");
            // And it fits the fp16 model it was trained on, and the fp32 one.
            Assert.That(() => Spm.Diffusion.Membranes.LoadedSpms.Load(half, [output.Path]), Throws.Nothing);
            Assert.That(() => Spm.Diffusion.Membranes.LoadedSpms.Load(TestPaths.TinySd1, [output.Path]), Throws.Nothing);
        }
        finally
        {
            try { Directory.Delete(dir, true); } catch (IOException) { }
        }
    }

    [Test]
    public void FusedPipeline_IsRefused_NamingTheNodeAndTheWayOut()
    {
        var dir = TestPaths.NewTempDir("spm-train-fused");
        try
        {
            foreach (var file in Directory.EnumerateFiles(TestPaths.TinySd1, "*", SearchOption.AllDirectories))
            {
                var rel = Path.GetRelativePath(TestPaths.TinySd1, file);
                if (rel.StartsWith("unet", StringComparison.Ordinal)) continue;
                Directory.CreateDirectory(Path.GetDirectoryName(Path.Combine(dir, rel))!);
                File.Copy(file, Path.Combine(dir, rel));
            }
            Directory.CreateDirectory(Path.Combine(dir, "unet"));
            File.Copy(Path.Combine(TestPaths.TinySd1, "unet", "config.json"), Path.Combine(dir, "unet", "config.json"));
            UnetFuser.Fuse(OnnxModel.Load(TestPaths.TinySd1)).Model.Save(Path.Combine(dir, "unet", "model.onnx"));
            var ex = Assert.Throws<SpmException>(() => LatentAnchoringTrainer.Create(dir, TrainerTests.Small(1), OneThread))!;
            Assert.That(ex.Message, Does.Contain("MultiHeadAttention_0").And.Contain("com.microsoft.MultiHeadAttention").And.Contain("unfused export"));
        }
        finally
        {
            try { Directory.Delete(dir, true); } catch (IOException) { }
        }
    }
}
