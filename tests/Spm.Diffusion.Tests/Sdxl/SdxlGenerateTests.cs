using Spm.Diffusion.Images;
using Spm.Diffusion.Pipelines;
using Spm.Diffusion.Schedulers;

using Spm.Tests.Common;

namespace Spm.Diffusion.Tests.Sdxl;

/// <summary>Generation on the tiny SDXL fixture: every scheduler, determinism per seed, batching, PNG parameters.</summary>
[TestFixture]
public class SdxlGenerateTests
{
    private static StableDiffusionPipeline P => TinySdxl.Pipeline;

    private static GenerationRequest Request(string scheduler, ulong seed = 3, int count = 1, int batch = 1) => new()
    {
        Prompt = "a red circle",
        NegativePrompt = "",
        Steps = 3,
        Seed = seed,
        Scheduler = scheduler,
        GuidanceScale = 5,
        Count = count,
        BatchSize = batch,
        Width = 128,
        Height = 96,
    };

    [TestCaseSource(typeof(SchedulerRegistry), nameof(SchedulerRegistry.Names))]
    public void EveryScheduler_IsDeterministicPerSeed_AndBatchedEqualsSingle(string scheduler)
    {
        var batched = P.Generate(Request(scheduler, count: 3, batch: 3));
        var again = P.Generate(Request(scheduler, count: 3, batch: 3));
        Assert.That(again.Latents.Data, Is.EqualTo(batched.Latents.Data), "same seed, same latents, bit for bit");
        Assert.That(batched.Latents.Shape, Is.EqualTo(new[] { 3, 4, 12, 16 }));
        Assert.That(batched.Latents.Data.All(float.IsFinite), Is.True);

        int per = 4 * 12 * 16;
        for (int i = 0; i < 3; i++)
        {
            var single = P.Generate(Request(scheduler, seed: 3 + (ulong)i));
            var rowOfBatch = batched.Latents.Data.AsSpan(i * per, per).ToArray();
            double max = 0;
            for (int k = 0; k < per; k++) max = Math.Max(max, Math.Abs(rowOfBatch[k] - single.Latents.Data[k]));
            // ORT's kernels may sum in another order for another batch size: equal to float rounding.
            Assert.That(max, Is.LessThan(1e-4), $"image {i} of the batch vs generated alone");
            Assert.That(single.Images[0].Rgb, Has.Length.EqualTo(128 * 96 * 3));
        }
        var other = P.Generate(Request(scheduler, seed: 99));
        Assert.That(other.Latents.Data, Is.Not.EqualTo(batched.Latents.Data.AsSpan(0, per).ToArray()));
    }

    [Test]
    public void NoGuidance_RunsConditionalRowsOnly_AndNegativePromptMatters()
    {
        var plain = P.Generate(Request("euler") with { GuidanceScale = 1 });
        Assert.That(plain.Timings.UNetCalls, Is.EqualTo(3));
        var zeros = P.Generate(Request("euler"));
        var blurry = P.Generate(Request("euler") with { NegativePrompt = "blurry" });
        Assert.That(blurry.Latents.Data, Is.Not.EqualTo(zeros.Latents.Data));
        Assert.That(plain.Latents.Data, Is.Not.EqualTo(zeros.Latents.Data));
    }

    [Test]
    public void Parameters_CarryTheSizeConditioning()
    {
        var r = P.Generate(Request("euler") with { OriginalSize = (1024, 2048), CropTopLeft = (8, 4), TargetSize = (96, 128) });
        var text = r.Images[0].Parameters;
        Assert.That(text, Does.Contain("Sampler: Euler").And.Contain("Size: 128x96").And.Contain("Seed: 3"));
        Assert.That(text, Does.Contain("Original size: 2048x1024, Crop top: 8, Crop left: 4, Target size: 128x96"));
        var d = P.Generate(Request("euler"));
        Assert.That(d.Images[0].Parameters, Does.Contain("Original size: 128x96, Crop top: 0, Crop left: 0, Target size: 128x96"));
    }

    [Test]
    public void Fp16Copy_GeneratesWhatFp32Does_ToHalfPrecision()
    {
        // Both encoders, the UNet (text_embeds and time_ids converted at the boundary) and the VAE in fp16.
        var half = Path.Combine(Spm.Tests.Common.TestPaths.NewTempDir("spm-sdxl-fp16"), "half");
        try
        {
            var converted = Spm.Diffusion.Onnx.Fp16.Fp16PipelineConverter.Convert(TinySdxl.Folder, half);
            Assert.That(converted.Components, Is.EqualTo(new[] { "text_encoder", "text_encoder_2", "unet", "vae_decoder" }));
            using var p16 = StableDiffusionPipeline.Load(half);
            Assert.That(p16.UNet.TextInputs.Select(i => i.ElementType.ToString()), Is.All.EqualTo("Float16"));
            var request = Request("euler") with { NegativePrompt = "blurry", DecodeImages = false };
            var a = P.Generate(request).Latents.Data;
            var b = p16.Generate(request).Latents.Data;
            double diff = 0, scale = 0;
            for (int i = 0; i < a.Length; i++)
            {
                diff = Math.Max(diff, Math.Abs(a[i] - b[i]));
                scale = Math.Max(scale, Math.Abs(a[i]));
            }
            Assert.That(diff / scale, Is.LessThan(1e-2));
        }
        finally
        {
            try { Directory.Delete(Path.GetDirectoryName(half)!, true); } catch (IOException) { }
        }
    }

    [Test]
    public void BadSizes_AreRefusedBeforeAnyModelRuns()
    {
        Assert.That(() => P.Generate(Request("euler") with { OriginalSize = (0, 10) }),
            Throws.TypeOf<InvalidGenerationRequestException>().With.Message.Contains("original size"));
        Assert.That(() => P.Generate(Request("euler") with { CropTopLeft = (-1, 0) }),
            Throws.TypeOf<InvalidGenerationRequestException>().With.Message.Contains("crop"));
        Assert.That(() => P.Generate(Request("euler") with { TargetSize = (64, 1 << 20) }),
            Throws.TypeOf<InvalidGenerationRequestException>().With.Message.Contains("target size"));
    }
}
