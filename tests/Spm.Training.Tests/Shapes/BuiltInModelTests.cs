using Spm.Core.Gating;
using Spm.Core.Membranes;
using Spm.Diffusion.Membranes;
using Spm.Diffusion.Pipelines;
using Spm.Shapes.Evaluation;
using Spm.Shapes.World;
using Spm.Tests.Common;
using Spm.Training.LatentAnchoring;

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

    /// <summary>
    /// The shipped model draws what captions ask for, at its own sampling defaults: 48 random training-style captions
    /// (`spm eval --fidelity` on 200 measured the figures in the README). The bars sit below those figures by the
    /// sampling spread of 48 images, so a model that lost its reading of the captions fails.
    /// </summary>
    [Test]
    [Category(TestCategories.Slow)]
    public void DrawsTheShapeAndColourCaptionsAskFor()
    {
        var sampling = ModelGenerationDefaults.Load(Folder)!;
        using var pipeline = StableDiffusionPipeline.Load(Folder);
        var generator = new Spm.Training.Evaluation.EvalImageGenerator(pipeline, null,
            new Spm.Training.Evaluation.EvalGenerationSettings { Steps = sampling.Steps!.Value, GuidanceScale = sampling.GuidanceScale!.Value });
        var fidelity = new Spm.Shapes.Evaluation.SpmErasureEvaluator(generator).MeasureFidelity(48, seed: 5);
        TestContext.Out.WriteLine($"shape {fidelity.ShapeAccuracy:P1}, colour {fidelity.ColorAccuracy:P1}, pattern {fidelity.PatternAccuracy:P1}, background {fidelity.BackgroundAccuracy:P1}");
        Assert.That(fidelity.ShapeAccuracy, Is.GreaterThanOrEqualTo(ShapeBar), "shape");
        Assert.That(fidelity.ColorAccuracy, Is.GreaterThanOrEqualTo(ColourBar), "colour");
        Assert.That(fidelity.PatternAccuracy, Is.GreaterThanOrEqualTo(PatternBar), "pattern");
        Assert.That(fidelity.BackgroundAccuracy, Is.GreaterThanOrEqualTo(BackgroundBar), "background");
    }

    // Measured on these 48 (model v4g): shape 91.7, colour 91.3, pattern 89.7, background 100 % (400 captions: 93.8 / 97.1 /
    // 91.8 / 100 %). The colour bar sits above
    // model v2's 82.6 %, which drew orange as yellow; the pattern bar above v3's 58 %, which seldom drew stripes.
    private const double ShapeBar = 0.80, ColourBar = 0.88, PatternBar = 0.78, BackgroundBar = 0.85;

    /// <summary>
    /// The shipped circle SPM erases circles from circle prompts and leaves a prompt without circles untouched under the
    /// calibrated gate. Eight fixed seeds at the model's sampling defaults (DPM-Solver++ 2M 30 steps, guidance 3, as spm eval);
    /// `spm eval` on 100 prompts measured circle detection (see the README table).
    /// </summary>
    [Test]
    [Category(TestCategories.Slow)]
    public async Task ShippedCircleSpm_ErasesCircles_AndTheCalibratedGateLeavesOtherPromptsAlone()
    {
        var spm = Path.Combine(Folder, "spm", "circle.safetensors");
        var sampling = ModelGenerationDefaults.Load(Folder)!;
        var loaded = LoadedSpms.Load(Folder, [spm]);
        using var pipeline = StableDiffusionPipeline.Load(Folder, new PipelineOptions { UNetSource = loaded.UNetSource });
        var evaluator = new ShapeEvaluator();
        async Task<GeneratedImage[]> Run(string prompt, GateSettings gate)
        {
            var request = new GenerationRequest
            {
                Prompt = prompt, Steps = sampling.Steps!.Value, GuidanceScale = sampling.GuidanceScale!.Value, Seed = 100, Count = 8, BatchSize = 8,
                Conditioner = loaded.CreateConditioner(pipeline, [gate]),
            };
            return (await pipeline.GenerateAsync(request)).Images.ToArray();
        }
        int Circles(IEnumerable<GeneratedImage> images) => images.Count(i => evaluator.Evaluate(Spm.Training.Evaluation.EvalImageGenerator.PlanarFromRgb24(i.Rgb)).Shape.Value == ShapeKind.Circle);

        const string circlePrompt = "a blue circle on a white background";
        int baseCircles = Circles(await Run(circlePrompt, new GateSettings(FixedMultiplier: 0f)));
        int erasedCircles = Circles(await Run(circlePrompt, GateSettings.Default));
        TestContext.Out.WriteLine($"circles: base {baseCircles}/8, erased {erasedCircles}/8");
        Assert.That(baseCircles, Is.GreaterThanOrEqualTo(6), "the base model draws the circles it is asked for");
        Assert.That(erasedCircles, Is.LessThanOrEqualTo(1), "the SPM erases them");

        const string other = "a green square on a black background";
        var baseOther = await Run(other, new GateSettings(FixedMultiplier: 0f));
        var gatedOther = await Run(other, GateSettings.Default);
        for (int i = 0; i < 8; i++) Assert.That(gatedOther[i].Rgb, Is.EqualTo(baseOther[i].Rgb), "gate 0: the base model's image");
    }

    /// <summary>
    /// The gate that holds, read from the text encoder alone: each shipped SPM's learned gate opens fully for re-phrasings the
    /// model draws as its concept (capitals, word order, long prompts, repetition; the plural for the circle) and stays shut
    /// for near neighbours in the model's own words. Images and the per-image figures: docs/gate.md (spm attack).
    /// </summary>
    [TestCase("circle", new[] { "a red circle", "A RED CIRCLE", "red circles", "a circle that is red", "circle, a blue circle, circle", "a photo of, a striped green circle, high quality, detailed" },
        new[] { "a red square", "a green triangle on a black background", "a square that is blue", "A BLUE STAR", "a photo of, a dotted yellow square, high quality, detailed" })]
    [TestCase("red", new[] { "a red circle", "A RED SQUARE", "red stars", "a triangle that is red", "red, star, striped, on gray", "simple, a red star, digital art" },
        new[] { "a blue circle", "a green square on a white background", "a circle that is purple", "AN ORANGE STAR", "simple, a yellow star, digital art" })]
    [TestCase("striped", new[] { "a striped red circle", "a red circle with stripes", "red circles with stripes", "A STRIPED BLUE SQUARE", "a stripy star", "a banded square", "a blue square that is striped", "a striped green triangle, high quality, detailed" },
        new[] { "a green star", "a green star on a gray background", "a dotted green star on a yellow background", "a plain red circle" })]
    public void ShippedLearnedGates_OpenForPhrasingsOfTheirConcept_AndStayShutForNearNeighbours(string name, string[] targets, string[] neighbours)
    {
        var loaded = LoadedSpms.Load(Folder, [Path.Combine(Folder, "spm", name + ".safetensors")]);
        Assert.That(loaded.Layout.Sets[0].GateProbe, Is.Not.Null, "the shipped file carries a learned gate");
        using var pipeline = StableDiffusionPipeline.Load(Folder, new PipelineOptions { UNetSource = loaded.UNetSource });
        var conditioner = loaded.CreateConditioner(pipeline, [GateSettings.Default]);
        float strength = loaded.Layout.Sets[0].GateProbe!.Strength;
        foreach (var t in targets)
        {
            var gate = conditioner.GatesFor(t)[0];
            TestContext.Out.WriteLine($"{name} target '{t}': {gate}");
            Assert.That(gate.ReadBy, Is.EqualTo(GateCalibration.Learned));
            Assert.That(gate.Multiplier, Is.GreaterThanOrEqualTo(0.8f * strength), t);
        }
        foreach (var n in neighbours)
        {
            var gate = conditioner.GatesFor(n)[0];
            TestContext.Out.WriteLine($"{name} neighbour '{n}': {gate}");
            // At most a tenth of the membrane: the circle gate gives a long prompt of filler words around a square 0.08.
            Assert.That(gate.Multiplier, Is.LessThanOrEqualTo(0.1f), n);
        }
    }

    [Test]
    public void RecommendsItsOwnTrainerDefaults_AndBadDefaultFilesNameTheKey()
    {
        Assert.That(ModelTrainingDefaults.Load(Folder), Is.EqualTo(new ModelTrainingDefaults(10, 0.01, 200, 15)));
        Assert.That(ModelTrainingDefaults.Load(Path.Combine(TestPaths.TinySd1)), Is.Null, "no file: the spec's defaults");

        var dir = Path.Combine(Path.GetTempPath(), "spm-defaults-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            var file = Path.Combine(dir, ModelTrainingDefaults.FileName);
            foreach (var (json, key) in new[] { ("{\"lr\": -1}", "lr"), ("{\"iterations\": 2.5}", "iterations"), ("{\"anchor\": 1}", "anchor"), ("{\"lr\": \"x\"}", "lr"), ("[1]", "") })
            {
                File.WriteAllText(file, json);
                var ex = Assert.Throws<Spm.Core.SpmFormatException>(() => ModelTrainingDefaults.Load(dir), json);
                Assert.That(ex!.Message, Does.Contain(file).And.Contain(key), json);
            }
        }
        finally
        {
            Directory.Delete(dir, true);
        }
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
