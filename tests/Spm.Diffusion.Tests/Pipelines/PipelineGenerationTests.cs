using System.Collections.Concurrent;
using Spm.Core;
using Spm.Core.Tensors;
using Spm.Diffusion.Pipelines;
using Spm.Tests.Common;

namespace Spm.Diffusion.Tests.Pipelines;

[TestFixture]
public class PipelineGenerationTests
{
    private static StableDiffusionPipeline P => PipelineFixture.Pipeline;

    private static float MaxAbsDiff(float[] a, float[] b)
    {
        Assert.That(a, Has.Length.EqualTo(b.Length));
        float m = 0;
        for (int i = 0; i < a.Length; i++) m = Math.Max(m, Math.Abs(a[i] - b[i]));
        return m;
    }

    [Test]
    public async Task GuidedStep_EqualsOneUNetCallOnUncondCondBatch_CombinedByHand()
    {
        var request = PipelineFixture.Request(steps: 1) with { GuidanceScale = 7.5, NegativePrompt = "blurry", DecodeImages = false };
        var result = await P.GenerateAsync(request);

        // Independent recomputation: seeded noise, embeddings, one UNet call on [uncond, cond], guidance, DDIM step.
        var latents = new float[4 * 32 * 32];
        LatentNoise.Fill(1, latents);
        var (_, ec) = P.EncodePrompt("a photo of a cat");
        var (_, eu) = P.EncodePrompt("blurry");
        var hidden = new FloatTensor(2, 77, 32);
        eu.Span.CopyTo(hidden.Span);
        ec.Span.CopyTo(hidden.Span[(77 * 32)..]);
        var x = new FloatTensor(2, 4, 32, 32);
        latents.CopyTo(x.Span);
        latents.CopyTo(x.Span[latents.Length..]);
        var scheduler = new TestDdimScheduler(P.Folder.SchedulerConfig);
        scheduler.SetTimesteps(1);
        var eps = P.UNet.Predict(x, scheduler.Timesteps[0], hidden);
        var guided = new float[latents.Length];
        for (int i = 0; i < guided.Length; i++)
        {
            float u = eps.Data[i], c = eps.Data[latents.Length + i];
            guided[i] = u + 7.5f * (c - u);
        }
        scheduler.Step(guided, 0, latents, null);

        Assert.That(result.Latents.Shape, Is.EqualTo(new[] { 1, 4, 32, 32 }));
        Assert.That(MaxAbsDiff(result.Latents.Data, latents), Is.LessThan(1e-5f));
        Assert.That(result.Timings.UNetCalls, Is.EqualTo(1));
    }

    [Test]
    public async Task GuidanceScaleOne_SkipsUnconditionalHalf()
    {
        var spy = new RowSpy();
        var result = await P.GenerateAsync(PipelineFixture.Request(steps: 1) with { GuidanceScale = 1.0, DecodeImages = false, Conditioner = spy });
        Assert.That(spy.Rows.Single(), Is.EqualTo(new[] { GuidanceRow.Conditional }));

        var latents = new float[4 * 32 * 32];
        LatentNoise.Fill(1, latents);
        var (_, ec) = P.EncodePrompt("a photo of a cat");
        var scheduler = new TestDdimScheduler(P.Folder.SchedulerConfig);
        scheduler.SetTimesteps(1);
        var eps = P.UNet.Predict(new FloatTensor([1, 4, 32, 32], (float[])latents.Clone()), scheduler.Timesteps[0], ec);
        scheduler.Step(eps.Data, 0, latents, null);
        Assert.That(MaxAbsDiff(result.Latents.Data, latents), Is.LessThan(1e-6f));
    }

