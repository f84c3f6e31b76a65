using Google.Protobuf;
using Spm.Diffusion.Onnx.Proto;

namespace Spm.Diffusion.Onnx;

/// <summary>
/// Reading and making ONNX node attributes: the one implementation (the generated protobuf API is verbose), used by
/// the model builders (<c>Spm.Shapes.Building.Attr</c> forwards to it), graph surgery and the gradient rules.
/// </summary>
public static class OnnxAttributes
{
    /// <summary>The attribute named <paramref name="name"/> of <paramref name="node"/>, or null.</summary>
    public static AttributeProto? Find(NodeProto node, string name)
    {
        ArgumentNullException.ThrowIfNull(node);
        foreach (var a in node.Attribute)
            if (a.Name == name) return a;
        return null;
    }

    /// <summary>An int attribute's value, or <paramref name="fallback"/> when absent.</summary>
    public static long GetInt(NodeProto node, string name, long fallback)
        => Find(node, name) is { } a ? a.I : fallback;

    /// <summary>A float attribute's value, or <paramref name="fallback"/> when absent.</summary>
    public static float GetFloat(NodeProto node, string name, float fallback)
        => Find(node, name) is { } a ? a.F : fallback;

    /// <summary>A string attribute's value (UTF-8), or <paramref name="fallback"/> when absent.</summary>
    public static string GetString(NodeProto node, string name, string fallback)
        => Find(node, name) is { } a ? a.S.ToStringUtf8() : fallback;

    /// <summary>An ints attribute's values, or null when absent.</summary>
    public static long[]? GetInts(NodeProto node, string name)
        => Find(node, name) is { } a ? a.Ints.ToArray() : null;

    /// <summary>An int attribute.</summary>
    public static AttributeProto Int(string name, long value)
        => new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };

    /// <summary>A float attribute.</summary>
    public static AttributeProto Float(string name, float value)
        => new() { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = value };

    /// <summary>A string attribute (UTF-8).</summary>
    public static AttributeProto String(string name, string value)
        => new() { Name = name, Type = AttributeProto.Types.AttributeType.String, S = ByteString.CopyFromUtf8(value) };

    /// <summary>An ints attribute.</summary>
    public static AttributeProto Ints(string name, IEnumerable<long> values)
    {
        ArgumentNullException.ThrowIfNull(values);
        var a = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        a.Ints.AddRange(values);
        return a;
    }

    /// <summary>A tensor attribute.</summary>
    public static AttributeProto Tensor(string name, TensorProto value)
        => new() { Name = name, Type = AttributeProto.Types.AttributeType.Tensor, T = value };
}
