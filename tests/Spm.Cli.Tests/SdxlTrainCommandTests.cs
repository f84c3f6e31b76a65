using Spm.Cli.Commands;
using Spm.Core.Membranes;
using Spm.Tests.Common;

namespace Spm.Cli.Tests;

/// <summary>
/// <c>spm train</c> on the tiny SDXL pipeline end to end, and the verbs that do not take SDXL yet refusing it before any
/// model loads, with an error naming the folder and the verb.
/// </summary>
[TestFixture]
public class SdxlTrainCommandTests
{
    private static (int Code, string Out, string Err) Run(params string[] args)
        => CliHarness.Run(c => [TrainCommand.Create(c), InspectCommand.Create(c), GenerateCommand.Create(c), EvalCommand.Create(c),
            GateCommand.Create(c), AttackCommand.Create(c), BenchCommand.Create(c)], args);

    [Test]
    [Category(TestCategories.Slow)]
    public void Train_OnSdxl_WithPreviewsAndProbe_WritesAnSpmThatInspectMatchesAndGenerateLoads()
    {
        var dir = TestPaths.NewTempDir("spm-sdxl-train-cli");
        var output = Path.Combine(dir, "circle.safetensors");
        var train = Run("train", "--model", TinySdxl.Folder, "--concept", "a red circle", "--iterations", "2", "--resolution", "128",
            "--fixed-resolution", "--threads", "1", "--seed", "3", "--warmup", "1", "--lr", "1e-2", "--no-graph-cache",
            "--preview-every", "2", "--preview-steps", "2", "--probe", "--out", output);
        Assert.That(train.Code, Is.EqualTo(0), train.Err);
        Assert.That(File.Exists(output + ".preview-000002.png"), Is.True, "previews decode SDXL latents through the same row layout");
        Assert.That(File.ReadAllLines(output + ".loss.csv")[0], Does.Contain("probe_erasure"));
        var adapter = SpmFile.Load(output);
        Assert.That(adapter.Membranes, Has.Count.EqualTo(132));
        Assert.That(adapter.Membranes.Select(m => m.Key), Has.All.StartWith("lora_unet_"));

        var inspect = Run("inspect", output, "--model", TinySdxl.Folder, "--json");
        Assert.That(inspect.Code, Is.EqualTo(0), inspect.Err);
        Assert.That(inspect.Out, Does.Contain("lora_unet_mid_block_attentions_0_transformer_blocks_1_attn2_to_k"));

        var png = Path.Combine(dir, "circle.png");
        var generate = Run("generate", "--model", TinySdxl.Folder, "--prompt", "a red circle", "--steps", "2", "--seed", "1",
            "--width", "64", "--height", "64", "--spm", output, "--out", png);
        Assert.That(generate.Code, Is.EqualTo(0), generate.Err);
        Assert.That(File.Exists(png), Is.True);
    }

    [Test]
    [Category(TestCategories.Slow)]
    public void BenchTrainStep_OnSdxl_FeedsTextEmbedsAndTimeIds()
    {
        var (code, stdout, err) = Run("bench", "train-step", "--model", TinySdxl.Folder, "--latent-size", "8", "--runs", "1", "--threads", "1", "--json");
        Assert.That(code, Is.EqualTo(0), err);
        using var json = System.Text.Json.JsonDocument.Parse(stdout);
        Assert.That(json.RootElement.GetProperty("layers").GetInt32(), Is.EqualTo(132));
        Assert.That(json.RootElement.GetProperty("train_step_ms").GetDouble(), Is.GreaterThan(0));
    }

    private static IEnumerable<TestCaseData> RefusingVerbs()
    {
        yield return new TestCaseData("spm eval", (Func<string, string, string[]>)((model, dir) => ["eval", "--model", model, "--spm", Path.Combine(dir, "x.safetensors")]));
        yield return new TestCaseData("spm gate fit", (Func<string, string, string[]>)((model, dir) => ["gate", "fit", "--model", model, "--spm", Path.Combine(dir, "x.safetensors"), "--out-dir", dir]));
        yield return new TestCaseData("spm attack", (Func<string, string, string[]>)((model, dir) => ["attack", "--model", model, "--concept", "circle", "--out", Path.Combine(dir, "attack")]));
        yield return new TestCaseData("spm train --robust-rounds", (Func<string, string, string[]>)((model, dir) =>
            ["train", "--model", model, "--concept", "a red circle", "--iterations", "1", "--robust-rounds", "1", "--out", Path.Combine(dir, "r.safetensors")]));
        yield return new TestCaseData("spm inspect --atlas", (Func<string, string, string[]>)((model, dir) =>
            ["inspect", Path.Combine(dir, "x.safetensors"), "--model", model, "--atlas", Path.Combine(dir, "atlas.json")]));
    }

    [TestCaseSource(nameof(RefusingVerbs))]
    public void VerbsWithoutSdxlSupport_RefuseAnSdxlModelNamingTheFolderAndTheVerb(string verb, Func<string, string, string[]> args)
    {
        var dir = TestPaths.NewTempDir("spm-sdxl-refuse");
        var (code, _, err) = Run(args(TinySdxl.Folder, dir));
        Assert.That(code, Is.EqualTo(ExitCodes.UsageError), err);
        Assert.That(err, Does.Contain($"'{TinySdxl.Folder}' is a Stable Diffusion XL model: SDXL is not supported by {verb} yet"));
        Assert.That(err, Does.Contain("use generate, tokenize, inspect, bake, train and grad"));
        Assert.That(Directory.EnumerateFileSystemEntries(dir), Is.Empty, "refused before anything was written");
    }
    [Test]
    public void BenchPipeline_OnSdxl_MeasuresTheBareUNetWithItsPooledEmbeddingsAndTimeIds()
    {
        // The baseline's bare UNet calls take their rows from the family's conditioning: before, an SDXL UNet refused
        // them for want of text_embeds and time_ids.
        var (code, stdout, stderr) = Run("bench", "pipeline", "--model", TinySdxl.Folder, "--steps", "2", "--runs", "1", "--size", "128", "--json");
        Assert.That(code, Is.EqualTo(0), stderr);
        using var doc = System.Text.Json.JsonDocument.Parse(stdout);
        Assert.That(doc.RootElement.GetProperty("batch_rows").GetInt32(), Is.EqualTo(2));
        Assert.That(doc.RootElement.GetProperty("bare_unet_ms").GetDouble(), Is.GreaterThan(0));
        Assert.That(doc.RootElement.GetProperty("it_per_s").GetDouble(), Is.GreaterThan(0));
    }
}