    [Test]
    public async Task GuidedBatch_RowsAreUncondThenCond()
    {
        var spy = new RowSpy();
        await P.GenerateAsync(PipelineFixture.Request(steps: 1) with { Count = 3, BatchSize = 2, DecodeImages = false, Conditioner = spy });
        Assert.That(spy.Rows, Has.Count.EqualTo(2));
        Assert.That(spy.Rows[0], Is.EqualTo(new[] { GuidanceRow.Unconditional, GuidanceRow.Unconditional, GuidanceRow.Conditional, GuidanceRow.Conditional }));
        Assert.That(spy.Rows[1], Is.EqualTo(new[] { GuidanceRow.Unconditional, GuidanceRow.Conditional }));
        Assert.That(spy.FirstIndices, Is.EqualTo(new[] { 0, 2 }));
        Assert.That(spy.PromptIds[0].Take(3), Is.EqualTo(new[] { 49406, 320, 1125 }));
    }

    [TestCase(false)]
    [TestCase(true)]
    public async Task Images_DoNotDependOnBatching(bool noisyScheduler)
    {
        var baseRequest = PipelineFixture.Request(steps: 3, seed: 41) with { Count = 3, DecodeImages = false, SchedulerFactory = new TestDdimFactory(noisyScheduler) };
        var one = await P.GenerateAsync(baseRequest with { BatchSize = 1 });
        var two = await P.GenerateAsync(baseRequest with { BatchSize = 2 });
        Assert.That(one.Images.Select(i => i.Seed), Is.EqualTo(new ulong[] { 41, 42, 43 }));
        Assert.That(MaxAbsDiff(one.Latents.Data, two.Latents.Data), Is.LessThan(1e-5f));
        // Different seeds give different images.
        Assert.That(MaxAbsDiff(one.Latents.Data.AsSpan(0, 4096).ToArray(), one.Latents.Data.AsSpan(4096, 4096).ToArray()), Is.GreaterThan(0.1f));
    }

    [Test]
    public async Task SameRequestTwice_GivesIdenticalPixelsAndLatents()
    {
        var r = PipelineFixture.Request(steps: 2);
        var a = await P.GenerateAsync(r);
        var b = await P.GenerateAsync(r);
        Assert.That(b.Latents.Data, Is.EqualTo(a.Latents.Data));
        var img = a.Images.Single();
        Assert.That((img.Width, img.Height), Is.EqualTo((256, 256)));
        Assert.That(img.Rgb, Has.Length.EqualTo(256 * 256 * 3));
        Assert.That(b.Images[0].Rgb, Is.EqualTo(img.Rgb));
        Assert.That(img.Parameters, Is.EqualTo("a photo of a cat\nSteps: 2, Sampler: test-ddim, CFG scale: 7.5, Seed: 1, Size: 256x256, Model: tiny-sd1"));
        Assert.That(a.Timings.UNetCalls, Is.EqualTo(2));
        Assert.That(a.Timings.Total, Is.GreaterThanOrEqualTo(a.Timings.Models));
    }

    [Test]
    public async Task EveryScheduler_RunsThroughThePipeline()
    {
        foreach (var name in Spm.Diffusion.Schedulers.SchedulerRegistry.Names)
        {
            var r = PipelineFixture.Request(steps: 3) with { SchedulerFactory = null, Scheduler = name, DecodeImages = false, Count = 2, BatchSize = 2 };
            var result = await P.GenerateAsync(r);
            var expectedCalls = Spm.Diffusion.Schedulers.SchedulerRegistry.Create(name, P.Folder.SchedulerConfig);
            expectedCalls.SetTimesteps(3);
            Assert.That(result.SchedulerName, Is.EqualTo(name));
            Assert.That(result.Timings.UNetCalls, Is.EqualTo(expectedCalls.Timesteps.Count), name);
            Assert.That(result.Latents.Data.All(float.IsFinite), Is.True, name);
            Assert.That(result.Images[0].Parameters, Does.Contain("Sampler: " + Spm.Diffusion.Images.GenerationParameters.SamplerDisplayName(name)));
        }
    }

