using Spm.Core;
using Spm.Core.Gating;
using Spm.Diffusion.Membranes;
using Spm.Diffusion.Pipelines;
using Spm.Shapes.Evaluation;
using Spm.Shapes.World;
using Spm.Tests.Common;
using Spm.Training.Evaluation;

namespace Spm.Training.Tests.Evaluation;

/// <summary>Case construction, and the batched evaluation against the plain one-image-at-a-time evaluation (tiny-sd1 fixture).</summary>
[TestFixture]
public class SpmErasureEvaluatorTests
{
    private static readonly EvalConcept Circle = EvalConcept.Of(ShapeKind.Circle);
    private static readonly EvalConcept Red = EvalConcept.Of(ShapeColor.Red);
    private static readonly EvalConcept Striped = EvalConcept.Of(FillPattern.Striped);

    [Test]
    public void StandardCases_EachAloneThenAllTogether_WithAblationsWhereAvailable()
    {
        var cases = SpmErasureEvaluator.StandardCases([Circle, Red, Striped], [Striped, Circle]);
        Assert.That(cases.Select(c => c.Name), Is.EqualTo(new[] { "circle", "red", "striped", "circle + red + striped" }));
        Assert.That(cases[3].Concepts, Is.EqualTo(new[] { Circle, Red, Striped }));

        // circle: transport and gate-1 on SPM 0; its no-anchoring SPM is the second ablation file (index 3 + 1).
        Assert.That(cases[0].Variants, Is.EqualTo(new[]
        {
            new SpmVariantSpec(SpmErasureEvaluator.Erased, [0], SpmDrive.Transport),
            new SpmVariantSpec(SpmErasureEvaluator.NoTransport, [0], SpmDrive.Always),
            new SpmVariantSpec(SpmErasureEvaluator.NoAnchoring, [4], SpmDrive.Transport),
        }).Using<SpmVariantSpec>(SameSpec));
        // red has no ablation file: no "no anchoring" row.
        Assert.That(cases[1].Variants.Select(v => v.Name), Is.EqualTo(new[] { SpmErasureEvaluator.Erased, SpmErasureEvaluator.NoTransport }));
        Assert.That(cases[2].Variants[2].Spms, Is.EqualTo(new[] { 3 }));
        // All together: the ablation needs every concept's no-anchoring SPM, red has none.
        Assert.That(cases[3].Variants.Select(v => v.Name), Is.EqualTo(new[] { SpmErasureEvaluator.Erased, SpmErasureEvaluator.NoTransport }));
        Assert.That(cases[3].Variants[0].Spms, Is.EqualTo(new[] { 0, 1, 2 }));

        var two = SpmErasureEvaluator.StandardCases([Red, Circle], [Circle, Red]);
        Assert.That(two[2].Variants[2].Spms, Is.EqualTo(new[] { 3, 2 }), "no-anchoring SPMs in the order of the case's concepts");
        Assert.That(SpmErasureEvaluator.StandardCases([Circle], []).Select(c => c.Name), Is.EqualTo(new[] { "circle" }), "one SPM: no 'all together' case");
    }

    private static bool SameSpec(SpmVariantSpec a, SpmVariantSpec b) => a.Name == b.Name && a.Drive == b.Drive && a.Spms.SequenceEqual(b.Spms);

    [Test]
    public void StandardCases_RejectAmbiguousSets()
    {
        Assert.That(() => SpmErasureEvaluator.StandardCases([], []), Throws.InstanceOf<SpmException>().With.Message.Contains("no erasing SPM"));
        Assert.That(() => SpmErasureEvaluator.StandardCases([Circle, Circle], []), Throws.InstanceOf<SpmException>().With.Message.Contains("Two erasing SPMs erase 'circle'"));
        Assert.That(() => SpmErasureEvaluator.StandardCases([Circle], [Red]), Throws.InstanceOf<SpmException>().With.Message.Contains("'red' has no erasing SPM"));
        Assert.That(() => SpmErasureEvaluator.StandardCases([Circle], [Circle, Circle]), Throws.InstanceOf<SpmException>().With.Message.Contains("Two no-anchoring SPMs"));
    }

