using System.Text.Json;
using Microsoft.ML.OnnxRuntime;
using Spm.Core;
using Spm.Diffusion.Pipelines;
using Spm.Diffusion.Pipelines.Families;
using Spm.Diffusion.Text;
using Spm.Tests.Common;

namespace Spm.Diffusion.Tests.Sdxl;

/// <summary>The tiny SDXL fixture: its layout, names and input forms, and how the folder's family is detected.</summary>
[TestFixture]
public class SdxlFixtureTests
{
    [Test]
    public void Fixture_HasOptimumSdxlLayout_AndIsDetectedAsSdxl()
    {
        var dir = TinySdxl.Folder;
        foreach (var rel in new[]
        {
            "model_index.json", "scheduler/scheduler_config.json", "tokenizer/vocab.json", "tokenizer/merges.txt",
            "tokenizer_2/vocab.json", "tokenizer_2/special_tokens_map.json", "text_encoder/model.onnx", "text_encoder_2/model.onnx",
            "unet/model.onnx", "unet/config.json", "vae_decoder/model.onnx", "vae_decoder/config.json",
        })
            Assert.That(File.Exists(Path.Combine(dir, rel)), rel);
        using (var index = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "model_index.json"))))
            Assert.That(index.RootElement.GetProperty("_class_name").GetString(), Is.EqualTo("StableDiffusionXLPipeline"));
        using (var unet = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "unet", "config.json"))))
        {
            Assert.That(unet.RootElement.GetProperty("addition_embed_type").GetString(), Is.EqualTo("text_time"));
            Assert.That(unet.RootElement.GetProperty("transformer_layers_per_block").GetInt32(), Is.EqualTo(2));
            Assert.That(unet.RootElement.GetProperty("use_linear_projection").GetBoolean(), Is.True);
        }

        var folder = ModelFolder.Open(dir);
        Assert.That(folder.Family, Is.EqualTo(ModelFamily.StableDiffusionXL));
        Assert.That(folder.VaeScalingFactor, Is.EqualTo(0.13025));
        Assert.That(folder.SchedulerClassName, Is.EqualTo("EulerDiscreteScheduler"));
        Assert.That(folder.DefaultImageSize, Is.EqualTo(256));

        var p = TinySdxl.Pipeline;
        Assert.That(p.Family, Is.EqualTo(ModelFamily.StableDiffusionXL));
        Assert.That(p.DefaultSchedulerName, Is.EqualTo("euler"));
        Assert.That(p.Conditioning, Is.TypeOf<SdxlPromptConditioning>());
        var c = (SdxlPromptConditioning)p.Conditioning;
        Assert.That((c.SequenceOutput1, c.SequenceOutput2), Is.EqualTo(("hidden_states.1", "hidden_states.2")), "penultimate of 2 and 3 layers");
        Assert.That(p.UNet.TextInputs.Select(i => (i.Name, i.ShapeString)), Is.EqualTo(new[] { ("text_embeds", "[?,32]"), ("time_ids", "[?,6]") }));
        Assert.That(p.UNet.ExtraInputs, Is.Empty, "text_embeds/time_ids are conditioning, not adapter inputs");
        Assert.That(p.UNet.Signature.Inputs.Select(i => i.Name), Is.EqualTo(new[] { "sample", "timestep", "encoder_hidden_states", "text_embeds", "time_ids" }));
        Assert.That(p.UNet.HiddenStatesInput.ShapeString, Is.EqualTo("[?,?,64]"));
    }

    [Test]
    public void TextEncoders_HaveOptimumOutputs()
    {
        using var s1 = new InferenceSession(Path.Combine(TinySdxl.Folder, "text_encoder", "model.onnx"));
        using var s2 = new InferenceSession(Path.Combine(TinySdxl.Folder, "text_encoder_2", "model.onnx"));
        Assert.That(s1.OutputNames, Is.EqualTo(new[] { "last_hidden_state", "pooler_output", "hidden_states.0", "hidden_states.1", "hidden_states.2" }));
        Assert.That(s2.OutputNames, Is.EqualTo(new[] { "text_embeds", "last_hidden_state", "hidden_states.0", "hidden_states.1", "hidden_states.2", "hidden_states.3" }));
    }

    [Test]
    public void Tokenizer2_PadsWithExclamationMarkIdZero_Tokenizer1WithEos()
    {
        var t1 = ClipTokenizer.Load(Path.Combine(TinySdxl.Folder, "tokenizer"));
        var t2 = ClipTokenizer.Load(Path.Combine(TinySdxl.Folder, "tokenizer_2"));
        var a = t1.Encode("a photo of a cat");
        var b = t2.Encode("a photo of a cat");
        int[] framed = [49406, 320, 1125, 539, 320, 2368, 49407];
        Assert.That(a.Take(7), Is.EqualTo(framed));
        Assert.That(b.Take(7), Is.EqualTo(framed));
        Assert.That(a.Skip(7), Is.All.EqualTo(49407));
        Assert.That(b.Skip(7), Is.All.EqualTo(0));
        Assert.That(t2.PadId, Is.EqualTo(0));
        var e = TinySdxl.Pipeline.Encode("a photo of a cat");
        Assert.That(e.TokenIds, Is.EqualTo(a));
        Assert.That(e.TokenIds2, Is.EqualTo(b));
    }

    private static string WithClass(string? className, string from)
    {
        var dir = TinySdxl.Copy();
        var o = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(from, "model_index.json")))!.AsObject();
        if (className is null) o.Remove("_class_name");
        else o["_class_name"] = className;
        File.WriteAllText(Path.Combine(dir, "model_index.json"), o.ToJsonString());
        return dir;
    }

    [TestCase("StableDiffusion3Pipeline", "Stable Diffusion 3")]
    [TestCase("FluxPipeline", "Flux")]
    [TestCase("StableDiffusionXLImg2ImgPipeline", "refiner")]
    [TestCase("KandinskyV22Pipeline", "unknown pipeline")]
    public void UnsupportedPipelineClass_IsRefusedNamingTheClass(string className, string what)
    {
        var dir = WithClass(className, TinySdxl.Folder);
        var ex = Assert.Throws<SpmFormatException>(() => ModelFolder.Open(dir))!;
        Assert.That(ex.Message, Does.Contain($"'{className}'").And.Contain(what).And.Contain("not supported").And.Contain("model_index.json"));
        Assert.That(ex.Key, Is.EqualTo("_class_name"));
        Assert.Throws<SpmFormatException>(() => StableDiffusionPipeline.Load(dir));
    }

    [Test]
    public void NoClassName_SecondEncoderMeansSdxl()
    {
        var dir = WithClass(null, TinySdxl.Folder);
        Assert.That(ModelFolder.Open(dir).Family, Is.EqualTo(ModelFamily.StableDiffusionXL));
        Assert.That(ModelFolder.Open(TestPaths.TinySd1).Family, Is.EqualTo(ModelFamily.StableDiffusion1));
    }

    [Test]
    public void Sd2_IsTheSd1ClassWithA1024WideUNet()
    {
        var dir = Path.Combine(TestPaths.NewTempDir("spm-sd2"), "model");
        foreach (var file in Directory.EnumerateFiles(TestPaths.TinySd1, "*", SearchOption.AllDirectories))
        {
            var target = Path.Combine(dir, Path.GetRelativePath(TestPaths.TinySd1, file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target);
        }
        var config = Path.Combine(dir, "unet", "config.json");
        File.WriteAllText(config, File.ReadAllText(config).Replace("\"cross_attention_dim\": 32", "\"cross_attention_dim\": 1024"));
        Assert.That(ModelFolder.Open(dir).Family, Is.EqualTo(ModelFamily.StableDiffusion2));
        Assert.That(TestPaths.TinySd1, Does.Exist);
        Assert.That(ModelFolder.Open(TestPaths.TinySd1).Family, Is.EqualTo(ModelFamily.StableDiffusion1));
        using var p = StableDiffusionPipeline.Load(TestPaths.TinySd1);
        Assert.That(p.Conditioning, Is.TypeOf<ClipPromptConditioning>());
        Assert.That(p.Conditioning.Tokenizers, Has.Count.EqualTo(1));
        Assert.That(p.UNet.TextInputs, Is.Empty);
    }

    [Test]
    public void SdxlClass_OnSd1Folder_IsRefusedNamingTheMissingPart()
    {
        // An SD 1.x folder whose index claims SDXL: the second tokenizer is missing.
        var dir = Path.Combine(TestPaths.NewTempDir("spm-sdxl-mix"), "model");
        foreach (var file in Directory.EnumerateFiles(TestPaths.TinySd1, "*", SearchOption.AllDirectories))
        {
            var target = Path.Combine(dir, Path.GetRelativePath(TestPaths.TinySd1, file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target);
        }
        File.WriteAllText(Path.Combine(dir, "model_index.json"), "{\"_class_name\": \"StableDiffusionXLPipeline\"}");
        var ex = Assert.Throws<SpmFormatException>(() => ModelFolder.Open(dir))!;
        Assert.That(ex.Message, Does.Contain("tokenizer_2"));

        // With the SDXL text encoders and tokenizer copied in, the UNet's inputs give it away.
        foreach (var sub in new[] { "tokenizer_2", "text_encoder_2" })
            foreach (var file in Directory.EnumerateFiles(Path.Combine(TinySdxl.Folder, sub)))
            {
                Directory.CreateDirectory(Path.Combine(dir, sub));
                File.Copy(file, Path.Combine(dir, sub, Path.GetFileName(file)));
            }
        var unetEx = Assert.Throws<SpmFormatException>(() => StableDiffusionPipeline.Load(dir))!;
        Assert.That(unetEx.Message, Does.Contain("'StableDiffusionXLPipeline' is SDXL").And.Contain("text_embeds"));
    }

    [Test]
    public void Sd1Class_OnSdxlFolder_IsRefusedByTheUNetInputs()
    {
        var dir = WithClass("OnnxStableDiffusionPipeline", TinySdxl.Folder);
        var ex = Assert.Throws<SpmFormatException>(() => StableDiffusionPipeline.Load(dir))!;
        Assert.That(ex.Message, Does.Contain("Stable Diffusion 1.x").And.Contain("text_embeds").And.Contain("mixes model families"));
    }
}
