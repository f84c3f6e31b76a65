using Microsoft.ML.OnnxRuntime;
using Spm.Core;
using Spm.Core.Tensors;
using Spm.Diffusion.Membranes;
using Spm.Diffusion.Onnx;
using Spm.Diffusion.Onnx.Fused;
using Spm.Diffusion.Onnx.Proto;
using Spm.Diffusion.Tests.Membranes;
using Spm.Tests.Common;

namespace Spm.Diffusion.Tests.Fused;

/// <summary>
/// Graphs fused the way ONNX Runtime's transformer optimizer fuses the SD UNet (packed QKV / KV MatMuls feeding
/// com.microsoft.MultiHeadAttention), built from the shared fixture by <see cref="UnetFuser"/>: same outputs as the
/// unfused graph, same adaptable layers, the same SPM injected or baked gives the same outputs.
/// </summary>
[TestFixture]
public sealed class FusedGraphTests
{
    private OnnxModel _unfused = null!;
    private OnnxModel _fused = null!;
    private OnnxModel _fusedCuda = null!;
    private MembraneFixtures.ReferenceCase _case = null!;
    private Dictionary<string, OrtValue> _inputs = null!;
    private string _temp = null!;

    [OneTimeSetUp]
    public void SetUp()
    {
        _unfused = OnnxModel.Load(MembraneFixtures.UnetFolder);
        var fused = UnetFuser.Fuse(_unfused, new UnetFusionOptions(FusedAttentionForm.SplitPacked));
        Assert.That((fused.SelfAttentions, fused.CrossAttentions), Is.EqualTo((6, 6)), "the fixture has 6 transformer blocks");
        _fused = fused.Model;
        _fusedCuda = UnetFuser.Fuse(_unfused, new UnetFusionOptions(FusedAttentionForm.PackedInput)).Model;
        _case = MembraneFixtures.LoadCase("all-layers");
        _inputs = MembraneFixtures.ToOrt(_case.Inputs);
        _temp = TestPaths.NewTempDir("spm-fused");
    }

    [OneTimeTearDown]
    public void TearDown()
    {
        foreach (var v in _inputs.Values) v.Dispose();
        try { Directory.Delete(_temp, true); } catch (IOException) { }
    }

    private float[] Run(ModelProto model, string folder, Dictionary<string, OrtValue>? extra = null)
    {
        using var session = InjectedUnet.OpenSession(model, folder);
        var feeds = new Dictionary<string, OrtValue>(_inputs);
        if (extra is not null) foreach (var kv in extra) feeds[kv.Key] = kv.Value;
        using var outputs = session.Run(new RunOptions(), feeds.Keys.ToList(), feeds.Values.ToList(), ["out_sample"]);
        return MembraneFixtures.Output(outputs);
    }

    private static double MaxAbs(float[] a, float[] b)
    {
        Assert.That(a, Has.Length.EqualTo(b.Length));
        double m = 0;
        for (int i = 0; i < a.Length; i++) m = Math.Max(m, Math.Abs((double)a[i] - b[i]));
        return m;
    }

    [Test]
    public void FusedGraph_HasTheOptimizerPatterns_AndNoAttentionCore()
    {
        var ops = _fused.Graph.Node.GroupBy(n => (n.Domain, n.OpType)).ToDictionary(g => g.Key, g => g.Count());
        Assert.That(ops[(UnetFuser.MsDomain, "MultiHeadAttention")], Is.EqualTo(12));
        Assert.That(_fused.Graph.Node.Count(n => n.Name.StartsWith("MatMul_QKV_", StringComparison.Ordinal) && n.OpType == "MatMul"), Is.EqualTo(6));
        Assert.That(_fused.Graph.Node.Count(n => n.Name.StartsWith("MatMul_KV_", StringComparison.Ordinal) && n.OpType == "MatMul"), Is.EqualTo(6));
        Assert.That(_fused.Graph.Node.Any(n => n.OpType == "Softmax"), Is.False, "every attention core is replaced");
        Assert.That(_fused.Graph.Node.Any(n => n.Name.EndsWith("/to_k/MatMul", StringComparison.Ordinal)), Is.False, "to_k lives in the packed MatMuls");
        Assert.That(_fused.Graph.Node.Count(n => n.Name.EndsWith("/attn2/to_q/MatMul", StringComparison.Ordinal)), Is.EqualTo(6), "cross-attention keeps to_q");
        Assert.That(_fusedCuda.Graph.Node.Any(n => n.OpType == "Split"), Is.False, "the optimizer's own form feeds the packed tensor to MultiHeadAttention");
    }

