using Spm.Diffusion.Onnx.Proto;

namespace Spm.Diffusion.Onnx;

/// <summary>
/// Small graph parts for graph surgery (membrane injection, the training loss, tests): nodes, int64 constant
/// tensors and tensor value infos. Attributes: <see cref="OnnxAttributes"/>.
/// </summary>
public static class OnnxNodes
{
    /// <summary>A node of <paramref name="op"/> (default domain) named <paramref name="name"/>.</summary>
    public static NodeProto Node(string op, string name, string[] inputs, string[] outputs, params AttributeProto[] attrs)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        ArgumentNullException.ThrowIfNull(outputs);
        var n = new NodeProto { OpType = op, Name = name };
        n.Input.AddRange(inputs);
        n.Output.AddRange(outputs);
        n.Attribute.AddRange(attrs);
        return n;
    }

    /// <summary>A 1-D int64 tensor (axes, shapes) for an initializer or a Constant.</summary>
    public static TensorProto Int64Tensor(string name, long[] values)
    {
        ArgumentNullException.ThrowIfNull(values);
        var t = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Int64 };
        t.Dims.Add(values.Length);
        t.Int64Data.AddRange(values);
        return t;
    }

    /// <summary>A tensor value info of ONNX element type <paramref name="elemType"/> with the given dimensions.</summary>
    public static ValueInfoProto TensorValueInfo(string name, int elemType, IEnumerable<TensorShapeProto.Types.Dimension> dims)
    {
        ArgumentNullException.ThrowIfNull(dims);
        var shape = new TensorShapeProto();
        shape.Dim.AddRange(dims);
        return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = elemType, Shape = shape } } };
    }

    /// <summary>A symbolic dimension (e.g. the batch).</summary>
    public static TensorShapeProto.Types.Dimension Symbolic(string name) => new() { DimParam = name };

    /// <summary>A fixed dimension.</summary>
    public static TensorShapeProto.Types.Dimension Fixed(long value) => new() { DimValue = value };
}
