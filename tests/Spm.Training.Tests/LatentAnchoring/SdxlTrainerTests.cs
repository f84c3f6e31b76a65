using Spm.Core.Gating;
using Spm.Core.Membranes;
using Spm.Core.Randomness;
using Spm.Diffusion.Membranes;
using Spm.Diffusion.Onnx;
using Spm.Diffusion.Pipelines;
using Spm.Diffusion.Pipelines.Families;
using Spm.Diffusion.Runtime;
using Spm.Tests.Common;
using Spm.Training.LatentAnchoring;

namespace Spm.Training.Tests.LatentAnchoring;

/// <summary>
/// Latent anchoring on the tiny SDXL pipeline: the trainer takes SDXL conditioning through the family's row layout
/// (hidden states, pooled <c>text_embeds</c>, <c>time_ids</c>), writes an SPM in the official SDXL key layout that
/// loads and injects into the same pipeline, and keeps SD 1.x's determinism (same seed, same bytes; resume, same bytes).
/// </summary>
[TestFixture]
[Parallelizable(ParallelScope.All)]
public class SdxlTrainerTests
{
    private static readonly OnnxRuntimeOptions OneThread = new() { IntraOpThreads = 1, OptimizedModelCacheFolder = SuiteGraphCache.Folder };

    private static LatentAnchoringOptions Small(int iterations, int checkpointEvery = 0, ulong seed = 7) => new()
    {
        Concept = "a red circle",
        Iterations = iterations,
        Resolution = 128,
        DynamicResolution = false,
        LearningRate = 1e-2,
        WarmupSteps = 1,
        Seed = seed,
        SamplingSteps = 4,
        CheckpointEvery = checkpointEvery,
    };

