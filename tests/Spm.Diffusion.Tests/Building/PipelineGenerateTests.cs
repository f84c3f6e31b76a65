using Google.Protobuf;
using Spm.Diffusion.Pipelines;
using Spm.Shapes.Building;
using Spm.Shapes.World;
using Spm.Tests.Common;
using static Spm.Diffusion.Tests.Building.BuildTestSupport;

namespace Spm.Diffusion.Tests.Building;

/// <summary>Folders written by <see cref="PipelineWriter"/> run through the project's generation pipeline.</summary>
[TestFixture]
public class PipelineGenerateTests
{
    private string _dir = "";

    [SetUp]
    public void SetUp() => _dir = TestPaths.NewTempDir("spm-pipe-gen");

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, true);

    private static GenerationRequest Request => new() { Prompt = "a photo of a cat", Steps = 3, Seed = 42, Width = 64, Height = 64 };

    /// <summary>Loads the fixture's weights into each component by consuming node (UNet, VAE) or module path (text encoder).</summary>
    private static void LoadFixtureWeights(string component, GraphBuilder g)
    {
        var folder = Path.Combine(TestPaths.TinySd1, component);
        var reference = Load(Path.Combine(folder, "model.onnx"));
        if (component == "text_encoder")
        {
            var refParams = ModuleParams.Of(reference);
            foreach (var (key, t) in ModuleParams.Of(g.Build()))
                g.SetInitializer(t.Name, TensorInit.FromData(ReadFloats(refParams[key], folder)));
        }
        else
        {
            LoadWeightsByConsumer(g, g.Build(), reference, folder);
        }
    }

    [Test]
    [Category(TestCategories.Slow)]
    public async Task BuiltFolder_WithTheFixturesWeights_GeneratesTheFixturesImage()
    {
        var ours = Path.Combine(_dir, "tiny");
        PipelineWriter.Write(ours, PipelinePresets.TinySd1, 1, new PipelineWriteOptions
        {
            TokenizerFolder = Path.Combine(TestPaths.Shared, "clip-tokenizer"),
            Customize = LoadFixtureWeights,
        });
        using var a = StableDiffusionPipeline.Load(ours);
        using var b = StableDiffusionPipeline.Load(TestPaths.TinySd1);
        var imageA = (await a.GenerateAsync(Request)).Images.Single();
        var imageB = (await b.GenerateAsync(Request)).Images.Single();
        Assert.That(imageA.Rgb, Has.Length.EqualTo(64 * 64 * 3));
        int maxDiff = imageA.Rgb.Zip(imageB.Rgb, (x, y) => Math.Abs(x - y)).Max();
        Assert.That(maxDiff, Is.LessThanOrEqualTo(1), "same image up to rounding");
        Assert.That(imageA.Rgb.Distinct().Count(), Is.GreaterThan(10), "not a flat image");
    }

    [Test]
    [Category(TestCategories.Slow)]
    public async Task BuiltFolder_WithRandomWeights_Generates()
    {
        var ours = Path.Combine(_dir, "tiny");
        PipelineWriter.Write(ours, PipelinePresets.TinySd1, 3, new PipelineWriteOptions { TokenizerFolder = Path.Combine(TestPaths.Shared, "clip-tokenizer") });
        using var p = StableDiffusionPipeline.Load(ours);
        var result = await p.GenerateAsync(Request with { Count = 2 });
        Assert.That(result.Images, Has.Count.EqualTo(2));
        Assert.That(result.Images[0].Rgb, Is.Not.EqualTo(result.Images[1].Rgb));
    }
}
