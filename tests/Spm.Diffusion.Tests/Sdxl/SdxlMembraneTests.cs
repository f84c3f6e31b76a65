using Spm.Core;
using Spm.Core.Gating;
using Spm.Core.Membranes;
using Spm.Core.Randomness;
using Spm.Core.Tensors;
using Spm.Diffusion.Membranes;
using Spm.Diffusion.Onnx;
using Spm.Diffusion.Pipelines;
using Spm.Tests.Common;

namespace Spm.Diffusion.Tests.Sdxl;

/// <summary>
/// SPM membranes on the tiny SDXL UNet: every linear layer of every transformer layer (both transformer_blocks of a
/// block) is adaptable and keyed in the official layout (diffusers module path, <c>lora_unet_</c>, dots to
/// underscores); injected branches with the SDXL conditioning equal the baked weights; multiplier 0 is the base model;
/// the gate runs on SDXL prompts; an SD 1.x file is refused naming a layer and both shapes.
/// </summary>
[TestFixture]
public class SdxlMembraneTests
{
    private string _dir = "";

    [SetUp]
    public void SetUp() => _dir = TestPaths.NewTempDir("spm-sdxl-membranes");

    [TearDown]
    public void TearDown()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    private static IReadOnlyList<AdaptableLayer> Layers()
        => AdaptableLayerFinder.FindAll(OnnxModel.Load(Path.Combine(TinySdxl.Folder, "unet", "model.onnx")));

    private static readonly string[] Containers =
        ["down_blocks.1.attentions.0", "down_blocks.1.attentions.1", "mid_block.attentions.0", "up_blocks.0.attentions.0", "up_blocks.0.attentions.1", "up_blocks.0.attentions.2"];

    private static readonly string[] PerLayer =
        ["attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0", "ff.net.0.proj", "ff.net.2"];

    private static IEnumerable<string> ExpectedPaths()
    {
        foreach (var c in Containers)
        {
            yield return $"{c}.proj_in";
            yield return $"{c}.proj_out";
            foreach (var b in new[] { 0, 1 })
                foreach (var l in PerLayer) yield return $"{c}.transformer_blocks.{b}.{l}";
        }
    }

    [Test]
    public void AdaptableLayers_AreEveryLinearOfEveryTransformerLayer()
    {
        var layers = Layers();
        var paths = layers.Where(l => AdaptableLayerFinder.IsInTransformer(l.ModulePath)).Select(l => l.ModulePath).ToHashSet();
        Assert.That(paths, Is.EquivalentTo(ExpectedPaths()), "6 transformers x (proj_in, proj_out, 2 layers x 10 linears) = 132");
        var k = layers.Single(l => l.ModulePath == "up_blocks.0.attentions.2.transformer_blocks.1.attn2.to_k");
        Assert.That((k.InFeatures, k.OutFeatures), Is.EqualTo((64, 64)), "cross-attention reads both encoders' 32 + 32 widths");
        Assert.That(SpmKeys.KeyFor(k.ModulePath), Is.EqualTo("lora_unet_up_blocks_0_attentions_2_transformer_blocks_1_attn2_to_k"));
        var projIn = layers.Single(l => l.ModulePath == "down_blocks.1.attentions.0.proj_in");
        Assert.That(projIn.IsConv, Is.False, "SDXL's projections are linear");
    }

    /// <summary>Writes a rank-2, alpha-4 SPM over every transformer layer with seeded random weights (keys: diffusers' names, or <paramref name="keyOf"/>).</summary>
    private string WriteSpm(string name, string concept, ulong seed, float scale = 0.05f, Func<string, string>? keyOf = null)
    {
        var rng = new SeededRandom(seed);
        var membranes = new List<Membrane>();
        foreach (var l in Layers().Where(l => AdaptableLayerFinder.IsInTransformer(l.ModulePath)).OrderBy(l => l.ModulePath, StringComparer.Ordinal))
        {
            var down = new FloatTensor(2, l.InFeatures);
            var up = new FloatTensor(l.OutFeatures, 2);
            rng.FillGaussian(down.Data);
            rng.FillGaussian(up.Data);
            for (int i = 0; i < up.Data.Length; i++) up.Data[i] *= scale;
            membranes.Add(new Membrane(keyOf?.Invoke(l.ModulePath) ?? SpmKeys.KeyFor(l.ModulePath), down, up, 4f, l.ModulePath));
        }
        var path = Path.Combine(_dir, name);
        SpmFile.Save(path, new SpmAdapter(new SpmConfig([concept], 2, 4f), membranes), overwrite: true);
        return path;
    }