    private sealed class SyncProgress(Action<TrainingProgress> onReport) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => onReport(value);
    }

    [Test]
    [Category(TestCategories.Slow)]
    public void TrainsAnSdxlSpm_InTheOfficialLayout_ThatInjectsIntoTheSamePipeline()
    {
        var dir = TestPaths.NewTempDir("spm-sdxl-train");
        var output = new TrainingOutput(Path.Combine(dir, "circle.safetensors"));
        TrainingResult result;
        using (var trainer = LatentAnchoringTrainer.Create(TinySdxl.Folder, Small(4), OneThread, SharedTrainingGraphs.Cache))
        {
            Assert.That(trainer.Layers, Has.Count.EqualTo(132), "every linear of every transformer layer");
            result = trainer.Train(output);
        }
        Assert.That(result.History, Has.Count.EqualTo(4));
        Assert.That(result.History.All(h => double.IsFinite(h.Loss) && h.Loss > 0), Is.True);
        Assert.That(result.History[0].AnchorLoss, Is.EqualTo(0).Within(1e-12), "a fresh membrane is a no-op");
        Assert.That(result.History.Skip(1).Any(h => h.AnchorLoss > 0), Is.True, "anchors feel the trained membrane");

        var adapter = SpmFile.Load(output.Path);
        var layers = AdaptableLayerFinder.FindTransformerLayers(OnnxModel.Load(Path.Combine(TinySdxl.Folder, "unet", "model.onnx")));
        Assert.That(adapter.Membranes.Select(m => m.Key), Is.EquivalentTo(layers.Select(l => SpmKeys.KeyFor(l.ModulePath))));
        Assert.That(adapter.Membranes.Select(m => m.Key), Does.Contain("lora_unet_up_blocks_0_attentions_2_transformer_blocks_1_attn2_to_k"));
        Assert.That(adapter.Config.Prompts, Is.EqualTo(new[] { "a red circle" }));
        Assert.That(adapter.Config.Extra["base_model"], Does.StartWith("tiny-sdxl"));
        Assert.That(adapter.Membranes.Any(m => m.Up.Data.Any(v => v != 0)), Is.True, "up matrices moved away from zero");

        // The file injects into the same SDXL pipeline: multiplier 0 is the base model, 1 changes the latents.
        var spms = LoadedSpms.Load(TinySdxl.Folder, [output.Path]);
        Assert.That(spms.Layout.Layers, Has.Count.EqualTo(132));
        using var injected = TinySdxl.Load(unet: spms.UNetSource);
        var request = new GenerationRequest { Prompt = "a red circle", Steps = 2, Seed = 3, Scheduler = "euler", GuidanceScale = 4, Width = 128, Height = 128, DecodeImages = false };
        var plain = TinySdxl.Pipeline.Generate(request);
        var off = injected.Generate(request with { Conditioner = spms.CreateConditioner(injected, [new GateSettings(FixedMultiplier: 0f)]) });
        var on = injected.Generate(request with { Conditioner = spms.CreateConditioner(injected, [new GateSettings(FixedMultiplier: 1f)]) });
        Assert.That(MaxAbsDiff(off.Latents.Data, plain.Latents.Data), Is.LessThan(1e-5));
        Assert.That(MaxAbsDiff(on.Latents.Data, plain.Latents.Data), Is.GreaterThan(1e-6), "the trained membrane acts");
    }

    [Test]
    [Category(TestCategories.Slow)]
    public void SameSeed_GivesTheSameFile_AnotherSeedAnother()
    {
        var dir = TestPaths.NewTempDir("spm-sdxl-seed");
        string Train(string name, ulong seed)
        {
            var path = Path.Combine(dir, name);
            using var t = LatentAnchoringTrainer.Create(TinySdxl.Folder, Small(3, seed: seed), OneThread, SharedTrainingGraphs.Cache);
            t.Train(new TrainingOutput(path));
            return path;
        }
        var a = Train("a.safetensors", 7);
        var b = Train("b.safetensors", 7);
        var c = Train("c.safetensors", 8);
        Assert.That(File.ReadAllBytes(b), Is.EqualTo(File.ReadAllBytes(a)));
        Assert.That(File.ReadAllText(b + ".loss.csv"), Is.EqualTo(File.ReadAllText(a + ".loss.csv")));
        Assert.That(File.ReadAllBytes(c), Is.Not.EqualTo(File.ReadAllBytes(a)));
    }

    [Test]
    [Category(TestCategories.Slow)]
    public void ResumeAfterInterruption_GivesTheSameFile()
    {
        var dir = TestPaths.NewTempDir("spm-sdxl-resume");
        var straight = new TrainingOutput(Path.Combine(dir, "straight.safetensors"));
        using (var t = LatentAnchoringTrainer.Create(TinySdxl.Folder, Small(5, checkpointEvery: 2), OneThread, SharedTrainingGraphs.Cache)) t.Train(straight);

        var interrupted = new TrainingOutput(Path.Combine(dir, "resumed.safetensors"), Resume: true);
        using (var cts = new CancellationTokenSource())
        using (var t = LatentAnchoringTrainer.Create(TinySdxl.Folder, Small(5, checkpointEvery: 2), OneThread, SharedTrainingGraphs.Cache))
        {
            var stopAfterThird = new SyncProgress(p => { if (p.Step == 3) cts.Cancel(); });
            Assert.That(() => t.Train(interrupted, stopAfterThird, cts.Token), Throws.InstanceOf<OperationCanceledException>());
        }
        Assert.That(File.Exists(interrupted.Checkpoint), Is.True);
        using (var t = LatentAnchoringTrainer.Create(TinySdxl.Folder, Small(5, checkpointEvery: 2), OneThread, SharedTrainingGraphs.Cache))
            Assert.That(t.Train(interrupted).ResumedFrom, Is.EqualTo(2));
        Assert.That(File.ReadAllBytes(interrupted.Path), Is.EqualTo(File.ReadAllBytes(straight.Path)));
        Assert.That(File.ReadAllLines(interrupted.LossLog), Is.EqualTo(File.ReadAllLines(straight.LossLog)));
    }

    [Test]
    [Category(TestCategories.Slow)]
    public void GrowingALibrary_OnSdxl_KeepsTheLibraryFrozen_AndWritesAnOrdinarySdxlSpm()
    {
        // The library's SPM acts in every SDXL prediction at its gate (pooled embeddings and time ids in each row), its
        // columns of the stacked tensors never move, and the new file has the ordinary layout (rank 1, 132 layers).
        var dir = TestPaths.NewTempDir("spm-sdxl-grow");
        var library = Path.Combine(dir, "circle.safetensors");
        using (var t = LatentAnchoringTrainer.Create(TinySdxl.Folder, Small(2), OneThread, SharedTrainingGraphs.Cache))
            t.Train(new TrainingOutput(library));
        var square = Small(2) with { Concept = "a blue square", Surrogate = "a blue triangle" };
        var grown = Path.Combine(dir, "square-grown.safetensors");
        using (var t = LatentAnchoringTrainer.Create(TinySdxl.Folder, square with { LibrarySpms = [library] }, OneThread, SharedTrainingGraphs.Cache))
        {
            var before = t.Parameters.ToDictionary(p => p.Name, p => p.Value.ToArray());
            t.Train(new TrainingOutput(grown));
            int changedOwn = 0;
            foreach (var p in t.Parameters)
            {
                var old = before[p.Name];
                if (p.Name.EndsWith(".down", StringComparison.Ordinal))
                {
                    Assert.That(p.Shape[0], Is.EqualTo(2), p.Name);
                    int row = p.Value.Length / 2;
                    Assert.That(p.Value.AsSpan(row).SequenceEqual(old.AsSpan(row)), Is.True, $"{p.Name}: the library's row changed");
                    if (!p.Value.AsSpan(0, row).SequenceEqual(old.AsSpan(0, row))) changedOwn++;
                }
                else
                {
                    Assert.That(p.Shape[^1], Is.EqualTo(2), p.Name);
                    for (int o = 0; o < p.Value.Length / 2; o++)
                    {
                        Assert.That(p.Value[o * 2 + 1], Is.EqualTo(old[o * 2 + 1]), $"{p.Name}: the library's column changed (row {o})");
                        if (p.Value[o * 2] != old[o * 2]) changedOwn++;
                    }
                }
            }
            Assert.That(changedOwn, Is.GreaterThan(0), "the new membrane learned");
        }
        var plain = Path.Combine(dir, "square-plain.safetensors");
        using (var t = LatentAnchoringTrainer.Create(TinySdxl.Folder, square, OneThread, SharedTrainingGraphs.Cache))
            t.Train(new TrainingOutput(plain));

        var g = SpmFile.Load(grown);
        Assert.That(g.Config.Rank, Is.EqualTo(1));
        Assert.That(g.Membranes, Has.Count.EqualTo(132));
        Assert.That(g.Membranes.Select(m => m.Key), Does.Contain("lora_unet_up_blocks_0_attentions_2_transformer_blocks_1_attn2_to_k"));
        Assert.That(g.Config.Extra[SpmMetadataKeys.Training], Does.Contain("\"library\":[\"circle.safetensors sha256:"));
        Assert.That(File.ReadAllBytes(grown), Is.Not.EqualTo(File.ReadAllBytes(plain)), "the library changes what the membrane learns");
    }

    [Test]
    public void RowAnchors_DrawEverySegmentAroundTheTargets_AndSd1RowsAreTheSingleSamplersStream()
    {
        var rng = new SeededRandom(1);
        var hidden = new float[77 * 64];
        var pooled = new float[32];
        rng.FillGaussian(hidden);
        rng.FillGaussian(pooled);
        float[] row = [.. hidden, .. pooled];
        var sdxl = UNetRowLayout.Sdxl(77, 64, 32);
        var sampler = new RowAnchorSampler(row, sdxl);
        var anchor = new float[sampler.Length];
        sampler.Sample(new SeededRandom(2), anchor);
        double Norm(ReadOnlySpan<float> v) => System.Numerics.Tensors.TensorPrimitives.Norm(v);
        double hr = Norm(anchor.AsSpan(0, hidden.Length)) / Norm(hidden), pr = Norm(anchor.AsSpan(hidden.Length)) / Norm(pooled);
        Assert.That(hr, Is.InRange(0.8, 1.2), "the sequence part is scaled to the target sequence's norm");
        Assert.That(pr, Is.InRange(0.8, 1.2), "the pooled part to the target pooled embedding's norm");
        Assert.That(pr, Is.Not.EqualTo(hr).Within(1e-9), "each part draws its own scale");

        // One segment (SD 1.x): exactly AnchorSampler's draws from the same generator.
        var single = new RowAnchorSampler(hidden, UNetRowLayout.Sequence(77, 64));
        var a = new float[hidden.Length];
        var b = new float[hidden.Length];
        single.Sample(new SeededRandom(3), a);
        new AnchorSampler(hidden).Sample(new SeededRandom(3), b);
        Assert.That(a, Is.EqualTo(b));
    }

    [Test]
    public void RowLayout_StacksSegments_AndTimeIdsFromTheSize()
    {
        var layout = UNetRowLayout.Sdxl(2, 3, 2);
        float[] r0 = [1, 2, 3, 4, 5, 6, 7, 8], r1 = [11, 12, 13, 14, 15, 16, 17, 18];
        var text = layout.Stack([r0, r1], SizeConditioning.Default(192, 128));
        Assert.That(text.HiddenStates.Shape, Is.EqualTo(new[] { 2, 2, 3 }));
        Assert.That(text.HiddenStates.Data, Is.EqualTo(new float[] { 1, 2, 3, 4, 5, 6, 11, 12, 13, 14, 15, 16 }));
        Assert.That(text.Added.Keys, Is.EquivalentTo(new[] { "text_embeds", "time_ids" }));
        Assert.That(text.Added["text_embeds"].Data, Is.EqualTo(new float[] { 7, 8, 17, 18 }));
        Assert.That(text.Added["time_ids"].Data, Is.EqualTo(new float[] { 128, 192, 0, 0, 128, 192, 128, 192, 0, 0, 128, 192 }), "(h, w, top, left, h, w) per row");
        Assert.That(UNetRowLayout.Sequence(2, 3).Stack([r0[..6]], SizeConditioning.Default(64, 64)).Added, Is.Empty);
    }

    private static double MaxAbsDiff(float[] a, float[] b)
    {
        double m = 0;
        for (int i = 0; i < a.Length; i++) m = Math.Max(m, Math.Abs((double)a[i] - b[i]));
        return m;
    }
}