    [Test]
    public void FusedFixture_GivesTheUnfusedOutputs_OnCpu()
    {
        var a = Run(_unfused.Proto, _unfused.BaseDirectory);
        var b = Run(_fused.Proto, _fused.BaseDirectory);
        double d = MaxAbs(a, b);
        TestContext.Out.WriteLine($"fused vs unfused: max abs diff {d:E3} (outputs up to {a.Max(Math.Abs):F3})");
        Assert.That(d, Is.LessThan(1e-4));
    }

    [Test]
    public void OptimizerForm_PackedInputs_AreCudaOnlyInOnnxRuntime()
    {
        // What the spec says and ORT 1.31 does: packed QKV/KV inputs of MultiHeadAttention have no CPU kernel. This
        // is why the CPU fixture splits the packed tensor first; the packed weights are the same in both forms.
        var ex = Assert.Catch<OnnxRuntimeException>(() => Run(_fusedCuda.Proto, _fusedCuda.BaseDirectory));
        Assert.That(ex!.Message, Does.Contain("not implemented for CPU"));
    }

    [Test]
    public void Finder_ListsTheSameLayers_PackedOnesAsSlices()
    {
        var plain = AdaptableLayerFinder.FindAll(_unfused);
        foreach (var model in new[] { _fused, _fusedCuda })
        {
            var fused = AdaptableLayerFinder.FindAll(model);
            Assert.That(fused.Select(l => (l.ModulePath, l.Kind, l.InFeatures, l.OutFeatures)).OrderBy(t => t.ModulePath, StringComparer.Ordinal),
                Is.EqualTo(plain.Select(l => (l.ModulePath, l.Kind, l.InFeatures, l.OutFeatures)).OrderBy(t => t.ModulePath, StringComparer.Ordinal)));
            var packed = fused.Where(l => l.IsPacked).ToList();
            Assert.That(packed, Has.Count.EqualTo(6 * 3 + 6 * 2));
            Assert.That(packed.Where(l => l.ModulePath.EndsWith("attn2.to_q", StringComparison.Ordinal)), Is.Empty);
            var k = packed.Single(l => l.ModulePath == "mid_block.attentions.0.transformer_blocks.0.attn2.to_k");
            Assert.That((k.Packing!.Count, k.Packing.Index, k.Packing.Heads, k.Packing.HeadSize, k.InFeatures), Is.EqualTo((2, 0, 8, 8, 32)));
            Assert.That(k.NodeName, Does.StartWith("MatMul_KV_"));
        }
    }

    /// <summary>The column order: the to_k slice of every packed weight holds exactly the unfused to_k weight.</summary>
    [Test]
    public void PackedSlices_HoldTheOriginalWeights_InTheOptimizersColumnOrder()
    {
        var plain = AdaptableLayerFinder.FindAll(_unfused).ToDictionary(l => l.ModulePath);
        int checkedLayers = 0;
        foreach (var l in AdaptableLayerFinder.FindAll(_fused).Where(l => l.IsPacked))
        {
            var original = _unfused.ReadFloat(plain[l.ModulePath].WeightName).Data;
            var packed = _fused.ReadFloat(l.WeightName).Data;
            int cols = l.Packing!.PackedFeatures;
            for (int r = 0; r < l.InFeatures; r++)
                for (int c = 0; c < l.OutFeatures; c++)
                    if (packed[r * cols + l.Packing.PackedColumn(c)] != original[r * l.OutFeatures + c])
                        Assert.Fail($"{l.ModulePath}: packed [{r}, {l.Packing.PackedColumn(c)}] is not the original [{r}, {c}]");
            checkedLayers++;
        }
        Assert.That(checkedLayers, Is.EqualTo(30));
        // Head 1, dim 2 of V in a QKV pack of 8 heads x 8: column (1*3 + 2)*8 + 2 = 42.
        Assert.That(new PackedProjection(8, 8, 3, 2).PackedColumn(1 * 8 + 2), Is.EqualTo(42));
    }

