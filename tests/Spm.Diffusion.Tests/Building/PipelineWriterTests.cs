using System.Text.Json.Nodes;
using Microsoft.ML.OnnxRuntime;
using Spm.Core;
using Spm.Shapes.Building;
using Spm.Tests.Common;
using static Spm.Diffusion.Tests.Building.BuildTestSupport;

namespace Spm.Diffusion.Tests.Building;

[TestFixture]
public class PipelineWriterTests
{
    private string _dir = "";

    [SetUp]
    public void SetUp() => _dir = TestPaths.NewTempDir("spm-pipe");

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, true);

    private static PipelineWriteOptions Options(bool overwrite = false) => new()
    {
        TokenizerFolder = Path.Combine(TestPaths.Shared, "clip-tokenizer"),
        Overwrite = overwrite,
    };

    private static string[] Files(string root) => Directory.GetFiles(root, "*", SearchOption.AllDirectories)
        .Select(f => Path.GetRelativePath(root, f)).Order(StringComparer.Ordinal).ToArray();

    [Test]
    public void TinyPipeline_HasTheFixturesLayoutAndConfigs()
    {
        var outDir = Path.Combine(_dir, "tiny");
        PipelineWriter.Write(outDir, PipelinePresets.TinySd1, 7, Options());

        var fixtureFiles = Files(TestPaths.TinySd1).Where(f => !f.EndsWith("weights.pb")).ToArray();
        // Ours adds config.json beside the text encoder and the VAE decoder (as optimum exports do).
        Assert.That(Files(outDir).Except(["text_encoder/config.json", "vae_decoder/config.json"]), Is.EqualTo(fixtureFiles));
        foreach (var json in new[] { "model_index.json", "scheduler/scheduler_config.json", "tokenizer/special_tokens_map.json", "tokenizer/tokenizer_config.json" })
            Assert.That(JsonNode.DeepEquals(JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, json))), JsonNode.Parse(File.ReadAllText(Path.Combine(TestPaths.TinySd1, json)))), json);
        Assert.That(File.ReadAllBytes(Path.Combine(outDir, "tokenizer", "vocab.json")), Is.EqualTo(File.ReadAllBytes(Path.Combine(TestPaths.Shared, "clip-tokenizer", "vocab.json"))));
        // The UNet config reads back as the preset.
        var back = UNetConfig.Load(Path.Combine(outDir, "unet", "config.json"));
        Assert.That(back.BlockOutChannels, Is.EqualTo(UNetPresets.TinySd1.BlockOutChannels));
        Assert.That(back.DownBlockTypes, Is.EqualTo(UNetPresets.TinySd1.DownBlockTypes));
        Assert.That(back.CrossAttentionDim, Is.EqualTo(32));
    }

    [Test]
    public void TinyPipeline_RunsEndToEndInOrt()
    {
        var outDir = Path.Combine(_dir, "tiny");
        PipelineWriter.Write(outDir, PipelinePresets.TinySd1, 7, Options() with { UNetExternalData = true });
        Assert.That(File.Exists(Path.Combine(outDir, "unet", "weights.pb")));

        using var text = new InferenceSession(Path.Combine(outDir, "text_encoder", "model.onnx"), BuildTestSupport.Options());
        using var unet = new InferenceSession(Path.Combine(outDir, "unet", "model.onnx"), BuildTestSupport.Options());
        using var vae = new InferenceSession(Path.Combine(outDir, "vae_decoder", "model.onnx"), BuildTestSupport.Options());
        var ids = Enumerable.Repeat(49407, 77).ToArray();
        new[] { 49406, 320, 1125, 539, 320, 2368 }.CopyTo(ids, 0);
        var e = Run(text, "last_hidden_state", ("input_ids", ids, [1, 77]));
        Assert.That(e, Has.Length.EqualTo(77 * 32));
        var eps = Run(unet, "out_sample", ("sample", RandomFloats(4 * 8 * 8, 5), [1, 4, 8, 8]), ("timestep", new float[] { 999f }, [1]), ("encoder_hidden_states", e, [1, 77, 32]));
        Assert.That(eps, Has.Length.EqualTo(4 * 8 * 8));
        var image = Run(vae, "sample", ("latent_sample", eps, [1, 4, 8, 8]));
        Assert.That(image, Has.Length.EqualTo(3 * 64 * 64));
        Assert.That(image.All(float.IsFinite));
    }

    [Test]
    [Category(TestCategories.Slow)]
    public void SameSeed_GivesIdenticalFiles()
    {
        PipelineWriter.Write(Path.Combine(_dir, "a"), PipelinePresets.TinySd1, 1, Options());
        PipelineWriter.Write(Path.Combine(_dir, "b"), PipelinePresets.TinySd1, 1, Options());
        PipelineWriter.Write(Path.Combine(_dir, "c"), PipelinePresets.TinySd1, 2, Options());
        foreach (var f in Files(Path.Combine(_dir, "a")))
            Assert.That(File.ReadAllBytes(Path.Combine(_dir, "b", f)), Is.EqualTo(File.ReadAllBytes(Path.Combine(_dir, "a", f))), f);
        Assert.That(File.ReadAllBytes(Path.Combine(_dir, "c", "unet", "model.onnx")), Is.Not.EqualTo(File.ReadAllBytes(Path.Combine(_dir, "a", "unet", "model.onnx"))));
    }

    [Test]
    public void ExistingFolder_IsKeptUnlessForced_AndCancellationLeavesItIntact()
    {
        var outDir = Path.Combine(_dir, "m");
        Directory.CreateDirectory(outDir);
        File.WriteAllText(Path.Combine(outDir, "keep.txt"), "mine");

        var ex = Assert.Throws<SpmException>(() => PipelineWriter.Write(outDir, PipelinePresets.TinySd1, 1, Options()))!;
        Assert.That(ex.Message, Does.Contain("already exists"));
        Assert.That(File.ReadAllText(Path.Combine(outDir, "keep.txt")), Is.EqualTo("mine"));

        using var cts = new CancellationTokenSource();
        var progress = new SyncProgress(p => { if (p.Component == "text_encoder") cts.Cancel(); });
        Assert.Throws<OperationCanceledException>(() => PipelineWriter.Write(outDir, PipelinePresets.TinySd1, 1, Options(overwrite: true), progress, cts.Token));
        Assert.That(Files(outDir), Is.EqualTo(new[] { "keep.txt" }));
        Assert.That(Directory.GetDirectories(_dir), Is.EqualTo(new[] { outDir }), "no staging folder is left behind");

        PipelineWriter.Write(outDir, PipelinePresets.TinySd1, 1, Options(overwrite: true));
        Assert.That(File.Exists(Path.Combine(outDir, "keep.txt")), Is.False);
        Assert.That(File.Exists(Path.Combine(outDir, "unet", "model.onnx")));
        Assert.That(Directory.GetDirectories(_dir), Is.EqualTo(new[] { outDir }));
    }

    [Test]
    public void MismatchedSizes_AndMissingTokenizer_AreClearErrors()
    {
        var bad = PipelinePresets.TinySd1 with { TextEncoder = ClipTextConfig.Tiny with { Width = 64, Heads = 4 } };
        var ex = Assert.Throws<SpmMismatchException>(() => PipelineWriter.Write(Path.Combine(_dir, "x"), bad, 1, Options()))!;
        Assert.That(ex.Message, Does.Contain("64").And.Contain("cross_attention_dim"));
        var noTok = Assert.Throws<SpmException>(() => PipelineWriter.Write(Path.Combine(_dir, "y"), PipelinePresets.TinySd1, 1, Options() with { TokenizerFolder = _dir }))!;
        Assert.That(noTok.Message, Does.Contain("vocab.json"));
        Assert.That(Directory.Exists(Path.Combine(_dir, "x")) || Directory.Exists(Path.Combine(_dir, "y")), Is.False);
    }

    private sealed class SyncProgress(Action<PipelineWriteProgress> a) : IProgress<PipelineWriteProgress>
    {
        public void Report(PipelineWriteProgress value) => a(value);
    }
}
