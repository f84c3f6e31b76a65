using Spm.Core;
using Spm.Core.Gating;
using Spm.Diffusion.Membranes;
using Spm.Diffusion.Pipelines;
using Spm.Shapes.World;
using Spm.Tests.Common;
using Spm.Training.Evaluation;

namespace Spm.Training.Tests.Evaluation;

/// <summary>
/// The batched evaluation generator on the tiny-sd1 fixture (noise images, so the checks are about equality with the
/// pipeline, not about what the images show).
/// </summary>
[TestFixture]
public class EvalImageGeneratorTests
{
    private static readonly string[] SpmFiles =
    [
        Path.Combine(TestPaths.Reference("all-layers"), "spm.safetensors"),
        Path.Combine(TestPaths.Reference("attn2-rank4"), "spm.safetensors"),
    ];

    private LoadedSpms _spms = null!;
    private StableDiffusionPipeline _injected = null!;
    private StableDiffusionPipeline _plain = null!;

    private static readonly EvalGenerationSettings Settings = new() { Steps = 3, GuidanceScale = 4, ImageSize = 64, BatchSize = 3, Scheduler = "euler-a" };

    [OneTimeSetUp]
    public void Load()
    {
        _spms = LoadedSpms.Load(TestPaths.TinySd1, SpmFiles);
        _injected = StableDiffusionPipeline.Load(TestPaths.TinySd1, new PipelineOptions { UNetSource = _spms.UNetSource });
        _plain = StableDiffusionPipeline.Load(TestPaths.TinySd1);
    }

    [OneTimeTearDown]
    public void Unload()
    {
        _injected.Dispose();
        _plain.Dispose();
    }

    /// <summary>The pipeline's image for one prompt and seed with fixed multipliers, as planar floats in [0, 1].</summary>
    private static float[] PipelineImage(StableDiffusionPipeline pipeline, LoadedSpms? spms, string prompt, ulong seed, float[] multipliers)
    {
        var request = new GenerationRequest
        {
            Prompt = prompt,
            Steps = Settings.Steps,
            GuidanceScale = Settings.GuidanceScale,
            Scheduler = Settings.Scheduler,
            Seed = seed,
            Width = 64,
            Height = 64,
            Conditioner = spms?.CreateConditioner(pipeline, multipliers.Select(m => new GateSettings(FixedMultiplier: m)).ToArray()),
        };
        var image = pipeline.GenerateAsync(request).GetAwaiter().GetResult().Images[0];
        int plane = image.Width * image.Height;
        var planar = new float[3 * plane];
        for (int p = 0; p < plane; p++)
            for (int c = 0; c < 3; c++) planar[c * plane + p] = image.Rgb[3 * p + c] / 255f;
        return planar;
    }

    [Test]
    public void MixedBatch_GivesEachImageThePipelineMakesForItsPromptSeedAndMultipliers()
    {
        var generator = new EvalImageGenerator(_injected, _spms, Settings);
        var requests = new EvalImageRequest[]
        {
            new("a red circle", 5, [0f, 0f]),
            new("a striped blue star on a black background", 7, [0.8f, 0f]),
            new("a red circle", 9, [1f, -1.5f]),
            new("a green square", 11, [0f, 2f]), // second batch (batch size 3)
        };
        var images = generator.Generate(requests);
        Assert.That(images, Has.Count.EqualTo(4));
        Assert.That(generator.ImagesGenerated, Is.EqualTo(4));
        for (int i = 0; i < requests.Length; i++)
        {
            var expected = PipelineImage(_injected, _spms, requests[i].Prompt, requests[i].Seed, [.. requests[i].Multipliers]);
            Assert.That(MaxLevelDifference(images[i], expected), Is.LessThanOrEqualTo(1), $"image {i}: at most one 8-bit level of float noise from batching");
            Assert.That(MeanLevelDifference(images[i], expected), Is.LessThan(0.01), $"image {i}");
        }
        // The SPMs really act: the image with membranes differs from the same prompt and seed without them.
        var off = PipelineImage(_injected, _spms, requests[1].Prompt, requests[1].Seed, [0f, 0f]);
        Assert.That(MeanLevelDifference(images[1], off), Is.GreaterThan(0.1), "10x the batching tolerance");
    }

    [Test]
    public void BaseImages_AllMultipliersZero_AreThePlainModelsImages()
    {
        var generator = new EvalImageGenerator(_injected, _spms, Settings);
        var plainGenerator = new EvalImageGenerator(_plain, null, Settings);
        var image = generator.Generate([new EvalImageRequest("a yellow triangle", 21, [0f, 0f])])[0];
        var plain = plainGenerator.Generate([new EvalImageRequest("a yellow triangle", 21, [])])[0];
        Assert.That(image, Is.EqualTo(plain), "a multiplier of 0 must not change a bit");
        Assert.That(plain, Is.EqualTo(PipelineImage(_plain, null, "a yellow triangle", 21, [])));
    }

