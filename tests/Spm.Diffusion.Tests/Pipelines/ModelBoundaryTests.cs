using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Spm.Core.Tensors;
using Spm.Diffusion.Onnx.Proto;
using Spm.Diffusion.Pipelines;
using Spm.Diffusion.Runtime;
using DT = Spm.Diffusion.Onnx.Proto.TensorProto.Types.DataType;

namespace Spm.Diffusion.Tests.Pipelines;

/// <summary>
/// Exporter variants at the UNet boundary, on small synthetic graphs: float16 tensors, int64/int32/float timesteps,
/// [B] or scalar. Each graph computes out = 0.5·sample + t + mean(encoder_hidden_states) in float32 internally.
/// </summary>
[TestFixture]
public class ModelBoundaryTests
{
    private static ValueInfoProto Io(string name, DT type, params object[] dims)
    {
        var shape = new TensorShapeProto();
        foreach (var d in dims)
            shape.Dim.Add(d is string s ? new TensorShapeProto.Types.Dimension { DimParam = s } : new TensorShapeProto.Types.Dimension { DimValue = (int)d });
        return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)type, Shape = shape } } };
    }

    private static NodeProto Cast(string input, string output, DT to) => new()
    {
        OpType = "Cast", Input = { input }, Output = { output },
        Attribute = { new AttributeProto { Name = "to", Type = AttributeProto.Types.AttributeType.Int, I = (long)to } },
    };

    private static byte[] SyntheticUNet(DT floatType, DT timestepType, bool timestepVector)
    {
        var g = new GraphProto { Name = "synthetic-unet" };
        g.Input.Add(Io("sample", floatType, "batch", 4, "h", "w"));
        g.Input.Add(timestepVector ? Io("timestep", timestepType, "batch") : Io("timestep", timestepType));
        g.Input.Add(Io("encoder_hidden_states", floatType, "batch", 77, 32));
        g.Output.Add(Io("out_sample", floatType, "batch", 4, "h", "w"));
        g.Initializer.Add(new TensorProto { Name = "half", DataType = (int)DT.Float, FloatData = { 0.5f } });
        var shape = new TensorProto { Name = "shape4", DataType = (int)DT.Int64, Dims = { 4 } };
        shape.Int64Data.AddRange([-1, 1, 1, 1]);
        g.Initializer.Add(shape);
        g.Node.Add(Cast("sample", "s32", DT.Float));
        g.Node.Add(Cast("timestep", "t32", DT.Float));
        g.Node.Add(Cast("encoder_hidden_states", "e32", DT.Float));
        g.Node.Add(new NodeProto { OpType = "ReduceMean", Input = { "e32" }, Output = { "emean" }, Attribute = { new AttributeProto { Name = "keepdims", Type = AttributeProto.Types.AttributeType.Int, I = 0 } } });
        if (timestepVector) g.Node.Add(new NodeProto { OpType = "Reshape", Input = { "t32", "shape4" }, Output = { "t4" } });
        g.Node.Add(new NodeProto { OpType = "Mul", Input = { "s32", "half" }, Output = { "m" } });
        g.Node.Add(new NodeProto { OpType = "Add", Input = { "m", timestepVector ? "t4" : "t32" }, Output = { "a" } });
        g.Node.Add(new NodeProto { OpType = "Add", Input = { "a", "emean" }, Output = { "o32" } });
        g.Node.Add(Cast("o32", "out_sample", floatType));
        var model = new ModelProto { IrVersion = 7, Graph = g, ProducerName = "spm-tests" };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 14 });
        return model.ToByteArray();
    }

    [TestCase(DT.Float16, DT.Int64, true)]
    [TestCase(DT.Float, DT.Float, false)]
    [TestCase(DT.Float, DT.Int32, true)]
    [TestCase(DT.Float16, DT.Float16, true)]
    [TestCase(DT.Double, DT.Double, false)]
    public void UNetBoundary_ConvertsToTheDeclaredTypes(DT floatType, DT timestepType, bool timestepVector)
    {
        var created = OnnxSessionFactory.Create(OnnxModelSource.FromBytes(SyntheticUNet(floatType, timestepType, timestepVector), null, "synthetic"), new OnnxRuntimeOptions());
        using var unet = new UNetModel(created, "synthetic");
        Assert.That(unet.TimestepInput.Rank, Is.EqualTo(timestepVector ? 1 : 0));
        var sample = new FloatTensor(2, 4, 3, 5);
        for (int i = 0; i < sample.Length; i++) sample.Data[i] = (i % 17) * 0.25f - 2f;
        var hidden = new FloatTensor(2, 77, 32);
        Array.Fill(hidden.Data, 0.125f);
        double tol = floatType == DT.Float16 ? 0.06 : 1e-5; // fp16 spacing at ~600 is 0.5, but t is integral; the mean and 0.5·x are exact-ish

        foreach (bool binding in new[] { false, true })
        {
            using var ro = new RunOptions();
            using var runner = unet.OpenRunner(hidden, null, 2, 3, 5, binding, ro);
            foreach (double t in new[] { 981.0, 1.0 })
            {
                sample.Span.CopyTo(runner.Input);
                runner.Run(t);
                double tExpected = timestepType == DT.Float16 ? (double)(Half)t : t;
                for (int i = 0; i < sample.Length; i++)
                {
                    double expected = 0.5 * sample.Data[i] + tExpected + 0.125;
                    double expectedRounded = floatType == DT.Float16 ? (double)(Half)expected : expected;
                    Assert.That(runner.Output[i], Is.EqualTo(expectedRounded).Within(tol), $"binding={binding} t={t} i={i}");
                }
            }
        }
    }

    [Test]
    public void UNetPredict_WrapsTheRunner()
    {
        var created = OnnxSessionFactory.Create(OnnxModelSource.FromBytes(SyntheticUNet(DT.Float, DT.Int64, true), null, "synthetic"), new OnnxRuntimeOptions());
        using var unet = new UNetModel(created, "synthetic");
        var sample = new FloatTensor(1, 4, 2, 2);
        Array.Fill(sample.Data, 2f);
        var y = unet.Predict(sample, 10, new FloatTensor(1, 77, 32));
        Assert.That(y.Shape, Is.EqualTo(new[] { 1, 4, 2, 2 }));
        Assert.That(y.Data, Is.All.EqualTo(11f));
        Assert.That(sample.Data, Is.All.EqualTo(2f));
    }
}
