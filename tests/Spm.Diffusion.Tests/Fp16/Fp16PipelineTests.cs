using Microsoft.ML.OnnxRuntime;
using Spm.Core.Gating;
using Spm.Core.Tensors;
using Spm.Diffusion.Membranes;
using Spm.Diffusion.Onnx;
using Spm.Diffusion.Onnx.Fp16;
using Spm.Diffusion.Pipelines;
using Spm.Diffusion.Runtime;
using Spm.Tests.Common;
using DataType = Spm.Diffusion.Onnx.Proto.TensorProto.Types.DataType;

namespace Spm.Diffusion.Tests.Fp16;

/// <summary>
/// A whole-pipeline fp16 export of the shared fixture (text encoder, UNet, VAE decoder, by <see cref="Fp16PipelineConverter"/>):
/// it generates like the fp32 pipeline from the same initial latents, with and without an SPM, and bakes into fp16.
/// </summary>
[TestFixture]
public sealed class Fp16PipelineTests
{
    private string _temp = null!;
    private string _half = null!;
    private static string AllLayersSpm => Path.Combine(TestPaths.Reference("all-layers"), "spm.safetensors");

    [OneTimeSetUp]
    public void SetUp()
    {
        _temp = TestPaths.NewTempDir("spm-fp16");
        _half = Path.Combine(_temp, "tiny-sd1-fp16");
        var result = Fp16PipelineConverter.Convert(TestPaths.TinySd1, _half);
        Assert.That(result.Components, Is.EqualTo(new[] { "text_encoder", "unet", "vae_decoder" }));
    }

    [OneTimeTearDown]
    public void TearDown()
    {
        try { Directory.Delete(_temp, true); } catch (IOException) { }
    }

    [TestCase("text_encoder")]
    [TestCase("unet")]
    [TestCase("vae_decoder")]
    public void EveryComponent_IsFp16_WeightsAndFloatIo(string component)
    {
        var model = OnnxModel.Load(_half, component);
        Assert.That(Fp16Converter.IsHalf(model), Is.True);
        Assert.That(model.Graph.Initializer.Any(t => t.DataType == (int)DataType.Float), Is.False, "no fp32 initializer is left");
        Assert.That(model.Inputs.Concat(model.Outputs).Select(v => v.ElementType), Has.None.EqualTo("float"));
        Assert.That(model.ExternalDataFiles, Is.EqualTo(new[] { "model.onnx_data" }), "saved as optimum does: model.onnx + model.onnx_data");
        long fp32Bytes = OnnxModel.Load(TestPaths.TinySd1, component).DescribeInitializers().Where(i => i.DataType == (int)DataType.Float).Sum(i => i.ByteLength);
        long fp16Bytes = model.DescribeInitializers().Where(i => i.DataType == (int)DataType.Float16).Sum(i => i.ByteLength);
        Assert.That(fp16Bytes * 2, Is.EqualTo(fp32Bytes));
    }

    // The plain fp16 run from the test's latents is needed by both cases below: generated once for the fixture.
    private readonly Dictionary<(string Folder, bool WithSpm, string Init), GenerationResult> _generated = [];

