using System.Runtime.InteropServices;
using Google.Protobuf;
using Spm.Core;
using Spm.Diffusion.Onnx.Proto;
using DataType = Spm.Diffusion.Onnx.Proto.TensorProto.Types.DataType;

namespace Spm.Diffusion.Onnx.Fp16;

/// <summary>
/// Converts a float32 ONNX model to float16 the way fp16 exports (optimum <c>--fp16</c>, Olive) look to a user: every
/// FLOAT initializer, Constant, ConstantOfShape value and Cast-to-FLOAT becomes FLOAT16, and so do the float graph
/// inputs and outputs; and back (<see cref="ToFp32"/>, what training uses).
/// </summary>
/// <remarks>
/// <para>Inputs that ONNX types as float only are fed through a Cast to FLOAT (Resize's roi and scales); ONNX Runtime
/// folds those at load. Values beyond fp16's range are clipped to ±65504 rather than becoming infinities, so masks
/// written as <c>finfo(float32).min</c> stay finite (an infinity times 0 would be NaN).</para>
/// <para>ONNX Runtime's CPU provider runs fp16 nodes it has no fp16 kernel for by inserting Casts around them, so the
/// converted model runs on CPU; on CUDA the nodes run in fp16.</para>
/// </remarks>
public static class Fp16Converter
{
    /// <summary>The largest finite fp16 value.</summary>
    public const float HalfMax = 65504f;

    /// <summary>Inputs that must stay FLOAT: (op type, input index).</summary>
    private static readonly HashSet<(string Op, int Input)> FloatOnlyInputs = [("Resize", 1), ("Resize", 2), ("Upsample", 1)];

    /// <summary>True when the model stores its weights in fp16: it has FLOAT16 initializers and no FLOAT initializer of 2 or more dimensions.</summary>
    public static bool IsHalf(OnnxModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        bool anyHalf = false;
        foreach (var t in model.Graph.Initializer)
        {
            if (t.DataType == (int)DataType.Float16) anyHalf = true;
            else if (t.DataType == (int)DataType.Float && t.Dims.Count >= 2) return false;
        }
        return anyHalf;
    }

    /// <summary>An fp16 copy of <paramref name="model"/> (initializers inline; save with external data for large models).</summary>
    /// <exception cref="SpmFormatException">An initializer cannot be read.</exception>
    public static ModelProto ToFp16(OnnxModel model) => Convert(model, DataType.Float, DataType.Float16);

    /// <summary>An fp32 copy of an fp16 <paramref name="model"/>: the inverse of <see cref="ToFp16"/> (the Casts it added to FLOAT stay, harmless).</summary>
    public static ModelProto ToFp32(OnnxModel model) => Convert(model, DataType.Float16, DataType.Float);

    /// <summary><see cref="ToFp32"/> as an <see cref="OnnxModel"/> reading nothing more from disk (every weight is inline).</summary>
    public static OnnxModel ToFp32Model(OnnxModel model) => OnnxModel.FromProto(ToFp32(model), model.BaseDirectory, model.FilePath);

    private static ModelProto Convert(OnnxModel model, DataType from, DataType to)
    {
        ArgumentNullException.ThrowIfNull(model);
        var proto = model.Proto.Clone();
        var g = proto.Graph;
        for (int i = 0; i < g.Initializer.Count; i++)
        {
            var t = g.Initializer[i];
            if (t.DataType != (int)from) continue;
            var values = model.ReadFloat(t.Name).Data;
            g.Initializer[i] = Tensor(t.Name, t.Dims, values, to);
        }
        foreach (var v in g.Input.Concat(g.Output))
            if (v.Type?.TensorType is { } tt && tt.ElemType == (int)from) tt.ElemType = (int)to;
        // Intermediate type annotations would contradict the new types; ONNX Runtime infers them again.
        g.ValueInfo.Clear();

        var nodes = new List<NodeProto>(g.Node.Count);
        int casts = 0;
        foreach (var node in g.Node)
        {
            switch (node.OpType)
            {
                case "Constant":
                    foreach (var a in node.Attribute)
                        if (a.Name == "value" && a.T is { } c && c.DataType == (int)from)
                            a.T = Tensor(c.Name, c.Dims, ReadInline(c, model.FilePath, node.Name), to);
                    break;
                case "ConstantOfShape":
                    foreach (var a in node.Attribute)
                        if (a.Name == "value" && a.T is { } c && c.DataType == (int)from)
                            a.T = Tensor(c.Name, c.Dims, ReadInline(c, model.FilePath, node.Name), to);
                    break;
                case "Cast":
                    foreach (var a in node.Attribute)
                        if (a.Name == "to" && a.I == (long)from) a.I = (long)to;
                    break;
                case "EyeLike" or "RandomNormal" or "RandomUniform" or "RandomNormalLike" or "RandomUniformLike":
                    foreach (var a in node.Attribute)
                        if (a.Name == "dtype" && a.I == (long)from) a.I = (long)to;
                    break;
            }
            if (to == DataType.Float16)
            {
                for (int i = 0; i < node.Input.Count; i++)
                {
                    if (node.Input[i].Length == 0 || !FloatOnlyInputs.Contains((node.OpType, i))) continue;
                    var cast = new NodeProto { OpType = "Cast", Name = $"{node.Name}/fp16_keep_float_{i}" };
                    cast.Input.Add(node.Input[i]);
                    cast.Output.Add($"{node.Name}/fp16_keep_float_{i}_{casts++}");
                    cast.Attribute.Add(new AttributeProto { Name = "to", Type = AttributeProto.Types.AttributeType.Int, I = (long)DataType.Float });
                    nodes.Add(cast);
                    node.Input[i] = cast.Output[0];
                }
            }
            nodes.Add(node);
        }
        g.Node.Clear();
        g.Node.AddRange(nodes);
        return proto;
    }

    private static float[] ReadInline(TensorProto t, string file, string node)
    {
        if (t.DataLocation == TensorProto.Types.DataLocation.External)
            throw new SpmFormatException(file, node, "a Constant with external data cannot be converted.");
        long count = 1;
        foreach (var d in t.Dims) count *= d;
        var r = new float[count];
        switch ((DataType)t.DataType)
        {
            case DataType.Float when !t.RawData.IsEmpty:
                MemoryMarshal.Cast<byte, float>(t.RawData.Span).CopyTo(r);
                break;
            case DataType.Float:
                t.FloatData.CopyTo(r, 0);
                break;
            case DataType.Float16 when !t.RawData.IsEmpty:
                var h = MemoryMarshal.Cast<byte, Half>(t.RawData.Span);
                for (int i = 0; i < r.Length; i++) r[i] = (float)h[i];
                break;
            case DataType.Float16:
                for (int i = 0; i < r.Length; i++) r[i] = (float)BitConverter.UInt16BitsToHalf((ushort)t.Int32Data[i]);
                break;
        }
        return r;
    }

    private static TensorProto Tensor(string name, IEnumerable<long> dims, float[] values, DataType type)
    {
        var t = new TensorProto { Name = name, DataType = (int)type };
        t.Dims.AddRange(dims);
        if (type == DataType.Float16)
        {
            var half = new Half[values.Length];
            for (int i = 0; i < values.Length; i++)
            {
                float v = values[i];
                // Clip finite values to fp16's range: a float32 "minus infinity" mask value must not become -inf.
                if (float.IsFinite(v)) v = Math.Clamp(v, -HalfMax, HalfMax);
                half[i] = (Half)v;
            }
            t.RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(half.AsSpan()));
        }
        else
        {
            t.RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(values.AsSpan()));
        }
        return t;
    }
}