    private static GenerationRequest Request(IUNetConditioner? conditioner) => new()
    {
        Prompt = "a red circle", Steps = 2, Seed = 11, Scheduler = "euler", GuidanceScale = 4, Width = 128, Height = 128,
        DecodeImages = false, Conditioner = conditioner, OriginalSize = (512, 512),
    };

    [Test]
    public void Injected_AtMultiplier_EqualsBakedWeights_AndZeroIsTheBaseModel()
    {
        var spm = WriteSpm("circle.safetensors", "circle", 5);
        var spms = LoadedSpms.Load(TinySdxl.Folder, [spm]);
        Assert.That(spms.Layout.Layers, Has.Count.EqualTo(132));
        using var injected = TinySdxl.Load(unet: spms.UNetSource);
        Assert.That(injected.UNet.TextInputs.Select(i => i.Name), Is.EqualTo(new[] { "text_embeds", "time_ids" }));

        var on = injected.Generate(Request(spms.CreateConditioner(injected, [new GateSettings(FixedMultiplier: 0.7f)])));
        var off = injected.Generate(Request(spms.CreateConditioner(injected, [new GateSettings(FixedMultiplier: 0f)])));
        var plain = TinySdxl.Pipeline.Generate(Request(null));
        Assert.That(MaxAbsDiff(off.Latents.Data, plain.Latents.Data), Is.LessThan(1e-5), "multiplier 0 = the base model");
        Assert.That(MaxAbsDiff(on.Latents.Data, plain.Latents.Data), Is.GreaterThan(1e-3), "the membranes act");

        var baked = Path.Combine(_dir, "baked");
        var result = BakeJob.Run(new BakeRequest(TinySdxl.Folder, [spm], [0.7f], BakeMode.Merge, baked));
        Assert.That((result.IsPipelineFolder, result.LayerCount), Is.EqualTo((true, 132)));
        using var bakedPipeline = StableDiffusionPipeline.Load(baked);
        Assert.That(bakedPipeline.Family, Is.EqualTo(Spm.Diffusion.Pipelines.Families.ModelFamily.StableDiffusionXL));
        var merged = bakedPipeline.Generate(Request(null));
        double rel = MaxAbsDiff(on.Latents.Data, merged.Latents.Data) / on.Latents.Data.Max(v => Math.Abs(v));
        Assert.That(rel, Is.LessThan(1e-5), "branches beside the layers = weights W + m·s·up·down");
    }

    [TestCase("down_blocks.1.attentions.0.transformer_blocks.1.attn2.to_k", "lora_unet_input_blocks_4_1_transformer_blocks_1_attn2_to_k")]
    [TestCase("down_blocks.1.attentions.1.proj_in", "lora_unet_input_blocks_5_1_proj_in")]
    [TestCase("mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj", "lora_unet_middle_block_1_transformer_blocks_0_ff_net_0_proj")]
    [TestCase("up_blocks.0.attentions.2.transformer_blocks.1.attn1.to_out.0", "lora_unet_output_blocks_2_1_transformer_blocks_1_attn1_to_out_0")]
    public void KohyaSdxlNames_MapToDiffusersPaths(string diffusers, string kohya)
    {
        var aliases = SgmModuleNames.KeyAliases(Layers().Select(l => l.ModulePath));
        Assert.That(aliases[kohya], Is.EqualTo(diffusers));
        Assert.That(aliases, Has.Count.EqualTo(132), "every transformer layer, nothing else");
        // SDXL base's layout (3 levels, 2 resnets per down block, 3 per up block): the indices kohya files use.
        var sdxl = SgmModuleNames.KeyAliases([
            "down_blocks.0.resnets.0.conv1", "down_blocks.0.resnets.1.conv1", "down_blocks.2.attentions.1.transformer_blocks.9.attn2.to_v",
            "up_blocks.1.attentions.2.proj_out", "up_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"]);
        Assert.That(sdxl["lora_unet_input_blocks_8_1_transformer_blocks_9_attn2_to_v"], Is.EqualTo("down_blocks.2.attentions.1.transformer_blocks.9.attn2.to_v"));
        Assert.That(sdxl["lora_unet_output_blocks_5_1_proj_out"], Is.EqualTo("up_blocks.1.attentions.2.proj_out"));
        Assert.That(sdxl["lora_unet_output_blocks_0_1_transformer_blocks_0_attn1_to_q"], Is.EqualTo("up_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"));
    }

