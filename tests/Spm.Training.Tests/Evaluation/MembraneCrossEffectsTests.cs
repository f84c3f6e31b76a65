using Spm.Core;
using Spm.Core.Atlas;
using Spm.Core.Gating;
using Spm.Core.Metrics;
using Spm.Diffusion.Membranes;
using Spm.Diffusion.Pipelines;
using Spm.Tests.Common;
using Spm.Training.Evaluation;

namespace Spm.Training.Tests.Evaluation;

/// <summary>Membrane cross-effects and an SPM's reach over an atlas, on the built-in model with its shipped circle and red SPMs.</summary>
[TestFixture]
public class MembraneCrossEffectsTests
{
    private static string Model => Path.Combine(TestPaths.RepoRoot, "models", "tiny-shapes");

    private static readonly string[] Prompts =
    [
        "a red circle on a white background",
        "a blue square on a white background",
        "a green triangle on a black background",
        "a yellow star",
    ];

    private LoadedSpms _spms = null!;
    private StableDiffusionPipeline _pipeline = null!;
    private EvalImageGenerator _generator = null!;

    [OneTimeSetUp]
    public void Load()
    {
        _spms = LoadedSpms.Load(Model, [Path.Combine(Model, "spm", "circle.safetensors"), Path.Combine(Model, "spm", "red.safetensors")]);
        _pipeline = StableDiffusionPipeline.Load(Model, new PipelineOptions { UNetSource = _spms.UNetSource });
        _generator = new EvalImageGenerator(_pipeline, _spms, new EvalGenerationSettings { Steps = 6, GuidanceScale = 3, BatchSize = 8 });
    }

    [OneTimeTearDown]
    public void Unload() => _pipeline.Dispose();

    [Test]
    public void OpenChange_IsOneMinusSsimOfEachSpmAloneAgainstTheBaseImage()
    {
        var m = MembraneCrossEffects.Measure(_generator, Prompts, new CrossEffectOptions(ImagesPerPrompt: 2, Seed: 5));
        Assert.That(m.Spms, Is.EqualTo(new[] { "circle", "red" }));
        Assert.That(m.Gated, Is.False);
        int size = _generator.ImageSize;
        for (int p = 0; p < Prompts.Length; p++)
            for (int s = 0; s < 2; s++)
            {
                Assert.That(m.Multiplier[s, p], Is.EqualTo(1.0));
                double expected = 0;
                for (ulong seed = 5; seed < 7; seed++)
                {
                    var mult = new float[2];
                    mult[s] = 1f;
                    var images = _generator.Generate([new EvalImageRequest(Prompts[p], seed, new float[2]), new EvalImageRequest(Prompts[p], seed, mult)]);
                    expected += 1 - ImageMetrics.Ssim(images[0], images[1], 3, size, size);
                }
                Assert.That(m.Change[s, p], Is.EqualTo(expected / 2).Within(1e-9), $"SPM {m.Spms[s]} on \"{Prompts[p]}\"");
            }
        // The open circle membrane turns the red circle into another shape: a large change, larger than on a square.
        Assert.That(m.Change[0, 0], Is.GreaterThan(0.05));
        Assert.That(m.Change[0, 0], Is.GreaterThan(m.Change[0, 1]));
    }

    [Test]
    public void GatedChange_UsesEachSpmsGate_AndIsExactlyZeroWhereTheGateIsShut()
    {
        var gate = new GateSettings(Calibration: GateCalibration.Auto);
        var m = MembraneCrossEffects.Measure(_generator, Prompts, new CrossEffectOptions(2, 5, gate));
        Assert.That(m.Gated);
        int shut = 0;
        for (int p = 0; p < Prompts.Length; p++)
        {
            var gates = _generator.GatesFor(Prompts[p], [gate, gate]);
            for (int s = 0; s < 2; s++)
            {
                Assert.That(m.Multiplier[s, p], Is.EqualTo(gates[s].Multiplier).Within(1e-7));
                if (gates[s].Multiplier == 0) { shut++; Assert.That(m.Change[s, p], Is.Zero); }
            }
        }
        // The learned gates open on "a red circle" and stay shut on prompts without a circle or red.
        Assert.That(m.Multiplier[0, 0], Is.GreaterThan(0.5));
        Assert.That(m.Multiplier[1, 0], Is.GreaterThan(0.5));
        Assert.That(shut, Is.GreaterThanOrEqualTo(4), "the gate should be shut on most non-target cells");
    }

