using Spm.Core.Membranes;
using Spm.Diffusion.Membranes;
using Spm.Diffusion.Pipelines;
using Spm.Tests.Common;

namespace Spm.Training.Tests.Shapes;

/// <summary>The shipped <c>models/tiny-shapes</c> folder: its budget, that it runs, and that its SPMs fit it.</summary>
[TestFixture]
public class BuiltInModelTests
{
    private static string Folder => Path.Combine(TestPaths.RepoRoot, DefaultModel.RelativePath);

    [Test]
    public void FitsTheSizeBudget_AndIsTheDefaultModel()
    {
        long bytes = new DirectoryInfo(Folder).EnumerateFiles("*", SearchOption.AllDirectories).Sum(f => f.Length);
        Assert.That(bytes, Is.LessThanOrEqualTo(25L * 1000 * 1000), "models/tiny-shapes must stay within 25 MB");
        if (Environment.GetEnvironmentVariable(DefaultModel.EnvironmentVariable) is null)
            Assert.That(Path.GetFullPath(DefaultModel.Resolve(null)), Is.EqualTo(Path.GetFullPath(Folder)), "found from the test's folder, below the repository");
    }

    [Test]
    public async Task Generates64PixelImages_Reproducibly()
    {
        using var pipeline = StableDiffusionPipeline.Load(Folder);
        var request = new GenerationRequest { Prompt = "a red circle", Steps = 8, Seed = 3 };
        var a = await pipeline.GenerateAsync(request);
        var b = await pipeline.GenerateAsync(request);
        Assert.That((a.Images[0].Width, a.Images[0].Height), Is.EqualTo((64, 64)));
        Assert.That(a.Images[0].Rgb, Is.EqualTo(b.Images[0].Rgb));
        Assert.That(a.Images[0].Rgb.Distinct().Count(), Is.GreaterThan(16), "a picture, not a flat image");
    }

    [TestCase("circle", "circle")]
    [TestCase("red", "red")]
    [TestCase("striped", "striped")]
    [TestCase("circle-noanchor", "circle")]
    public void ShippedSpm_CoversTheModelsTransformerLayers_AndNamesItsConcept(string file, string concept)
    {
        var path = Path.Combine(Folder, "spm", file + ".safetensors");
        var adapter = SpmFile.Load(path);
        Assert.That(adapter.Config.Prompts, Does.Contain(concept));
        var loaded = LoadedSpms.Load(Path.Combine(Folder, "unet", "model.onnx"), [path]);
        Assert.That(loaded.Layout.Warnings, Is.Empty);
        Assert.That(loaded.Layout.Layers, Has.Count.EqualTo(adapter.Membranes.Count));
    }
}
