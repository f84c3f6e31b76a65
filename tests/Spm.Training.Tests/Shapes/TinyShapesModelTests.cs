using Spm.Diffusion.Pipelines;
using Spm.Diffusion.Text;
using Spm.Training.Shapes;
using Spm.Tests.Common;

namespace Spm.Training.Tests.Shapes;

[TestFixture]
public class TinyShapesModelTests
{
    [Test]
    public async Task AShortRun_WritesAPipelineFolderThatGenerates64PixelImages()
    {
        var dir = Path.Combine(Path.GetTempPath(), "spm-tinyshapes-" + Guid.NewGuid().ToString("N"));
        try
        {
            var options = new TinyShapesTrainingOptions { AutoencoderSteps = 2, AutoencoderBatch = 2, UNetSteps = 2, UNetBatch = 2, LatentPoolSize = 4, WarmupSteps = 1 };
            var phases = new HashSet<string>();
            var report = await TinyShapesModel.TrainAsync(dir, Path.Combine(TestPaths.Shared, "clip-tokenizer"), options,
                progress: new SyncProgress<TinyShapesProgress>(p => phases.Add(p.Phase)));
            Assert.That(phases, Is.EquivalentTo(new[] { "autoencoder", "encode", "unet" }));
            Assert.That(report.AutoencoderLosses, Has.Count.EqualTo(2));
            Assert.That(report.UNetLosses, Has.Count.EqualTo(2));
            Assert.That(report.ScalingFactor, Is.GreaterThan(0));

            var folder = ModelFolder.Open(dir);
            Assert.That(folder.VaeScalingFactor, Is.EqualTo(report.ScalingFactor).Within(1e-9));
            using var pipeline = StableDiffusionPipeline.Load(dir);
            var result = await pipeline.GenerateAsync(new GenerationRequest { Prompt = "a red circle", Steps = 3, Width = 64, Height = 64, Seed = 1 });
            Assert.That(result.Images[0].Width, Is.EqualTo(64));
            Assert.That(result.Images[0].Height, Is.EqualTo(64));

            var ex = Assert.ThrowsAsync<Spm.Core.SpmException>(() => TinyShapesModel.TrainAsync(dir, Path.Combine(TestPaths.Shared, "clip-tokenizer"), options));
            Assert.That(ex!.Message, Does.Contain("already exists"));
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, true);
        }
    }

    private sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