    [Test]
    public void ReachSimilarity_AveragesEachMembranesSharedEffectBothWays()
    {
        var change = new double[,] { { 0.4, 0.1, 0.0 }, { 0.2, 0.5, 0.05 }, { 0.0, 0.1, 0.2 } };
        var m = new CrossEffectMatrix(["a", "b", "c"], ["a", "b", "c"], change, new double[3, 3], false, 1);
        var s = m.ReachSimilarity();
        Assert.That(s[0, 1], Is.EqualTo(0.5 * (0.1 / 0.4 + 0.2 / 0.5)).Within(1e-15));
        Assert.That(s[1, 0], Is.EqualTo(s[0, 1]));
        Assert.That(s[1, 2], Is.EqualTo(0.5 * (0.05 / 0.5 + 0.1 / 0.2)).Within(1e-15));
        Assert.That(s[0, 2], Is.Zero);
        Assert.That(s[2, 2], Is.EqualTo(1.0));

        var notSquare = new CrossEffectMatrix(["a"], ["a", "b"], new double[1, 2], new double[1, 2], false, 1);
        Assert.That(() => notSquare.ReachSimilarity(), Throws.InvalidOperationException.With.Message.Contains("one prompt per SPM"));
        var dead = new CrossEffectMatrix(["a", "b"], ["x", "y"], new double[2, 2], new double[2, 2], false, 1);
        Assert.That(() => dead.ReachSimilarity(), Throws.InvalidOperationException.With.Message.Contains("SPM 'a' does not change the images of its own concept \"x\""));
    }

    [Test]
    [Category(TestCategories.Slow)]
    public void AtlasReach_AveragesEachCommunitysPrompts_MostChangedFirst()
    {
        // Two obvious communities by a hand-made similarity: the circles, and the rest.
        string[] concepts = ["a red circle", "a blue circle", "a green circle", "a blue square", "a yellow star", "a purple triangle"];
        var sim = new double[6, 6];
        for (int i = 0; i < 6; i++)
            for (int j = 0; j < 6; j++)
                sim[i, j] = i == j ? 1 : (i < 3) == (j < 3) ? 0.9 : 0.05;
        var atlas = ConceptAtlas.FromSimilarity(concepts, sim, new ConceptAtlasOptions(new SparsifyOptions(5), Communities: 2), "hand-made");
        var circles = atlas.Hierarchy.Communities[0];
        Assert.That(atlas.Hierarchy.Communities.Take(3), Is.All.EqualTo(circles));
        Assert.That(atlas.Hierarchy.Communities.Skip(3), Is.All.Not.EqualTo(circles));

        var reach = AtlasReach.Measure(_generator, 0, atlas, imagesPerPrompt: 2, seed: 3);
        var open = MembraneCrossEffects.Measure(_generator, concepts, new CrossEffectOptions(2, 3));
        Assert.That(reach.Select(r => r.OpenChange), Is.Ordered.Descending);
        foreach (var r in reach)
        {
            var at = Enumerable.Range(0, 6).Where(i => atlas.Hierarchy.Communities[i] == r.Community).ToArray();
            Assert.That(r.Members, Is.EqualTo(at.Select(i => concepts[i]).ToArray()));
            Assert.That(r.OpenChange, Is.EqualTo(at.Average(i => open.Change[0, i])).Within(1e-12));
        }
        // The circle SPM changes the circles most, and its gate keeps the other community (almost) untouched.
        Assert.That(reach[0].Community, Is.EqualTo(circles));
        var others = reach.Single(r => r.Community != circles);
        Assert.That(others.GatedChange, Is.LessThan(0.01));
        Assert.That(reach[0].GatedChange, Is.GreaterThan(others.GatedChange));
    }

    [Test]
    public void BadInputs_AreRejected()
    {
        Assert.That(() => MembraneCrossEffects.Measure(_generator, []), Throws.ArgumentException.With.Message.Contains("at least one prompt"));
        Assert.That(() => MembraneCrossEffects.Measure(_generator, Prompts, new CrossEffectOptions(0)), Throws.InstanceOf<ArgumentOutOfRangeException>());
        Assert.That(() => ConceptAtlas.FromSimilarity(["a", "b", "c"], new double[2, 2], null, "x"), Throws.ArgumentException.With.Message.Contains("3 x 3"));
        var asym = new double[,] { { 1, 0.2, 0 }, { 0.3, 1, 0 }, { 0, 0, 1 } };
        Assert.That(() => ConceptAtlas.FromSimilarity(["a", "b", "c"], asym, null, "x"), Throws.ArgumentException.With.Message.Contains("not symmetric at [0, 1]"));
        Assert.That(() => ConceptAtlas.FromSimilarity(["a", "a", "c"], new double[3, 3], null, "x"), Throws.InstanceOf<SpmException>().With.Message.Contains("appears twice"));
    }
}