    [Test]
    public void SameSpm_InjectedIntoBoth_GivesTheSameOutputs()
    {
        var results = new List<float[]>();
        foreach (var model in new[] { _unfused, _fused })
        {
            var layers = AdaptableLayerFinder.FindAll(model);
            var set = MembraneSetLoader.Load(Path.Combine(TestPaths.Reference("all-layers"), "spm.safetensors"), layers);
            var layout = MembraneLayout.Create(layers, [set]);
            using var unet = InjectedUnet.Create(model.Proto, model.BaseDirectory, layout);
            foreach (var gate in new[] { _case.Multiplier, 0f })
            {
                using var outputs = unet.Run(_inputs, unet.Membranes.Gates(1, [gate]), ["out_sample"]);
                results.Add(MembraneFixtures.Output(outputs));
            }
        }
        double on = MaxAbs(results[0], results[2]), off = MaxAbs(results[1], results[3]);
        double effect = MaxAbs(results[0], results[1]);
        TestContext.Out.WriteLine($"injected fused vs unfused: gate {_case.Multiplier}: {on:E3}, gate 0: {off:E3}; membrane effect {effect:E3}");
        Assert.That(effect, Is.GreaterThan(1e-2), "the SPM changes the output");
        Assert.That(on, Is.LessThan(1e-4));
        Assert.That(off, Is.LessThan(1e-4));
        Assert.That(MembraneFixtures.RelError(results[2], _case.Expected.Data), Is.LessThan(1e-4), "the fused graph matches PyTorch's reference");
    }

    [Test]
    public void Bake_WritesIntoThePackedWeightsSlices()
    {
        var layers = AdaptableLayerFinder.FindAll(_fused);
        var set = MembraneSetLoader.Load(Path.Combine(TestPaths.Reference("all-layers"), "spm.safetensors"), layers);
        var layout = MembraneLayout.Create(layers, [set]);
        Assert.That(layout.Layers.Count(l => l.IsPacked), Is.GreaterThan(0));
        var baked = MembraneBaker.Bake(_fused, layout, [_case.Multiplier], BakeMode.Merge);
        Assert.That(baked.Graph.Input.Select(i => i.Name), Is.EquivalentTo(new[] { "sample", "timestep", "encoder_hidden_states" }));
        var output = Run(baked.Proto, baked.BaseDirectory);
        double rel = MembraneFixtures.RelError(output, _case.Expected.Data);
        TestContext.Out.WriteLine($"baked fused vs reference (injected) rel {rel:E3}");
        Assert.That(rel, Is.LessThan(1e-4));

        // Each slice of a baked packed weight is the baked unfused weight of its module, column for column.
        var plainLayers = AdaptableLayerFinder.FindAll(_unfused);
        var plainLayout = MembraneLayout.Create(plainLayers, [MembraneSetLoader.Load(Path.Combine(TestPaths.Reference("all-layers"), "spm.safetensors"), plainLayers)]);
        var bakedPlain = MembraneBaker.Bake(_unfused, plainLayout, [_case.Multiplier], BakeMode.Merge);
        var plainByPath = plainLayers.ToDictionary(l => l.ModulePath);
        double worst = 0;
        int slices = 0;
        foreach (var l in layout.Layers.Where(l => l.IsPacked))
        {
            var expected = bakedPlain.ReadFloat(plainByPath[l.ModulePath].WeightName).Data;
            var packed = baked.ReadFloat(l.WeightName).Data;
            for (int r = 0; r < l.InFeatures; r++)
                for (int c = 0; c < l.OutFeatures; c++)
                    worst = Math.Max(worst, Math.Abs(packed[r * l.Packing!.PackedFeatures + l.Packing.PackedColumn(c)] - expected[r * l.OutFeatures + c]));
            slices++;
        }
        Assert.That(slices, Is.EqualTo(30));
        Assert.That(worst, Is.LessThan(1e-6), "baked slices equal the baked unfused weights");
    }

