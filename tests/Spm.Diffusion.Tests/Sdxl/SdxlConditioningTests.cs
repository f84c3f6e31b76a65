using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Spm.Core.Tensors;
using Spm.Diffusion.Pipelines;
using Spm.Diffusion.Pipelines.Families;
using Spm.Diffusion.Text;

using Spm.Tests.Common;

namespace Spm.Diffusion.Tests.Sdxl;

/// <summary>
/// SDXL conditioning on the tiny fixture, against the encoders run directly through ONNX Runtime: the sequence is the
/// two penultimate hidden states side by side, the pooled embedding is text_encoder_2's text_embeds, time ids are the
/// sizes given, and force-zeros rows are exactly zero.
/// </summary>
[TestFixture]
public class SdxlConditioningTests
{
    private static StableDiffusionPipeline P => TinySdxl.Pipeline;

    private static Dictionary<string, float[]> RunEncoder(string sub, int[] ids)
    {
        using var s = new InferenceSession(Path.Combine(TinySdxl.Folder, sub, "model.onnx"));
        using var r = s.Run([NamedOnnxValue.CreateFromTensor("input_ids", new DenseTensor<int>(ids, [1, ids.Length]))]);
        return r.ToDictionary(v => v.Name, v => v.AsTensor<float>().ToArray());
    }

    [Test]
    public void Encode_SequenceIsBothPenultimateStatesConcatenated_PooledIsTextEmbeds()
    {
        const string prompt = "a red circle on a white background";
        var e = P.Encode(prompt);
        var t1 = ClipTokenizer.Load(Path.Combine(TinySdxl.Folder, "tokenizer"));
        var t2 = ClipTokenizer.Load(Path.Combine(TinySdxl.Folder, "tokenizer_2"));
        var o1 = RunEncoder("text_encoder", t1.Encode(prompt));
        var o2 = RunEncoder("text_encoder_2", t2.Encode(prompt));

        Assert.That(e.HiddenStates.Shape, Is.EqualTo(new[] { 1, 77, 64 }));
        Assert.That(e.Pooled!.Shape, Is.EqualTo(new[] { 1, 32 }));
        Assert.That(e.IsZero, Is.False);
        var h1 = o1["hidden_states.1"];
        var h2 = o2["hidden_states.2"];
        for (int t = 0; t < 77; t++)
        {
            Assert.That(e.HiddenStates.Data.AsSpan(t * 64, 32).ToArray(), Is.EqualTo(h1.AsSpan(t * 32, 32).ToArray()), $"token {t}, first encoder");
            Assert.That(e.HiddenStates.Data.AsSpan(t * 64 + 32, 32).ToArray(), Is.EqualTo(h2.AsSpan(t * 32, 32).ToArray()), $"token {t}, second encoder");
        }
        Assert.That(e.Pooled.Data, Is.EqualTo(o2["text_embeds"]));
        // Not the last layer's states, nor the final LayerNorm's output: the penultimate ones.
        Assert.That(h1, Is.Not.EqualTo(o1["hidden_states.2"]));
        Assert.That(h2, Is.Not.EqualTo(o2["last_hidden_state"]));
        // EncodePrompt (the gate's E(p)) is the same sequence.
        Assert.That(P.EncodePrompt(prompt).Embedding.Data, Is.EqualTo(e.HiddenStates.Data));
    }

    [Test]
    public void EmptyNegative_ForceZeros_GivesExactZeros_ButAnExplicitNegativeIsEncoded()
    {
        var c = P.Conditioning;
        var cond = c.Encode("a cat");
        var zero = c.EncodeNegative("", cond);
        Assert.That(zero.IsZero, Is.True);
        Assert.That(zero.HiddenStates.Shape, Is.EqualTo(cond.HiddenStates.Shape));
        Assert.That(zero.Pooled!.Shape, Is.EqualTo(cond.Pooled!.Shape));
        Assert.That(zero.HiddenStates.Data, Is.All.EqualTo(0f));
        Assert.That(zero.Pooled.Data, Is.All.EqualTo(0f));

        var blurry = c.EncodeNegative("blurry", cond);
        Assert.That(blurry.IsZero, Is.False);
        Assert.That(blurry.HiddenStates.Data, Is.EqualTo(c.Encode("blurry").HiddenStates.Data));
        Assert.That(blurry.Pooled!.Data.Any(v => v != 0), Is.True);
    }