    [TestCase("pndm")]
    [TestCase("euler-a")]
    [Category(TestCategories.Slow)]
    public async Task InitLatents_FinalLatentsEqualAcrossThreadCounts(string scheduler)
    {
        var init = new FloatTensor(1, 4, 24, 32);
        new Spm.Core.Randomness.SeededRandom(7).FillGaussian(init.Span);
        var r = PipelineFixture.Request(steps: 5) with { InitLatents = init, DecodeImages = false, SchedulerFactory = null, Scheduler = scheduler };
        using var two = PipelineFixture.Load(threads: 2);
        var a = await P.GenerateAsync(r);
        var b = await two.GenerateAsync(r);
        var again = await two.GenerateAsync(r);
        Assert.That(a.Latents.Shape, Is.EqualTo(new[] { 1, 4, 24, 32 }));
        Assert.That(a.Images[0].Width, Is.EqualTo(256));
        Assert.That(a.Images[0].Height, Is.EqualTo(192));
        Assert.That(MaxAbsDiff(a.Latents.Data, b.Latents.Data), Is.LessThanOrEqualTo(1e-5f));
        Assert.That(again.Latents.Data, Is.EqualTo(b.Latents.Data));
        Assert.That(init.Data[0], Is.Not.EqualTo(a.Latents.Data[0]), "the input tensor is not modified or aliased");
    }

    [Test]
    [Category(TestCategories.Slow)]
    public async Task IoBindingPath_ComputesTheSameAsPlainRuns()
    {
        using var bound = PipelineFixture.Load(threads: 1, ioBinding: true);
        Assert.That(bound.UsesIoBinding, Is.True);
        Assert.That(P.UsesIoBinding, Is.False);
        var r = PipelineFixture.Request(steps: 3) with { Count = 2, BatchSize = 2, DecodeImages = false };
        var a = await P.GenerateAsync(r);
        var b = await bound.GenerateAsync(r);
        Assert.That(b.Latents.Data, Is.EqualTo(a.Latents.Data));
    }

    [Test]
    public async Task ConcurrentRequests_EqualTheSameRequestsOneByOne()
    {
        var requests = Enumerable.Range(0, 4).Select(i => PipelineFixture.Request(i % 2 == 0 ? "a photo of a cat" : "a red car", steps: 3, seed: (ulong)(10 + i)) with
        {
            GuidanceScale = 1 + i * 2.5,
            DecodeImages = i == 3,
        }).ToArray();
        var sequential = new List<GenerationResult>();
        foreach (var r in requests) sequential.Add(await P.GenerateAsync(r));
        var parallel = await Task.WhenAll(requests.Select(r => Task.Run(() => P.GenerateAsync(r))));
        for (int i = 0; i < requests.Length; i++)
        {
            Assert.That(parallel[i].Latents.Data, Is.EqualTo(sequential[i].Latents.Data), $"request {i}");
            Assert.That(parallel[i].Images[0].Rgb, Is.EqualTo(sequential[i].Images[0].Rgb), $"request {i}");
        }
    }

    [Test]
    public async Task CancellationMidGeneration_Throws_AndLeavesPipelineUsable()
    {
        var r = PipelineFixture.Request(steps: 6) with { DecodeImages = false };
        var reference = await P.GenerateAsync(r);
        using var cts = new CancellationTokenSource();
        var steps = new ConcurrentBag<int>();
        var progress = new SyncProgress(p =>
        {
            if (p.Stage == GenerationStage.Denoising) steps.Add(p.Step);
            if (p.Step == 2) cts.Cancel();
        });
        Assert.That(async () => await P.GenerateAsync(r, progress, cts.Token), Throws.InstanceOf<OperationCanceledException>());
        Assert.That(steps.Max(), Is.LessThan(6));
        var after = await P.GenerateAsync(r);
        Assert.That(after.Latents.Data, Is.EqualTo(reference.Latents.Data));
    }

