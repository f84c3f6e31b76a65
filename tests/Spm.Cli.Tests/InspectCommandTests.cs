using System.CommandLine;
using System.Text.Json;
using Spm.Cli.Commands;
using Spm.Core.Membranes;
using Spm.Core.Tensors;
using Spm.Tests.Common;

namespace Spm.Cli.Tests;

[TestFixture]
public class InspectCommandTests
{
    private static (int Code, string Out, string Err) Run(params string[] args)
        => CliHarness.Run(c => [InspectCommand.Create(c)], args);

    private static JsonElement Json(params string[] args)
    {
        var (code, stdout, stderr) = Run(args);
        Assert.That(code, Is.EqualTo(0), stderr);
        using var doc = JsonDocument.Parse(stdout); // exactly one JSON value, or this throws
        return doc.RootElement.Clone();
    }

    private static string Spm(string caseName) => Path.Combine(TestPaths.Reference(caseName), "spm.safetensors");

    [Test]
    public void Model_Json_ListsExactlyThe72TransformerLayersWithSizes()
    {
        var r = Json("inspect", TestPaths.TinySd1, "--json");
        Assert.That(r.GetProperty("type").GetString(), Is.EqualTo("model"));
        var layers = r.GetProperty("layers").EnumerateArray().ToList();
        Assert.That(layers, Has.Count.EqualTo(72));
        Assert.That(layers.Select(l => l.GetProperty("path").GetString()).Distinct().Count(), Is.EqualTo(72));
        var byPath = layers.ToDictionary(l => l.GetProperty("path").GetString()!);
        var k = byPath["mid_block.attentions.0.transformer_blocks.0.attn2.to_k"];
        Assert.That((k.GetProperty("kind").GetString(), k.GetProperty("in").GetInt32(), k.GetProperty("out").GetInt32()), Is.EqualTo(("MatMul", 32, 64)));
        var p = byPath["up_blocks.0.attentions.2.proj_in"];
        Assert.That((p.GetProperty("kind").GetString(), p.GetProperty("in").GetInt32(), p.GetProperty("out").GetInt32()), Is.EqualTo(("Conv", 64, 64)));
        var ff = byPath["down_blocks.1.attentions.1.transformer_blocks.0.ff.net.0.proj"];
        Assert.That((ff.GetProperty("in").GetInt32(), ff.GetProperty("out").GetInt32()), Is.EqualTo((64, 512)));

        Assert.That(r.GetProperty("opset").GetInt32(), Is.EqualTo(14));
        Assert.That(r.GetProperty("externalDataBytes").GetInt64(), Is.EqualTo(5665792));
        Assert.That(r.GetProperty("inputs").EnumerateArray().Select(i => i.GetProperty("name").GetString()), Is.EqualTo(new[] { "sample", "timestep", "encoder_hidden_states" }));
        var containers = r.GetProperty("containers").EnumerateArray().ToList();
        Assert.That(containers, Has.Count.EqualTo(6));
        Assert.That(containers.Select(c => c.GetProperty("layers").GetInt32()), Is.All.EqualTo(12));
        Assert.That(containers.Select(c => c.GetProperty("kinds").GetProperty("Conv").GetInt32()), Is.All.EqualTo(2));
        Assert.That(r.GetProperty("otherLayers").GetProperty("count").GetInt32(), Is.EqualTo(49));
    }

    [Test]
    public void Model_OnnxFileAndComponentFolder_GiveTheSameLayers()
    {
        var a = Json("inspect", Path.Combine(TestPaths.TinySd1, "unet", "model.onnx"), "--json");
        var b = Json("inspect", Path.Combine(TestPaths.TinySd1, "unet"), "--json");
        Assert.That(a.GetProperty("layers").ToString(), Is.EqualTo(b.GetProperty("layers").ToString()));
    }

    [TestCase("all-layers", 72, 1, 12672)]
    [TestCase("attn2-rank4", 24, 4, 10752)]
    public void Spm_WithModel_MatchesEveryMembrane(string caseName, int membranes, int rank, long parameters)
    {
        var r = Json("inspect", Spm(caseName), "--model", TestPaths.TinySd1, "--json");
        Assert.That(r.GetProperty("type").GetString(), Is.EqualTo("spm"));
        Assert.That(r.GetProperty("matched").GetInt32(), Is.EqualTo(membranes));
        Assert.That(r.GetProperty("unmatched").GetArrayLength(), Is.EqualTo(0));
        Assert.That(r.GetProperty("mismatched").GetArrayLength(), Is.EqualTo(0));
        Assert.That(r.GetProperty("membraneCount").GetInt32(), Is.EqualTo(membranes));
        Assert.That(r.GetProperty("rank").GetInt32(), Is.EqualTo(rank));
        Assert.That(r.GetProperty("parameterCount").GetInt64(), Is.EqualTo(parameters));
        Assert.That(r.GetProperty("transformerLayersWithoutMembrane").GetInt32(), Is.EqualTo(72 - membranes));
        var md = r.GetProperty("metadata");
        Assert.That(md.GetProperty("rank").GetString(), Is.EqualTo(rank.ToString()));
        Assert.That(md.TryGetProperty("prompts", out _) && md.TryGetProperty("alpha", out _), Is.True);
        var ms = r.GetProperty("membranes").EnumerateArray().ToList();
        Assert.That(ms, Has.Count.EqualTo(membranes));
        Assert.That(ms.Select(m => m.GetProperty("rank").GetInt32()), Is.All.EqualTo(rank));
        Assert.That(ms.All(m => m.TryGetProperty("path", out _) && m.TryGetProperty("key", out _)), Is.True);
    }

