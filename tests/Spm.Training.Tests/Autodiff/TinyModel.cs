using Google.Protobuf;
using Spm.Diffusion.Onnx.Proto;

namespace Spm.Training.Tests.Autodiff;

/// <summary>Builds small ONNX models in code for gradient checks.</summary>
internal sealed class TinyModel
{
    public const int F32 = 1, F64 = 11, I64 = 7, I32 = 6;
    private readonly ModelProto _model;
    private GraphProto Graph => _model.Graph;

    public TinyModel(int opset = 17)
    {
        _model = new ModelProto { IrVersion = 8, Graph = new GraphProto { Name = "tiny" } };
        _model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = opset });
    }

    public TinyModel Input(string name, int elemType, params long[] dims)
    {
        var shape = new TensorShapeProto();
        foreach (var d in dims) shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = d });
        Graph.Input.Add(new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = elemType, Shape = shape } },
        });
        return this;
    }

    public TinyModel Ints(string name, params long[] values) => Const(name, I64, [values.Length], values.Select(v => (double)v).ToArray());

    public TinyModel Scalar(string name, int elemType, double value) => Const(name, elemType, [], [value]);

    public TinyModel Const(string name, int elemType, long[] dims, double[] values)
    {
        var t = new TensorProto { Name = name, DataType = elemType };
        t.Dims.AddRange(dims);
        var bytes = elemType switch
        {
            F32 => values.SelectMany(v => BitConverter.GetBytes((float)v)).ToArray(),
            F64 => values.SelectMany(v => BitConverter.GetBytes(v)).ToArray(),
            I64 => values.SelectMany(v => BitConverter.GetBytes((long)v)).ToArray(),
            I32 => values.SelectMany(v => BitConverter.GetBytes((int)v)).ToArray(),
            _ => throw new ArgumentException("type"),
        };
        t.RawData = ByteString.CopyFrom(bytes);
        Graph.Initializer.Add(t);
        return this;
    }

    public TinyModel Node(string op, string[] inputs, string[] outputs, params AttributeProto[] attrs)
    {
        var n = new NodeProto { OpType = op, Name = $"{op}_{Graph.Node.Count}" };
        n.Input.AddRange(inputs);
        n.Output.AddRange(outputs);
        n.Attribute.AddRange(attrs);
        Graph.Node.Add(n);
        return this;
    }

    public TinyModel Node(string op, string[] inputs, string output, params AttributeProto[] attrs) => Node(op, inputs, [output], attrs);

    public TinyModel Output(string name)
    {
        Graph.Output.Add(new ValueInfoProto { Name = name });
        return this;
    }

    public ModelProto Build() => _model.Clone();

    public static AttributeProto I(string name, long v) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = v };
    public static AttributeProto F(string name, float v) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = v };
    public static AttributeProto S(string name, string v) => new() { Name = name, Type = AttributeProto.Types.AttributeType.String, S = ByteString.CopyFromUtf8(v) };
    public static AttributeProto Is(string name, params long[] v)
    {
        var a = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        a.Ints.AddRange(v);
        return a;
    }
}