    [Test]
    public void Injection_IntoTheOptimizersOwnForm_PlacesTheSameBranches()
    {
        // The CUDA form cannot run here; its injected graph is checked by splitting the packed tensors afterwards
        // (exactly the SplitPacked rewrite of MultiHeadAttention's inputs): then it must give the unfused injected output.
        var layers = AdaptableLayerFinder.FindAll(_fusedCuda);
        var set = MembraneSetLoader.Load(Path.Combine(TestPaths.Reference("all-layers"), "spm.safetensors"), layers);
        var layout = MembraneLayout.Create(layers, [set]);
        var injected = MembraneInjector.Inject(_fusedCuda.Proto, layout);
        var runnable = PackedAttentionLowering.SplitPackedInputs(injected);
        var tensors = MembraneTensors.Build(layout);
        var extra = tensors.Inputs.ToDictionary(kv => kv.Key, kv => OrtValue.CreateTensorValueFromMemory(kv.Value.Data, kv.Value.Shape.Select(d => (long)d).ToArray()));
        var gates = tensors.Gates(1, [_case.Multiplier]);
        extra[MembraneNames.Gates] = OrtValue.CreateTensorValueFromMemory(gates.Data, gates.Shape.Select(d => (long)d).ToArray());
        try
        {
            var output = Run(runnable, _fusedCuda.BaseDirectory, extra);
            double rel = MembraneFixtures.RelError(output, _case.Expected.Data);
            TestContext.Out.WriteLine($"optimizer-form injected (split for CPU) vs reference rel {rel:E3}");
            Assert.That(rel, Is.LessThan(1e-4));
        }
        finally
        {
            foreach (var v in extra.Values) v.Dispose();
        }
    }
}

/// <summary>A fused pipeline folder generates through the ordinary pipeline, with facilitated-transport gates, like the unfused one.</summary>
[TestFixture]
public sealed class FusedPipelineTests
{
    [Test]
    [Category(TestCategories.Slow)]
    public async Task FusedPipelineFolder_GeneratesLikeTheUnfused_WithAnSpm()
    {
        var dir = TestPaths.NewTempDir("spm-fused-pipeline");
        try
        {
            foreach (var f in Directory.EnumerateFiles(TestPaths.TinySd1, "*", SearchOption.AllDirectories))
            {
                var rel = Path.GetRelativePath(TestPaths.TinySd1, f);
                if (rel.StartsWith("unet" + Path.DirectorySeparatorChar, StringComparison.Ordinal) && !rel.EndsWith("config.json", StringComparison.Ordinal)) continue;
                Directory.CreateDirectory(Path.GetDirectoryName(Path.Combine(dir, rel))!);
                File.Copy(f, Path.Combine(dir, rel));
            }
            UnetFuser.Fuse(OnnxModel.Load(TestPaths.TinySd1)).Model.Save(Path.Combine(dir, "unet", "model.onnx"));
            var spm = Path.Combine(TestPaths.Reference("all-layers"), "spm.safetensors");
            async Task<float[]> Latents(string folder)
            {
                var spms = LoadedSpms.Load(folder, [spm]);
                using var p = Spm.Diffusion.Pipelines.StableDiffusionPipeline.Load(folder, new Spm.Diffusion.Pipelines.PipelineOptions { Runtime = new Spm.Diffusion.Runtime.OnnxRuntimeOptions { IntraOpThreads = 1 }, UNetSource = spms.UNetSource });
                var r = await p.GenerateAsync(new Spm.Diffusion.Pipelines.GenerationRequest
                {
                    Prompt = "a photo of a cat", Steps = 3, Seed = 7, Scheduler = "ddim", Width = 64, Height = 64, DecodeImages = false,
                    Conditioner = spms.CreateConditioner(p, [new Spm.Core.Gating.GateSettings()]),
                });
                return r.Latents.Data;
            }
            var fused = await Latents(dir);
            var plain = await Latents(TestPaths.TinySd1);
            double d = fused.Zip(plain).Max(x => Math.Abs(x.First - x.Second));
            TestContext.Out.WriteLine($"fused vs unfused pipeline with the SPM (gated by facilitated transport): latents max abs diff {d:E3}");
            Assert.That(d, Is.LessThan(1e-4));
        }
        finally
        {
            try { Directory.Delete(dir, true); } catch (IOException) { }
        }
    }
}