    [Test]
    public async Task TooLongPrompts_AreReportedBeforeGeneration()
    {
        var cuts = new List<Spm.Diffusion.Text.PromptTruncation>();
        var longPrompt = string.Join(" ", Enumerable.Repeat("a photo of a cat", 15)) + " in a red hat";
        // The pipeline is shared with tests that may run meanwhile: only this test's prompts count.
        void Record(object? sender, Spm.Diffusion.Text.PromptTruncation cut)
        {
            if (cut.Prompt.StartsWith(longPrompt, StringComparison.Ordinal)) lock (cuts) cuts.Add(cut);
        }
        P.PromptTruncated += Record;
        try
        {
            await P.GenerateAsync(PipelineFixture.Request(longPrompt, steps: 1) with { NegativePrompt = longPrompt + " again" });
            Assert.That(cuts.Select(c => (c.Prompt, c.DroppedTokens, c.DroppedText)), Is.EqualTo(new[]
            {
                (longPrompt, 4, "in a red hat"),
                (longPrompt + " again", 5, "in a red hat again"),
            }));
        }
        finally
        {
            P.PromptTruncated -= Record;
        }
    }

    [Test]
    public void InvalidRequests_AreRejectedBeforeAnyWork()
    {
        Assert.That(async () => await P.GenerateAsync(PipelineFixture.Request() with { Width = 250 }),
            Throws.TypeOf<InvalidGenerationRequestException>().With.Message.Contains("width must be a multiple of 16, got 250"));
        Assert.That(async () => await P.GenerateAsync(PipelineFixture.Request() with { Steps = 0 }),
            Throws.TypeOf<InvalidGenerationRequestException>().With.Message.Contains("steps"));
        Assert.That(async () => await P.GenerateAsync(PipelineFixture.Request() with { Count = 2, InitLatents = new FloatTensor(1, 4, 8, 8) }),
            Throws.TypeOf<InvalidGenerationRequestException>().With.Message.Contains("[2,4,h,w]"));
        Assert.That(async () => await P.GenerateAsync(PipelineFixture.Request() with { InitLatents = new FloatTensor(1, 4, 8, 8), Width = 128 }),
            Throws.TypeOf<InvalidGenerationRequestException>().With.Message.Contains("64x64"));
        Assert.That(async () => await P.GenerateAsync(PipelineFixture.Request() with { SchedulerFactory = null, Scheduler = "nope" }),
            Throws.TypeOf<InvalidGenerationRequestException>().With.Message.Contains("unknown scheduler 'nope'"));
    }

    [Test]
    public void ProgressReportsEveryUNetCall()
    {
        var seen = new List<GenerationProgress>();
        var progress = new SyncProgress(seen.Add);
        P.GenerateAsync(PipelineFixture.Request(steps: 3) with { Count = 2 }, progress).GetAwaiter().GetResult();
        var denoise = seen.Where(s => s.Stage == GenerationStage.Denoising).Select(s => s.Step).ToArray();
        Assert.That(denoise, Is.EqualTo(new[] { 1, 2, 3, 4, 5, 6 }));
        Assert.That(seen.All(s => s.TotalSteps == 6), Is.True);
        Assert.That(seen[^1].Stage, Is.EqualTo(GenerationStage.Done));
        Assert.That(seen.Count(s => s.Stage == GenerationStage.Decoding), Is.EqualTo(2));
    }

    /// <summary>Synchronous IProgress (Progress&lt;T&gt; posts to the thread pool, which would make the test racy).</summary>
    internal sealed class SyncProgress(Action<GenerationProgress> report) : IProgress<GenerationProgress>
    {
        public void Report(GenerationProgress value) => report(value);
    }

    private sealed class RowSpy : IUNetConditioner
    {
        public List<GuidanceRow[]> Rows { get; } = [];
        public List<int> FirstIndices { get; } = [];
        public List<int[]> PromptIds { get; } = [];

        public UNetConditioning Prepare(UNetConditioningContext context)
        {
            Rows.Add(context.Rows.ToArray());
            FirstIndices.Add(context.FirstImageIndex);
            PromptIds.Add(context.PromptTokenIds.ToArray());
            Assert.That(context.PromptEmbedding.Shape, Is.EqualTo(new[] { 1, 77, 32 }));
            return new UNetConditioning(new Dictionary<string, FloatTensor>());
        }
    }
}
