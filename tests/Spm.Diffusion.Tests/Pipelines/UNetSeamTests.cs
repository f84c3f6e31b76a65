using Google.Protobuf;
using Spm.Core;
using Spm.Core.Tensors;
using Spm.Diffusion.Onnx.Proto;
using Spm.Diffusion.Pipelines;
using Spm.Diffusion.Runtime;
using Spm.Tests.Common;

namespace Spm.Diffusion.Tests.Pipelines;

/// <summary>
/// The seam for membrane injection: a UNet modified in memory (weights still in the fixture's external data) with an
/// extra graph input, fed per batch by an <see cref="IUNetConditioner"/>.
/// </summary>
[TestFixture]
public class UNetSeamTests
{
    private const string ExtraName = "extra.gates";
    private static StableDiffusionPipeline? _injected;

    /// <summary>out_sample' = out_sample + gates[b] broadcast over [C,h,w]: an extra input [B,1,1,1] per batch row.</summary>
    private static OnnxModelSource ModifiedUNet()
    {
        var unetDir = Path.Combine(TestPaths.TinySd1, "unet");
        var model = ModelProto.Parser.ParseFrom(File.ReadAllBytes(Path.Combine(unetDir, "model.onnx")));
        var g = model.Graph;
        var output = g.Output[0];
        foreach (var node in g.Node)
            for (int i = 0; i < node.Output.Count; i++)
                if (node.Output[i] == output.Name) node.Output[i] = "raw_out_sample";
        var input = new ValueInfoProto { Name = ExtraName, Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float, Shape = new TensorShapeProto() } } };
        input.Type.TensorType.Shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimParam = "batch" });
        for (int i = 0; i < 3; i++) input.Type.TensorType.Shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = 1 });
        g.Input.Add(input);
        g.Node.Add(new NodeProto { Name = "extra_add", OpType = "Add", Input = { "raw_out_sample", ExtraName }, Output = { output.Name } });
        return OnnxModelSource.FromBytes(model.ToByteArray(), unetDir, "modified-unet");
    }

    private static StableDiffusionPipeline Injected => _injected ??= PipelineFixture.Load(threads: 1, unet: ModifiedUNet());

    [OneTimeTearDown]
    public void TearDown() => _injected?.Dispose();

    private sealed class Gates(float uncond, float cond) : IUNetConditioner
    {
        public UNetConditioning Prepare(UNetConditioningContext context)
        {
            var t = new FloatTensor(context.BatchRows, 1, 1, 1);
            for (int r = 0; r < context.BatchRows; r++) t.Data[r] = context.Rows[r] == GuidanceRow.Conditional ? cond : uncond;
            return new UNetConditioning(new Dictionary<string, FloatTensor> { [ExtraName] = t }, $"SPM: test gate {cond}");
        }
    }

    [Test]
    public void InMemoryUNet_ExposesItsExtraInput()
    {
        Assert.That(Injected.UNet.ExtraInputs.Select(e => e.Name), Is.EqualTo(new[] { ExtraName }));
        Assert.That(Injected.UNet.Name, Is.EqualTo("modified-unet"));
        Assert.That(PipelineFixture.Pipeline.UNet.ExtraInputs, Is.Empty);
    }

    [Test]
    public async Task ZeroExtraInput_ReproducesTheOriginalModel_AndValuesReachEachRow()
    {
        var r = PipelineFixture.Request(steps: 2) with { DecodeImages = false };
        var baseline = await PipelineFixture.Pipeline.GenerateAsync(r);
        var zero = await Injected.GenerateAsync(r with { Conditioner = new Gates(0, 0) });
        Assert.That(zero.Latents.Data, Is.EqualTo(baseline.Latents.Data));

        // One step by hand: an offset a on the uncond row and b on the cond row shifts the guided noise by a + g (b - a).
        var one = r with { Steps = 1 };
        var b0 = await PipelineFixture.Pipeline.GenerateAsync(one);
        var shifted = await Injected.GenerateAsync(one with { Conditioner = new Gates(0.5f, 0.25f) });
        var sched = new TestDdimScheduler(PipelineFixture.Pipeline.Folder.SchedulerConfig);
        sched.SetTimesteps(1);
        // DDIM to t=0 with eps' = eps + d: x' - x = d (sqrt(1-a_p) - sqrt(a_p) sqrt(1-a_t)/sqrt(a_t)).
        double at = AlphaCumprod(1), ap = AlphaCumprod(0);
        double d = 0.5 + 7.5 * (0.25 - 0.5);
        double expected = d * (Math.Sqrt(1 - ap) - Math.Sqrt(ap) * Math.Sqrt(1 - at) / Math.Sqrt(at));
        for (int i = 0; i < 50; i++)
            Assert.That(shifted.Latents.Data[i] - b0.Latents.Data[i], Is.EqualTo(expected).Within(1e-4));
        Assert.That(shifted.Images[0].Parameters, Does.EndWith(", SPM: test gate 0.25"));
    }

    [Test]
    public void MissingExtraInput_IsAClearMismatch()
    {
        var r = PipelineFixture.Request(steps: 1) with { DecodeImages = false };
        Assert.That(async () => await Injected.GenerateAsync(r),
            Throws.TypeOf<SpmMismatchException>().With.Message.Contains(ExtraName).And.Property("Layer").EqualTo(ExtraName));
        var wrong = new WrongShape();
        Assert.That(async () => await Injected.GenerateAsync(r with { Conditioner = wrong }),
            Throws.TypeOf<SpmMismatchException>().With.Message.Contains("[?,1,1,1]"));
        Assert.That(async () => await PipelineFixture.Pipeline.GenerateAsync(r with { Conditioner = new Gates(0, 0) }),
            Throws.TypeOf<SpmMismatchException>().With.Message.Contains("has no input 'extra.gates'"));
    }

    private sealed class WrongShape : IUNetConditioner
    {
        public UNetConditioning Prepare(UNetConditioningContext context)
            => new(new Dictionary<string, FloatTensor> { [ExtraName] = new FloatTensor(context.BatchRows, 2, 1, 1) });
    }

    private static double AlphaCumprod(int t)
    {
        double prod = 1, s0 = Math.Sqrt(0.00085), s1 = Math.Sqrt(0.012);
        for (int i = 0; i <= t; i++)
        {
            double sb = s0 + (s1 - s0) * i / 999;
            prod *= 1 - sb * sb;
        }
        return prod;
    }
}