    [Test]
    [Category(TestCategories.Slow)]
    public void KohyaKeyedFile_LoadsOntoTheSameLayers_AndGeneratesTheSame()
    {
        var aliases = SgmModuleNames.KeyAliases(Layers().Select(l => l.ModulePath)).ToDictionary(kv => kv.Value, kv => kv.Key);
        var official = WriteSpm("official.safetensors", "circle", 5);
        var kohya = WriteSpm("kohya.safetensors", "circle", 5, keyOf: p => aliases[p]);
        using (var f = Spm.Core.SafeTensors.SafeTensorsFile.Open(kohya))
            Assert.That(f.Tensors.Select(t => t.Name).Where(n => n.EndsWith(".alpha", StringComparison.Ordinal)), Is.All.StartWith("lora_unet_input_blocks_").Or.StartWith("lora_unet_middle_block_").Or.StartWith("lora_unet_output_blocks_"));
        var a = LoadedSpms.Load(TinySdxl.Folder, [official]);
        var b = LoadedSpms.Load(TinySdxl.Folder, [kohya]);
        Assert.That(b.Layout.Layers.Select(l => l.ModulePath), Is.EqualTo(a.Layout.Layers.Select(l => l.ModulePath)));
        using var pa = TinySdxl.Load(unet: a.UNetSource);
        using var pb = TinySdxl.Load(unet: b.UNetSource);
        var ra = pa.Generate(Request(a.CreateConditioner(pa, [new GateSettings(FixedMultiplier: 1f)])));
        var rb = pb.Generate(Request(b.CreateConditioner(pb, [new GateSettings(FixedMultiplier: 1f)])));
        Assert.That(rb.Latents.Data, Is.EqualTo(ra.Latents.Data));
    }

    [Test]
    public void Gate_OnSdxlPrompts_OpensForTheConceptAndLessForOthers()
    {
        var spm = WriteSpm("circle.safetensors", "circle", 5);
        var spms = LoadedSpms.Load(TinySdxl.Folder, [spm]);
        using var injected = TinySdxl.Load(unet: spms.UNetSource);
        var conditioner = spms.CreateConditioner(injected, [GateSettings.Default with { Calibration = GateCalibration.None }]);
        var onConcept = conditioner.GatesFor("a circle").Single();
        var other = conditioner.GatesFor("a photo of a dog on the grass").Single();
        Assert.That(onConcept.Gamma, Is.EqualTo(1f).Within(1e-6), "every token of the concept is in the prompt");
        Assert.That(onConcept.Multiplier, Is.EqualTo(1f).Within(1e-6));
        Assert.That(other.Gamma, Is.LessThan(1f));
        Assert.That(other.Multiplier, Is.LessThan(onConcept.Multiplier));
        var r = injected.Generate(Request(conditioner) with { DecodeImages = true, Width = 64, Height = 64 });
        Assert.That(r.Images[0].Parameters, Does.Contain("SPM: circle.safetensors gate").And.Contain("Original size: 512x512"));
    }

    [Test]
    public void Sd1Spm_OnSdxl_IsRefusedNamingALayerAndBothShapes()
    {
        var sd1 = Path.Combine(TestPaths.Reference("all-layers"), "spm.safetensors");
        var ex = Assert.Throws<SpmMismatchException>(() => LoadedSpms.Load(TinySdxl.Folder, [sd1]))!;
        // SD 1.x projections are 1x1 convs, SDXL's linear: the first misfit names the layer and both shapes.
        Assert.That(ex.Layer, Is.EqualTo("down_blocks.1.attentions.0.proj_in"));
        Assert.That(ex.Message, Does.Contain("first: 'down_blocks.1.attentions.0.proj_in': the membrane is a conv but the model's layer is linear")
            .And.Contain("membrane down [1,64,1,1]").And.Contain("layer weight [64,64]").And.Contain("Nothing was applied"));
    }

    private static double MaxAbsDiff(float[] a, float[] b)
    {
        Assert.That(a, Has.Length.EqualTo(b.Length));
        double m = 0;
        for (int i = 0; i < a.Length; i++) m = Math.Max(m, Math.Abs((double)a[i] - b[i]));
        return m;
    }
}