/// <summary>
/// The optimizer's form with its bias fusions too (BiasSplitGelu for GEGLU, BiasAdd for bias + residual): CUDA-only ops,
/// checked on CPU by rewriting them back to standard ops after injecting or baking.
/// </summary>
[TestFixture]
public sealed class FusedBiasOpsTests
{
    [Test]
    [Category(TestCategories.Slow)]
    public void BiasSplitGeluAndBiasAdd_LayersInjectionAndBake_MatchTheReference()
    {
        var unfused = OnnxModel.Load(MembraneFixtures.UnetFolder);
        var fused = UnetFuser.Fuse(unfused, new UnetFusionOptions(FusedAttentionForm.PackedInput, BiasOps: true));
        Assert.That((fused.BiasSplitGelus, fused.BiasAdds), Is.EqualTo((6, 18)), "GEGLU per block; to_out.0 x2 and ff.net.2 per block");
        var model = fused.Model;
        Assert.That(model.Graph.Node.Count(n => n.OpType == "BiasSplitGelu" && n.Domain == UnetFuser.MsDomain), Is.EqualTo(6));
        Assert.That(model.Graph.Node.Any(n => n.Name.EndsWith("/ff/net.0/Erf", StringComparison.Ordinal)), Is.False);

        var layers = AdaptableLayerFinder.FindAll(model);
        Assert.That(layers.Select(l => l.ModulePath).Order(StringComparer.Ordinal), Is.EqualTo(AdaptableLayerFinder.FindAll(unfused).Select(l => l.ModulePath).Order(StringComparer.Ordinal)));
        var ff = layers.Single(l => l.ModulePath == "mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj");
        Assert.That(ff.OutputName, Is.EqualTo(ff.NodeName + "_output_0"), "the delta goes on the bias-less MatMul output feeding BiasSplitGelu");

        var c = MembraneFixtures.LoadCase("all-layers");
        var inputs = MembraneFixtures.ToOrt(c.Inputs);
        try
        {
            float[] Run(ModelProto proto, Dictionary<string, OrtValue>? extra = null)
            {
                using var session = InjectedUnet.OpenSession(PackedAttentionLowering.ForCpu(proto), model.BaseDirectory);
                var feeds = new Dictionary<string, OrtValue>(inputs);
                if (extra is not null) foreach (var kv in extra) feeds[kv.Key] = kv.Value;
                using var outs = session.Run(new RunOptions(), feeds.Keys.ToList(), feeds.Values.ToList(), ["out_sample"]);
                return MembraneFixtures.Output(outs);
            }
            double baseRel = MembraneFixtures.RelError(Run(model.Proto), c.ExpectedBase.Data);
            var layout = MembraneLayout.Create(layers, [MembraneSetLoader.Load(Path.Combine(TestPaths.Reference("all-layers"), "spm.safetensors"), layers)]);
            var tensors = MembraneTensors.Build(layout);
            var extra = tensors.Inputs.ToDictionary(kv => kv.Key, kv => OrtValue.CreateTensorValueFromMemory(kv.Value.Data, kv.Value.Shape.Select(d => (long)d).ToArray()));
            var gates = tensors.Gates(c.Inputs["sample"].Shape[0], [c.Multiplier]);
            extra[MembraneNames.Gates] = OrtValue.CreateTensorValueFromMemory(gates.Data, gates.Shape.Select(d => (long)d).ToArray());
            double injectedRel;
            try { injectedRel = MembraneFixtures.RelError(Run(MembraneInjector.Inject(model.Proto, layout), extra), c.Expected.Data); }
            finally { foreach (var v in extra.Values) v.Dispose(); }
            double bakedRel = MembraneFixtures.RelError(Run(MembraneBaker.Bake(model, layout, [c.Multiplier], BakeMode.Merge).Proto), c.Expected.Data);
            TestContext.Out.WriteLine($"optimizer form with bias ops vs PyTorch: base {baseRel:E3}, injected {injectedRel:E3}, baked {bakedRel:E3}");
            Assert.That(baseRel, Is.LessThan(1e-4));
            Assert.That(injectedRel, Is.LessThan(1e-4));
            Assert.That(bakedRel, Is.LessThan(1e-4));
        }
        finally
        {
            foreach (var v in inputs.Values) v.Dispose();
        }
    }
}