    [Test]
    public void Spm_WithoutModel_ReportsKeysConceptsAndDtype()
    {
        var r = Json("inspect", Spm("attn2-rank4"), "--json");
        Assert.That(r.GetProperty("dtype").GetString(), Is.EqualTo("F32"));
        Assert.That(r.GetProperty("alpha").GetSingle(), Is.EqualTo(2f));
        Assert.That(r.GetProperty("concepts").GetArrayLength(), Is.GreaterThan(0));
        Assert.That(r.TryGetProperty("matched", out _), Is.False);
        var first = r.GetProperty("membranes")[0];
        Assert.That(first.GetProperty("key").GetString(), Is.EqualTo("lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_q"));
        Assert.That(first.TryGetProperty("path", out _), Is.False, "no model, no resolved path");
    }

    [Test]
    public void Spm_OnAModelWithOtherShapes_ReportsMismatchesAndUnmatched()
    {
        // The VAE decoder has an attention block but none of the UNet's module paths: every key is unmatched.
        var r = Json("inspect", Spm("attn2-rank4"), "--model", Path.Combine(TestPaths.TinySd1, "vae_decoder"), "--json");
        Assert.That(r.GetProperty("matched").GetInt32(), Is.EqualTo(0));
        Assert.That(r.GetProperty("unmatched").GetArrayLength(), Is.EqualTo(24));
        Assert.That(r.GetProperty("unmatched")[0].GetString(), Does.StartWith("lora_unet_"));
    }

    [Test]
    public void Spm_WithWrongShapesKindsAndNaN_ReportsEachProblem()
    {
        // From the rank-4 reference: to_q made 48 wide (model has 64), to_k made a conv (model has a linear),
        // one key the model lacks, and a NaN in to_v.
        var src = SpmFile.Load(Spm("attn2-rank4"));
        var ms = src.Membranes.ToList();
        ms[0] = new Membrane(ms[0].Key, new FloatTensor(4, 48), new FloatTensor(64, 4), 2f);
        ms[1] = new Membrane(ms[1].Key, new FloatTensor(4, 32, 1, 1), new FloatTensor(64, 4, 1, 1), 2f);
        ms[2].Down.Data[3] = float.NaN;
        ms.Add(new Membrane("lora_unet_down_blocks_7_attentions_0_proj_in", new FloatTensor(4, 64), new FloatTensor(64, 4), 2f));
        var path = Path.Combine(TestPaths.NewTempDir(), "bad.safetensors");
        SpmFile.Save(path, new SpmAdapter(src.Config, ms));

        var r = Json("inspect", path, "--model", TestPaths.TinySd1, "--json");
        Assert.That(r.GetProperty("matched").GetInt32(), Is.EqualTo(22));
        Assert.That(r.GetProperty("unmatched").EnumerateArray().Select(u => u.GetString()), Is.EqualTo(new[] { "lora_unet_down_blocks_7_attentions_0_proj_in" }));
        var mism = r.GetProperty("mismatched").EnumerateArray().ToDictionary(m => m.GetProperty("key").GetString()!, m => m.GetProperty("reason").GetString()!);
        Assert.That(mism, Has.Count.EqualTo(2));
        Assert.That(mism[ms[0].Key], Is.EqualTo("membrane 48->64 vs layer 64->64"));
        Assert.That(mism[ms[1].Key], Is.EqualTo("the membrane is a conv but the layer is linear"));
        Assert.That(r.GetProperty("nonFiniteValues").GetInt64(), Is.EqualTo(1));

        var (code, stdout, _) = Run("inspect", path, "--model", TestPaths.TinySd1);
        Assert.That(code, Is.EqualTo(0));
        Assert.That(stdout, Does.Contain("22 of 25 membranes").And.Contain("mismatch: down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_q: membrane 48->64 vs layer 64->64"));
    }

    [Test]
    public void Tables_ShowCountsAndMatching()
    {
        var (code, stdout, stderr) = Run("inspect", TestPaths.TinySd1);
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stdout, Does.Contain("down_blocks.1.attentions.0").And.Contain("72").And.Contain("10 MatMul, 2 Conv").And.Contain("[batch,4,height,width]"));
        (code, stdout, stderr) = Run("inspect", Spm("all-layers"), "--model", TestPaths.TinySd1);
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stdout, Does.Contain("72 of 72 membranes").And.Contain("mid_block.attentions.0.proj_in"));
    }

    [Test]
    public void Errors_AreOneLineWithNonZeroExit()
    {
        var (code, stdout, stderr) = Run("inspect", "/no/such/file.safetensors");
        Assert.That(code, Is.Not.EqualTo(0));
        Assert.That(stdout, Is.Empty);
        Assert.That(stderr.Trim(), Does.StartWith("spm: error:").And.Contain("/no/such/file.safetensors"));
        Assert.That(stderr.Trim().Split('\n'), Has.Length.EqualTo(1));

        var garbage = Path.Combine(TestPaths.NewTempDir(), "model.onnx");
        File.WriteAllBytes(garbage, [0x0a, 0xff, 0xff, 0xff, 0x7f, 1, 2, 3]);
        (code, _, stderr) = Run("inspect", garbage, "--json");
        Assert.That(code, Is.EqualTo(ExitCodes.BadInput));
        Assert.That(stderr, Does.Contain(garbage));

        (code, _, stderr) = Run("inspect", TestPaths.TinySd1, "--model", TestPaths.TinySd1);
        Assert.That(code, Is.EqualTo(2));
        Assert.That(stderr, Does.Contain("--model applies to SPM files"));
    }
}