    private async Task<GenerationResult> GenerateOnce(string folder, bool withSpm, FloatTensor init)
    {
        var key = (folder, withSpm, Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(init.Data.AsSpan()))));
        if (!_generated.TryGetValue(key, out var result)) _generated[key] = result = await Generate(folder, withSpm, init);
        return result;
    }

    private static async Task<GenerationResult> Generate(string folder, bool withSpm, FloatTensor init)
    {
        var spms = withSpm ? LoadedSpms.Load(folder, [AllLayersSpm]) : null;
        // Disposed here: a pipeline left to the finalizer releases its ONNX Runtime sessions on the GC thread while
        // other fixtures create sessions.
        using var pipeline = StableDiffusionPipeline.Load(folder, new PipelineOptions
        {
            Runtime = new OnnxRuntimeOptions { IntraOpThreads = 1 },
            UNetSource = spms?.UNetSource,
        });
        return await pipeline.GenerateAsync(new GenerationRequest
        {
            Prompt = "a photo of a cat",
            Steps = 8,
            Seed = 1,
            Scheduler = "ddim",
            InitLatents = init,
            Conditioner = spms?.CreateConditioner(pipeline, [new GateSettings(FixedMultiplier: 1f)]),
        });
    }

    /// <summary>
    /// Same initial latents, 8 DDIM steps, guidance 7.5: the fp16 pipeline's image (values in [0, 1]) is within 1e-2 of
    /// the fp32 pipeline's, and its final latents within 1e-2 relative to their largest magnitude, with and without the SPM.
    /// </summary>
    [TestCase(false)]
    [TestCase(true)]
    [Category(TestCategories.Slow)]
    public async Task WholeFp16Pipeline_GeneratesLikeFp32_FromTheSameLatents(bool withSpm)
    {
        var rng = new Random(5);
        var init = new FloatTensor([1, 4, 16, 16], Enumerable.Range(0, 1024).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray());
        var full = await Generate(TestPaths.TinySd1, withSpm, init);
        var half = await GenerateOnce(_half, withSpm, init);

        double latentMax = full.Latents.Data.Max(v => Math.Abs(v)), latentDiff = 0;
        for (int i = 0; i < full.Latents.Length; i++) latentDiff = Math.Max(latentDiff, Math.Abs(full.Latents.Data[i] - half.Latents.Data[i]));
        double imageDiff = full.Images[0].Rgb.Zip(half.Images[0].Rgb).Max(p => Math.Abs(p.First - p.Second)) / 255.0;
        TestContext.Out.WriteLine($"spm={withSpm}: latents max abs diff {latentDiff:E3} of max {latentMax:F2} (rel {latentDiff / latentMax:E3}); image max diff {imageDiff:E3}");
        Assert.That(latentDiff / latentMax, Is.LessThan(1e-2));
        Assert.That(imageDiff, Is.LessThan(1e-2));
        if (withSpm)
        {
            var plain = await GenerateOnce(_half, false, init);
            Assert.That(plain.Latents.Data, Is.Not.EqualTo(half.Latents.Data), "the SPM acts in the fp16 pipeline");
        }
    }

    /// <summary>Both export forms at once: the fp16 UNet fused like the optimizer does (packed fp16 weights), with an SPM injected.</summary>
    [Test]
    [Category(TestCategories.Slow)]
    public void FusedFp16Unet_WithAnSpm_MatchesTheUnfusedFp16Unet()
    {
        var half = OnnxModel.Load(_half);
        var fused = Spm.Diffusion.Onnx.Fused.UnetFuser.Fuse(half).Model;
        Assert.That(fused.Graph.Initializer.Where(t => t.Name.StartsWith("MatMul_QKV_", StringComparison.Ordinal) && t.Dims.Count == 2).Select(t => t.DataType),
            Is.All.EqualTo((int)DataType.Float16), "packed weights keep fp16");
        var c = Membranes.MembraneFixtures.LoadCase("all-layers");
        float[] Run(OnnxModel model)
        {
            var layers = AdaptableLayerFinder.FindAll(model);
            var layout = MembraneLayout.Create(layers, [MembraneSetLoader.Load(AllLayersSpm, layers)]);
            var tensors = MembraneTensors.Build(layout);
            using var session = OnnxModel.FromProto(MembraneInjector.Inject(model.Proto, layout), model.BaseDirectory).CreateSession();
            var feeds = c.Inputs.ToDictionary(kv => kv.Key, kv => OrtValue.CreateTensorValueFromMemory(kv.Value.Data.Select(v => (Float16)v).ToArray(), kv.Value.Shape.Select(d => (long)d).ToArray()));
            foreach (var kv in tensors.Inputs) feeds[kv.Key] = OrtValue.CreateTensorValueFromMemory(kv.Value.Data, kv.Value.Shape.Select(d => (long)d).ToArray());
            var gates = tensors.Gates(c.Inputs["sample"].Shape[0], [c.Multiplier]);
            feeds[MembraneNames.Gates] = OrtValue.CreateTensorValueFromMemory(gates.Data, gates.Shape.Select(d => (long)d).ToArray());
            try
            {
                using var outs = session.Run(new RunOptions(), feeds.Keys.ToList(), feeds.Values.ToList(), ["out_sample"]);
                return outs[0].GetTensorDataAsSpan<Float16>().ToArray().Select(h => (float)h).ToArray();
            }
            finally { foreach (var v in feeds.Values) v.Dispose(); }
        }
        var plain = Run(half);
        var packed = Run(fused);
        double scale = plain.Max(Math.Abs), diff = plain.Zip(packed).Max(p => Math.Abs(p.First - p.Second));
        double vsReference = Membranes.MembraneFixtures.RelError(packed, c.Expected.Data);
        TestContext.Out.WriteLine($"fused fp16 vs unfused fp16, SPM at {c.Multiplier}: max abs diff {diff:E3} (outputs up to {scale:F3}); vs PyTorch fp32 reference rel {vsReference:E3}");
        Assert.That(diff / scale, Is.LessThan(1e-2));
        Assert.That(vsReference, Is.LessThan(1e-2));
    }

    /// <summary>
    /// The branch precision in fp16 graphs, measured: the membrane's effect on the fp16 UNet's output (gate 0.8 minus
    /// gate 0) against its effect on the fp32 UNet, with the branch in fp32 (what the injector does) and with the same
    /// branch computed in fp16 (membrane tensors, gates and the branch's activations in fp16).
    /// </summary>
    [Test]
    [Category(TestCategories.Slow)]
    public void BranchPrecision_Fp32BranchInFp16Graph_IsMeasuredAgainstFp32()
    {
        var c = Membranes.MembraneFixtures.LoadCase("all-layers");
        float[] Effect(OnnxModel model, bool half, bool halfBranch)
        {
            var layers = AdaptableLayerFinder.FindAll(model);
            var layout = MembraneLayout.Create(layers, [MembraneSetLoader.Load(AllLayersSpm, layers)]);
            var proto = MembraneInjector.Inject(model.Proto, layout);
            if (halfBranch)
            {
                foreach (var i in proto.Graph.Input.Where(i => MembraneNames.IsMembraneInput(i.Name))) i.Type.TensorType.ElemType = (int)DataType.Float16;
                foreach (var n in proto.Graph.Node.Where(n => n.Name.EndsWith("/CastIn", StringComparison.Ordinal) || n.Name.EndsWith("/CastOut", StringComparison.Ordinal)))
                    n.Attribute.Single(a => a.Name == "to").I = (long)DataType.Float16;
            }
            var tensors = MembraneTensors.Build(layout);
            using var session = OnnxModel.FromProto(proto, model.BaseDirectory).CreateSession();
            OrtValue Value(FloatTensor t, bool h) => h
                ? OrtValue.CreateTensorValueFromMemory(t.Data.Select(v => (Float16)v).ToArray(), t.Shape.Select(d => (long)d).ToArray())
                : OrtValue.CreateTensorValueFromMemory(t.Data, t.Shape.Select(d => (long)d).ToArray());
            float[] Run(float gate)
            {
                var feeds = c.Inputs.ToDictionary(kv => kv.Key, kv => Value(kv.Value, half));
                foreach (var kv in tensors.Inputs) feeds[kv.Key] = Value(kv.Value, halfBranch);
                feeds[MembraneNames.Gates] = Value(tensors.Gates(c.Inputs["sample"].Shape[0], [gate]), halfBranch);
                try
                {
                    using var outs = session.Run(new RunOptions(), feeds.Keys.ToList(), feeds.Values.ToList(), ["out_sample"]);
                    return half ? outs[0].GetTensorDataAsSpan<Float16>().ToArray().Select(h => (float)h).ToArray() : outs[0].GetTensorDataAsSpan<float>().ToArray();
                }
                finally { foreach (var v in feeds.Values) v.Dispose(); }
            }
            var on = Run(0.8f);
            var off = Run(0f);
            return on.Zip(off, (a, b) => a - b).ToArray();
        }
        var reference = Effect(OnnxModel.Load(TestPaths.TinySd1), false, false);
        var halfModel = OnnxModel.Load(_half);
        var fp32Branch = Effect(halfModel, true, false);
        var fp16Branch = Effect(halfModel, true, true);
        double scale = reference.Max(Math.Abs);
        double Rel(float[] e) => e.Zip(reference, (a, b) => Math.Abs(a - b)).Max() / scale;
        TestContext.Out.WriteLine($"membrane effect (up to {scale:E3}) in the fp16 UNet vs the fp32 UNet's: fp32 branch {Rel(fp32Branch):E3}, fp16 branch {Rel(fp16Branch):E3}");
        Assert.That(Rel(fp32Branch), Is.LessThan(5e-2), "the fp16 graph keeps the membrane's effect");
        Assert.That(Rel(fp32Branch), Is.LessThanOrEqualTo(Rel(fp16Branch)), "the fp32 branch is at least as close to fp32 as an fp16 branch");
    }

    /// <summary>
    /// <c>spm bake</c> on the fp16 pipeline writes an fp16 UNet whose output matches the injected fp16 UNet at the same
    /// multiplier within fp16 tolerance (1e-2 of the output's magnitude; merged weights are rounded to fp16 once).
    /// </summary>
    [Test]
    [Category(TestCategories.Slow)]
    public void BakeOnFp16_WritesFp16_AndReproducesTheInjectedOutput()
    {
        var outDir = Path.Combine(_temp, "baked");
        var result = BakeJob.Run(new BakeRequest(_half, [AllLayersSpm], [0.8f], BakeMode.Merge, outDir));
        var baked = OnnxModel.Load(result.ModelFile);
        Assert.That(baked.Graph.Initializer.Any(t => t.DataType == (int)DataType.Float && t.Dims.Count >= 2), Is.False, "the baked UNet stays fp16");
        var changed = baked.DescribeInitializers().Where(i => i.External?.Location == MembraneBaker.BakedDataFileName).ToList();
        Assert.That(changed, Is.Not.Empty);
        Assert.That(changed.Select(i => i.DataTypeName), Is.All.EqualTo("FLOAT16"));

        var rng = new Random(2);
        Half[] R(int n, double scale) => Enumerable.Range(0, n).Select(_ => (Half)((rng.NextDouble() * 2 - 1) * scale)).ToArray();
        var feeds = new Dictionary<string, OrtValue>
        {
            ["sample"] = OrtValue.CreateTensorValueFromMemory(R(2 * 4 * 16 * 16, 1).Select(h => (Float16)(float)h).ToArray(), [2, 4, 16, 16]),
            ["timestep"] = OrtValue.CreateTensorValueFromMemory(new[] { (Float16)10f, (Float16)500f }, [2]),
            ["encoder_hidden_states"] = OrtValue.CreateTensorValueFromMemory(R(2 * 77 * 32, 1).Select(h => (Float16)(float)h).ToArray(), [2, 77, 32]),
        };
        try
        {
            float[] RunModel(OnnxModel m, Dictionary<string, OrtValue>? extra = null)
            {
                using var session = m.CreateSession();
                var all = new Dictionary<string, OrtValue>(feeds);
                if (extra is not null) foreach (var kv in extra) all[kv.Key] = kv.Value;
                using var outs = session.Run(new RunOptions(), all.Keys.ToList(), all.Values.ToList(), ["out_sample"]);
                return outs[0].GetTensorDataAsSpan<Float16>().ToArray().Select(h => (float)h).ToArray();
            }
            var unet = OnnxModel.Load(_half);
            var layers = AdaptableLayerFinder.FindAll(unet);
            var layout = MembraneLayout.Create(layers, [MembraneSetLoader.Load(AllLayersSpm, layers)]);
            var injected = OnnxModel.FromProto(MembraneInjector.Inject(unet.Proto, layout), unet.BaseDirectory);
            var tensors = MembraneTensors.Build(layout);
            var extra = tensors.Inputs.ToDictionary(kv => kv.Key, kv => OrtValue.CreateTensorValueFromMemory(kv.Value.Data, kv.Value.Shape.Select(d => (long)d).ToArray()));
            var gates = tensors.Gates(2, [0.8f]);
            extra[MembraneNames.Gates] = OrtValue.CreateTensorValueFromMemory(gates.Data, gates.Shape.Select(d => (long)d).ToArray());
            float[] expected;
            try { expected = RunModel(injected, extra); }
            finally { foreach (var v in extra.Values) v.Dispose(); }
            var plain = RunModel(unet);
            var actual = RunModel(baked);
            double scale = expected.Max(Math.Abs);
            double diff = expected.Zip(actual).Max(p => Math.Abs(p.First - p.Second));
            double effect = expected.Zip(plain).Max(p => Math.Abs(p.First - p.Second));
            TestContext.Out.WriteLine($"fp16 baked vs injected: max abs diff {diff:E3} (outputs up to {scale:F3}; membrane effect {effect:E3})");
            Assert.That(effect, Is.GreaterThan(1e-2), "the SPM changes the fp16 output");
            Assert.That(diff / scale, Is.LessThan(1e-2));
            Assert.That(diff, Is.LessThan(effect / 5), "the bake reproduces the membrane's effect, not just the base model");
        }
        finally
        {
            foreach (var v in feeds.Values) v.Dispose();
        }
    }
}