/// <summary>Fused graphs the finder cannot see through: every refusal names the node and the pattern.</summary>
[TestFixture]
public sealed class FusedGraphErrorTests
{
    private static OnnxModel Fused() =>
        UnetFuser.Fuse(OnnxModel.Load(MembraneFixtures.UnetFolder), new UnetFusionOptions(FusedAttentionForm.PackedInput)).Model;

    [Test]
    public void AttentionOpWithWeightsInside_IsRefused_NamingNodeAndPattern()
    {
        var model = Fused();
        var node = new NodeProto { Name = "Attention_7", OpType = "Attention", Domain = UnetFuser.MsDomain };
        node.Input.Add("x"); node.Output.Add("y");
        model.Graph.Node.Add(node);
        var ex = Assert.Throws<SpmFormatException>(() => AdaptableLayerFinder.FindAll(model))!;
        Assert.That(ex.Message, Does.Contain("'Attention_7'").And.Contain("com.microsoft.Attention").And.Contain("packed QKV"));
    }

    [Test]
    public void NhwcConv_IsRefused_NamingNodeAndPattern()
    {
        var model = Fused();
        var node = new NodeProto { Name = "NhwcConv_3", OpType = "NhwcConv", Domain = UnetFuser.MsDomain };
        node.Input.Add("x"); node.Input.Add("w"); node.Output.Add("y");
        model.Graph.Node.Add(node);
        var ex = Assert.Throws<SpmFormatException>(() => AdaptableLayerFinder.FindAll(model))!;
        Assert.That(ex.Message, Does.Contain("'NhwcConv_3'").And.Contain("channels-last"));
    }

    [Test]
    public void PackedReshapeOfAnotherShape_IsRefused_NamingNodeAndPattern()
    {
        var model = Fused();
        // Make the first QKV pack reshape to [0, 0, N, H, 3] (head-major order the optimizer never writes).
        var shape = model.Graph.Initializer.Single(t => t.Name == "MatMul_QKV_0_reshape_shape");
        shape.Int64Data[3] = 8; shape.Int64Data[4] = 3;
        var ex = Assert.Throws<SpmFormatException>(() => AdaptableLayerFinder.FindAll(model))!;
        Assert.That(ex.Message, Does.Contain("'MultiHeadAttention_0'").And.Contain("MatMul_QKV_0_reshape").And.Contain("[0, 0, N, 3, H]").And.Contain("packed QKV"));
    }

    [Test]
    public void PackedInputFromAGraphInput_IsRefused_NamingNodeAndPattern()
    {
        var model = Fused();
        var mha = model.Graph.Node.Single(n => n.Name == "MultiHeadAttention_1");
        mha.Input[1] = "encoder_hidden_states";
        var ex = Assert.Throws<SpmFormatException>(() => AdaptableLayerFinder.FindAll(model))!;
        Assert.That(ex.Message, Does.Contain("'MultiHeadAttention_1'").And.Contain("packed KV").And.Contain("a graph input"));
    }
}