    [Test]
    public void ImagesDoNotDependOnBatching()
    {
        var requests = Enumerable.Range(0, 5).Select(i => new EvalImageRequest($"a purple shape number {i}", (ulong)(100 + i), [i % 2, 0f])).ToArray();
        var one = new EvalImageGenerator(_injected, _spms, Settings with { BatchSize = 1 }).Generate(requests);
        var five = new EvalImageGenerator(_injected, _spms, Settings with { BatchSize = 5 }).Generate(requests);
        for (int i = 0; i < requests.Length; i++)
            Assert.That(MaxLevelDifference(one[i], five[i]), Is.LessThanOrEqualTo(1), $"image {i}");
    }

    [Test]
    public void ParallelBatches_GiveTheSameImages_AndProgressStillAddsUp()
    {
        var requests = Enumerable.Range(0, 5).Select(i => new EvalImageRequest($"a blue star {i}", (ulong)(200 + i), [0f, i % 3 - 1])).ToArray();
        var sequential = new EvalImageGenerator(_injected, _spms, Settings with { BatchSize = 2 }).Generate(requests);
        var reports = new List<double>();
        var parallel = new EvalImageGenerator(_injected, _spms, Settings with { BatchSize = 2, Parallelism = 2 })
            .Generate(requests, new InlineProgress<double>(d => { lock (reports) reports.Add(d); }));
        for (int i = 0; i < requests.Length; i++) Assert.That(parallel[i], Is.EqualTo(sequential[i]), $"image {i}");
        Assert.That(reports, Is.Ordered.Ascending);
        Assert.That(reports[^1], Is.EqualTo(5.0).Within(1e-9));
    }

    [Test]
    public void GatesFor_AreTheConditionersGates()
    {
        var generator = new EvalImageGenerator(_injected, _spms, Settings);
        var settings = new[] { new GateSettings(), new GateSettings(GateCurve.Linear, 0.5f) };
        var conditioner = _spms.CreateConditioner(_injected, settings);
        foreach (var prompt in new[] { "reference concept", "a red circle", "" })
        {
            var expected = conditioner.GatesFor(prompt).Select(g => g.Multiplier);
            Assert.That(generator.GatesFor(prompt, settings).Select(g => g.Multiplier), Is.EqualTo(expected).Within(1e-6f), prompt);
        }
        // The SPMs' own concept opens the gate fully.
        Assert.That(generator.GatesFor("reference concept", settings)[0].Multiplier, Is.EqualTo(1f).Within(1e-4f));
    }

    [Test]
    public void ProgressCountsImages_AndCancellationStops()
    {
        var generator = new EvalImageGenerator(_injected, _spms, Settings);
        var reports = new List<double>();
        var requests = Enumerable.Range(0, 4).Select(i => new EvalImageRequest("a circle", (ulong)i, [0f, 0f])).ToArray();
        generator.Generate(requests, new InlineProgress<double>(reports.Add));
        Assert.That(reports, Is.Ordered.Ascending);
        Assert.That(reports[^1], Is.EqualTo(4.0).Within(1e-9));
        Assert.That(reports, Has.Count.EqualTo(2 * generator.UNetCallsPerBatch), "one report per UNet call");

        using var cts = new CancellationTokenSource();
        var cancelling = new InlineProgress<double>(_ => cts.Cancel());
        Assert.Throws<OperationCanceledException>(() => generator.Generate(requests, cancelling, cts.Token));
    }

    [Test]
    public void BadRequestsAndMismatchedPipelines_FailClearly()
    {
        var generator = new EvalImageGenerator(_injected, _spms, Settings);
        var ex = Assert.Throws<ArgumentException>(() => generator.Generate([new EvalImageRequest("a circle", 0, [1f])]));
        Assert.That(ex!.Message, Does.Contain("1 multipliers").And.Contain("2 SPMs"));

        // The plain UNet has no membrane inputs; the injected one needs them.
        var mismatch = Assert.Throws<SpmMismatchException>(() => _ = new EvalImageGenerator(_plain, _spms, Settings));
        Assert.That(mismatch!.Message, Does.Contain("not loaded with these SPMs"));
        mismatch = Assert.Throws<SpmMismatchException>(() => _ = new EvalImageGenerator(_injected, null, Settings));
        Assert.That(mismatch!.Message, Does.Contain("no SPMs were given"));

        Assert.Throws<InvalidGenerationRequestException>(() => _ = new EvalImageGenerator(_plain, null, Settings with { ImageSize = 60 }));
        Assert.Throws<InvalidGenerationRequestException>(() => _ = new EvalImageGenerator(_plain, null, Settings with { Scheduler = "nope" }));
        Assert.Throws<InvalidGenerationRequestException>(() => _ = new EvalImageGenerator(_plain, null, Settings with { BatchSize = 0 }));
    }

    internal static int MaxLevelDifference(float[] a, float[] b)
    {
        Assert.That(a, Has.Length.EqualTo(b.Length));
        int max = 0;
        for (int i = 0; i < a.Length; i++) max = Math.Max(max, (int)MathF.Round(MathF.Abs(a[i] - b[i]) * 255f));
        return max;
    }

    internal static double MeanLevelDifference(float[] a, float[] b)
    {
        double sum = 0;
        for (int i = 0; i < a.Length; i++) sum += MathF.Abs(a[i] - b[i]) * 255f;
        return sum / a.Length;
    }
}

/// <summary>Reports synchronously on the calling thread (Progress&lt;T&gt; posts and may reorder).</summary>
internal sealed class InlineProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}