    [Test]
    [Category(TestCategories.Slow)]
    public void Evaluate_BatchedEqualsOneImageAtATime_AndGeneratesEachDistinctImageOnce()
    {
        var dir = TestPaths.NewTempDir("spm-eval-evaluator");
        try
        {
            var files = new[] { ("all-layers", "circle.safetensors"), ("attn2-rank4", "red.safetensors"), ("all-layers", "circle-no-la.safetensors") }
                .Select(f =>
                {
                    var path = Path.Combine(dir, f.Item2);
                    File.Copy(Path.Combine(TestPaths.Reference(f.Item1), "spm.safetensors"), path);
                    return path;
                }).ToArray();
            var spms = LoadedSpms.Load(TestPaths.TinySd1, files);
            using var pipeline = StableDiffusionPipeline.Load(TestPaths.TinySd1, new PipelineOptions { UNetSource = spms.UNetSource });
            var settings = new EvalGenerationSettings { Steps = 2, GuidanceScale = 3, ImageSize = 64, BatchSize = 5 };
            var generator = new EvalImageGenerator(pipeline, spms, settings);
            // The spec's raw gate: no variant's multipliers equal the base's, so every variant image is generated (a
            // calibrated gate of 0 would make it the base image, generated once) and the count below is exact.
            var evaluator = new SpmErasureEvaluator(generator, new GateSettings(Calibration: GateCalibration.None));
            var cases = SpmErasureEvaluator.StandardCases([Circle, Red], [Circle]);
            var options = new EvalOptions(ImagesPerSet: 3, Seed: 11, ImageSize: 64, GridPromptsPerSet: 2);

            var reports = new List<SpmEvalProgress>();
            var batched = evaluator.Evaluate(cases, options, new InlineProgress<SpmEvalProgress>(reports.Add));

            // Each distinct (prompt, seed, multipliers) once: the union of all cases' prompts for the base model, then
            // every variant's prompts (their multipliers differ between variants and cases), and nothing on demand.
            var prompts = cases.Select(c => ErasureEvaluation.PromptsOf(new EvalCase(c.Name, c.Concepts, []), options)).ToArray();
            int distinctBase = prompts.SelectMany(p => p).Select(p => (p.Text, p.Seed)).Distinct().Count();
            int expected = distinctBase + cases.Select((c, i) => c.Variants.Count * prompts[i].Count).Sum();
            Assert.That(evaluator.LastCost!.ImagesGenerated, Is.EqualTo(expected));
            Assert.That(generator.ImagesGenerated, Is.EqualTo(expected), "no image generated twice or on demand");
            Assert.That(evaluator.LastCost.ImagesRequested, Is.EqualTo(prompts.Sum(p => p.Count) + expected - distinctBase), "base images of shared prompts are read by every case");
            Assert.That(reports[^1].Done, Is.EqualTo(expected));
            Assert.That(reports.Select(r => r.Total).Distinct(), Is.EqualTo(new[] { expected }));
            Assert.That(reports.Select(r => r.Done), Is.Ordered.Ascending);

            // The same evaluation through plain one-image sources gives the same table (up to batching float noise).
            var naive = new ErasureEvaluation().Run(
                cases.Select(c => new EvalCase(c.Name, c.Concepts, c.Variants.Select(v => new EvalVariant(v.Name, Single(generator, evaluator, v))).ToArray())).ToArray(),
                new EvalVariant(SpmErasureEvaluator.Base, Single(generator, evaluator, null)), options);
            Assert.That(batched.Rows.Select(r => (r.Case, r.Concept, r.Variant)), Is.EqualTo(naive.Rows.Select(r => (r.Case, r.Concept, r.Variant))));
            Assert.That(batched.Rows.Select(r => (r.Case, r.Concept, r.Variant)), Is.EqualTo(new[]
            {
                ("circle", "circle", "base"), ("circle", "circle", "erased"), ("circle", "circle", "erased, no transport"), ("circle", "circle", "erased, no anchoring"),
                ("red", "red", "base"), ("red", "red", "erased"), ("red", "red", "erased, no transport"),
                ("circle + red", "circle", "base"), ("circle + red", "circle", "erased"), ("circle + red", "circle", "erased, no transport"),
                ("circle + red", "red", "base"), ("circle + red", "red", "erased"), ("circle + red", "red", "erased, no transport"),
            }));
            foreach (var (b, n) in batched.Rows.Zip(naive.Rows))
            {
                Assert.That(b.DetectionRate, Is.EqualTo(n.DetectionRate).Within(1.0 / 3 + 1e-9), $"{b.Case}/{b.Variant}");
                Assert.That(b.PreservationAccuracy, Is.EqualTo(n.PreservationAccuracy).Within(1.0 / 3 + 1e-9), $"{b.Case}/{b.Variant}");
                Assert.That(b.MeanSsim ?? -1, Is.EqualTo(n.MeanSsim ?? -1).Within(0.01), $"{b.Case}/{b.Variant}");
                Assert.That(b.MeanPsnr ?? -1, Is.EqualTo(n.MeanPsnr ?? -1).Within(1.5), $"{b.Case}/{b.Variant}");
            }
            // The same membranes under two names give the same images: "no anchoring" (a copy of circle's file) equals "erased".
            var erased = batched.Rows.Single(r => r.Case == "circle" && r.Variant == "erased");
            var ablation = batched.Rows.Single(r => r.Case == "circle" && r.Variant == "erased, no anchoring");
            Assert.That(ablation.MeanSsim, Is.EqualTo(erased.MeanSsim).Within(1e-3));
            Assert.That(batched.Grids.Select(g => (g.Case, g.Columns.Count, g.Prompts.Count)), Is.EqualTo(new[] { ("circle", 4, 4), ("red", 3, 4), ("circle + red", 3, 6) }));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    private static ImageSource Single(EvalImageGenerator generator, SpmErasureEvaluator evaluator, SpmVariantSpec? variant)
        => (p, ct) => generator.Generate([new EvalImageRequest(p.Text, p.Seed, evaluator.MultipliersFor(variant, p.Text))], null, ct)[0];

    [Test]
    public void MultipliersFor_TransportGatesTheActingSpmsOnly_AndNoTransportFixesThemAtOne()
    {
        var spms = LoadedSpms.Load(TestPaths.TinySd1, [Path.Combine(TestPaths.Reference("all-layers"), "spm.safetensors"), Path.Combine(TestPaths.Reference("attn2-rank4"), "spm.safetensors")]);
        using var pipeline = StableDiffusionPipeline.Load(TestPaths.TinySd1, new PipelineOptions { UNetSource = spms.UNetSource });
        var generator = new EvalImageGenerator(pipeline, spms, new EvalGenerationSettings { ImageSize = 64 });
        var evaluator = new SpmErasureEvaluator(generator);
        Assert.That(evaluator.MultipliersFor(null, "reference concept"), Is.EqualTo(new[] { 0f, 0f }));
        Assert.That(evaluator.MultipliersFor(new SpmVariantSpec("x", [1], SpmDrive.Always), "a red circle"), Is.EqualTo(new[] { 0f, 1f }));
        var gated = evaluator.MultipliersFor(new SpmVariantSpec("x", [0], SpmDrive.Transport), "reference concept");
        Assert.That(gated[0], Is.EqualTo(1f).Within(1e-4f), "the SPM's own concept opens its gate");
        Assert.That(gated[1], Is.EqualTo(0f));
        var other = evaluator.MultipliersFor(new SpmVariantSpec("x", [0], SpmDrive.Transport), "a striped green star");
        Assert.That(other[0], Is.EqualTo(generator.GatesFor("a striped green star", [new(), new(FixedMultiplier: 0f)])[0].Multiplier));
        Assert.That(other[0], Is.LessThan(1f));
        Assert.That(() => evaluator.MultipliersFor(new SpmVariantSpec("x", [2], SpmDrive.Always), "a"), Throws.ArgumentException);
        Assert.That(() => evaluator.Evaluate(SpmErasureEvaluator.StandardCases([Circle], []), new EvalOptions(ImageSize: 32)),
            Throws.ArgumentException.With.Message.Contains("generator makes 64"));
    }

    [Test]
    public void StandardCasesBySpm_AFamilyIsOneCaseWithAllItsMembers()
    {
        var square = EvalConcept.Of(ShapeKind.Square);
        var cases = SpmErasureEvaluator.StandardCasesBySpm([[Circle, square], [Red]], [[square, Circle]]);
        Assert.That(cases.Select(c => c.Name), Is.EqualTo(new[] { "circle + square", "red", "(circle + square) + red" }));
        Assert.That(cases[0].Concepts, Is.EqualTo(new[] { Circle, square }));
        Assert.That(cases[0].Variants.Select(v => (v.Name, string.Join(",", v.Spms))), Is.EqualTo(new[]
        {
            (SpmErasureEvaluator.Erased, "0"), (SpmErasureEvaluator.NoTransport, "0"), (SpmErasureEvaluator.NoAnchoring, "2"),
        }), "one SPM erases the whole family; the no-anchoring family (same set, other order) is its ablation");
        Assert.That(cases[2].Concepts, Is.EqualTo(new[] { Circle, square, Red }));
        Assert.That(cases[2].Variants.Select(v => v.Name), Is.EqualTo(new[] { SpmErasureEvaluator.Erased, SpmErasureEvaluator.NoTransport }), "red has no ablation");
        Assert.That(() => SpmErasureEvaluator.StandardCasesBySpm([[Circle, square], [square]], []),
            Throws.InstanceOf<SpmException>().With.Message.Contains("Two erasing SPMs erase 'square'"));
        Assert.That(() => SpmErasureEvaluator.StandardCasesBySpm([[Circle, square]], [[Circle]]),
            Throws.InstanceOf<SpmException>().With.Message.Contains("no-anchoring SPM for 'circle' has no erasing SPM"));
    }
}
