using System.CommandLine;
using System.Text.Json;
using Spm.Cli.Commands;
using Spm.Diffusion.Onnx;
using Spm.Diffusion.Onnx.Fused;
using Spm.Tests.Common;

namespace Spm.Cli.Tests;

/// <summary><c>spm inspect</c> on a UNet fused like ONNX Runtime's optimizer does lists the unfused model's layers.</summary>
[TestFixture]
public class FusedInspectTests
{
    private string _temp = null!;
    private string _fusedUnet = null!;

    [OneTimeSetUp]
    public void SetUp()
    {
        _temp = TestPaths.NewTempDir("spm-fused-inspect");
        _fusedUnet = Path.Combine(_temp, "unet");
        Directory.CreateDirectory(_fusedUnet);
        var fused = UnetFuser.Fuse(OnnxModel.Load(TestPaths.TinySd1), new UnetFusionOptions(FusedAttentionForm.PackedInput));
        fused.Model.Save(Path.Combine(_fusedUnet, "model.onnx"));
    }

    [OneTimeTearDown]
    public void TearDown()
    {
        try { Directory.Delete(_temp, true); } catch (IOException) { }
    }

    private static (int Code, string Out, string Err) Run(params string[] args) => CliHarness.Run(c => [InspectCommand.Create(c)], args);

    private static JsonElement Json(string path)
    {
        var (code, stdout, stderr) = Run("inspect", path, "--json");
        Assert.That(code, Is.EqualTo(0), stderr);
        using var doc = JsonDocument.Parse(stdout);
        return doc.RootElement.Clone();
    }

    private static List<string> Layers(JsonElement r) => r.GetProperty("layers").EnumerateArray()
        .Select(l => $"{l.GetProperty("path").GetString()} {l.GetProperty("kind").GetString()} {l.GetProperty("in").GetInt32()}->{l.GetProperty("out").GetInt32()}")
        .OrderBy(s => s, StringComparer.Ordinal).ToList();

    [Test]
    public void FusedAndUnfused_ListTheSameLayers_WithANoteForPackedOnes()
    {
        var plain = Json(TestPaths.TinySd1);
        var fused = Json(_fusedUnet);
        Assert.That(Layers(fused), Has.Count.EqualTo(72));
        Assert.That(Layers(fused), Is.EqualTo(Layers(plain)));
        var packed = fused.GetProperty("layers").EnumerateArray().Where(l => l.TryGetProperty("packed", out _)).ToList();
        Assert.That(packed, Has.Count.EqualTo(30));
        var q = packed.Single(l => l.GetProperty("path").GetString() == "mid_block.attentions.0.transformer_blocks.0.attn1.to_q");
        Assert.That(q.GetProperty("packed").GetString(), Is.EqualTo("slice 0 of 3 of packed QKV, 8 heads x 8"));
        Assert.That(q.GetProperty("node").GetString(), Does.StartWith("MatMul_QKV_"));
        Assert.That(plain.GetProperty("layers").EnumerateArray().Any(l => l.TryGetProperty("packed", out _)), Is.False);

        var (code, table, err) = Run("inspect", _fusedUnet);
        Assert.That(code, Is.EqualTo(0), err);
        Assert.That(table, Does.Contain("Note").And.Contain("slice 2 of 3 of packed QKV").And.Contain("slice 1 of 2 of packed KV"));
    }
}