    [Test]
    public void ForceZerosOff_EncodesTheEmptyPrompt()
    {
        var dir = TinySdxl.Copy();
        var index = Path.Combine(dir, "model_index.json");
        File.WriteAllText(index, File.ReadAllText(index).Replace("\"force_zeros_for_empty_prompt\": true", "\"force_zeros_for_empty_prompt\": false"));
        using var p = StableDiffusionPipeline.Load(dir);
        var cond = p.Conditioning.Encode("a cat");
        var neg = p.Conditioning.EncodeNegative("", cond);
        Assert.That(neg.IsZero, Is.False);
        Assert.That(neg.HiddenStates.Data, Is.EqualTo(p.Conditioning.Encode("").HiddenStates.Data));
        Assert.That(neg.Pooled!.Data.Any(v => v != 0), Is.True);
    }

    [Test]
    public void BuildRows_LaysOutSequencePooledAndTimeIdsPerRow()
    {
        var c = P.Conditioning;
        var cond = c.Encode("a cat");
        var uncond = c.EncodeNegative("", cond);
        var sizes = new SizeConditioning(1024, 768, 16, 32, 512, 384);
        var rows = c.BuildRows([uncond, uncond, cond, cond], sizes);
        Assert.That(rows.HiddenStates.Shape, Is.EqualTo(new[] { 4, 77, 64 }));
        Assert.That(rows.Added.Keys, Is.EquivalentTo(new[] { "text_embeds", "time_ids" }));
        var pooled = rows.Added["text_embeds"];
        var timeIds = rows.Added["time_ids"];
        Assert.That(pooled.Shape, Is.EqualTo(new[] { 4, 32 }));
        Assert.That(timeIds.Shape, Is.EqualTo(new[] { 4, 6 }));
        for (int r = 0; r < 4; r++)
            Assert.That(timeIds.Data.AsSpan(r * 6, 6).ToArray(), Is.EqualTo(new float[] { 1024, 768, 16, 32, 512, 384 }), $"row {r}");
        Assert.That(rows.HiddenStates.Data.AsSpan(0, 2 * 77 * 64).ToArray(), Is.All.EqualTo(0f), "force-zeros rows");
        Assert.That(pooled.Data.AsSpan(0, 64).ToArray(), Is.All.EqualTo(0f));
        Assert.That(rows.HiddenStates.Data.AsSpan(3 * 77 * 64, 77 * 64).ToArray(), Is.EqualTo(cond.HiddenStates.Data));
        Assert.That(pooled.Data.AsSpan(2 * 32, 32).ToArray(), Is.EqualTo(cond.Pooled!.Data));
        Assert.That(SizeConditioning.Default(384, 512).ToTimeIds(), Is.EqualTo(new float[] { 512, 384, 0, 0, 512, 384 }), "diffusers' defaults: (h, w), (0, 0), (h, w)");
    }

    [Test]
    public void Generate_PassesTheRequestedTimeIds_ToEveryUNetCall()
    {
        // The UNet's answer depends on time_ids: generating with sizes S equals one guided Euler step computed by
        // hand with S in time_ids, and differs from the default sizes.
        var request = new GenerationRequest
        {
            Prompt = "a cat", Steps = 1, Seed = 5, GuidanceScale = 5, Scheduler = "euler", DecodeImages = false,
            OriginalSize = (1024, 768), CropTopLeft = (16, 32), TargetSize = (512, 384),
        };
        var custom = P.Generate(request);
        var defaults = P.Generate(request with { OriginalSize = null, CropTopLeft = default, TargetSize = null });
        Assert.That(custom.Latents.Data, Is.Not.EqualTo(defaults.Latents.Data));

        var c = P.Conditioning;
        var cond = c.Encode("a cat");
        var text = c.BuildRows([c.EncodeNegative("", cond), cond], new SizeConditioning(1024, 768, 16, 32, 512, 384));
        var scheduler = Spm.Diffusion.Schedulers.SchedulerRegistry.Create("euler", P.Folder.SchedulerConfig);
        scheduler.SetTimesteps(1);
        var latents = new float[4 * 32 * 32];
        LatentNoise.Fill(LatentNoise.ImageSeed(5, 0), latents);
        for (int i = 0; i < latents.Length; i++) latents[i] *= (float)scheduler.InitNoiseSigma;
        var x = new FloatTensor(2, 4, 32, 32);
        var scaled = new float[latents.Length];
        scheduler.ScaleModelInput(latents, scaled, 0);
        scaled.CopyTo(x.Span);
        scaled.CopyTo(x.Span[latents.Length..]);
        var eps = P.UNet.Predict(x, scheduler.Timesteps[0], text);
        var guided = new float[latents.Length];
        for (int i = 0; i < guided.Length; i++) guided[i] = eps.Data[i] + 5f * (eps.Data[latents.Length + i] - eps.Data[i]);
        scheduler.Step(guided, 0, latents, null);
        double max = 0;
        for (int i = 0; i < latents.Length; i++) max = Math.Max(max, Math.Abs(latents[i] - custom.Latents.Data[i]));
        Assert.That(max, Is.LessThan(1e-5));
    }
}
