using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Spm.Core;

namespace Spm.Diffusion.Runtime;

/// <summary>One input or output of a model as the session reports it.</summary>
/// <param name="Name">The graph name.</param>
/// <param name="ElementType">The element type (float, float16, int32, int64, ...).</param>
/// <param name="Dimensions">Dimensions; -1 for symbolic/dynamic ones.</param>
public sealed record TensorSpec(string Name, TensorElementType ElementType, int[] Dimensions)
{
    /// <summary>Number of dimensions (0 for a scalar).</summary>
    public int Rank => Dimensions.Length;

    /// <summary>Shape as text, e.g. <c>[?,4,?,?]</c>.</summary>
    public string ShapeString => "[" + string.Join(",", Dimensions.Select(d => d < 0 ? "?" : d.ToString(System.Globalization.CultureInfo.InvariantCulture))) + "]";

    /// <summary>True for the floating-point types the pipeline converts at the boundary (float32, float16, float64).</summary>
    public bool IsFloatingPoint => ElementType is TensorElementType.Float or TensorElementType.Float16 or TensorElementType.Double;

    /// <summary>
    /// The spec of a graph input or output as declared in an ONNX model (for callers holding a graph, not a session):
    /// symbolic or missing dimensions become -1; ONNX's data-type codes are ONNX Runtime's element types.
    /// </summary>
    /// <exception cref="SpmFormatException">The value is not a tensor.</exception>
    public static TensorSpec FromValueInfo(Spm.Diffusion.Onnx.Proto.ValueInfoProto value, string model)
    {
        ArgumentNullException.ThrowIfNull(value);
        var tt = value.Type?.TensorType ?? throw new SpmFormatException(model, value.Name, $"'{value.Name}' is not a tensor.");
        int[] dims = tt.Shape is null ? [-1] : tt.Shape.Dim.Select(d => d.ValueCase == Spm.Diffusion.Onnx.Proto.TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue ? (int)d.DimValue : -1).ToArray();
        return new TensorSpec(value.Name, (TensorElementType)tt.ElemType, dims);
    }
}

/// <summary>The inputs and outputs of a session, read from its metadata (never assumed).</summary>
public sealed class ModelSignature
{
    /// <summary>Reads the signature of <paramref name="session"/>.</summary>
    public ModelSignature(InferenceSession session, string modelName)
    {
        ArgumentNullException.ThrowIfNull(session);
        ModelName = modelName;
        Inputs = session.InputNames.Select(n => ToSpec(n, session.InputMetadata[n])).ToArray();
        Outputs = session.OutputNames.Select(n => ToSpec(n, session.OutputMetadata[n])).ToArray();
    }

    /// <summary>The model's name in messages (its file).</summary>
    public string ModelName { get; }

    /// <summary>Inputs in graph order.</summary>
    public IReadOnlyList<TensorSpec> Inputs { get; }

    /// <summary>Outputs in graph order.</summary>
    public IReadOnlyList<TensorSpec> Outputs { get; }

    /// <summary>The input called <paramref name="name"/>, or null.</summary>
    public TensorSpec? FindInput(string name) => Inputs.FirstOrDefault(i => i.Name == name);

    /// <summary>
    /// The input called <paramref name="name"/> with one of <paramref name="ranks"/>; a missing input or another
    /// rank is a <see cref="SpmFormatException"/> naming the model and input.
    /// </summary>
    public TensorSpec RequireInput(string name, params int[] ranks)
    {
        var spec = FindInput(name)
            ?? throw new SpmFormatException(ModelName, name, $"the model has no input '{name}' (inputs: {string.Join(", ", Inputs.Select(i => i.Name))}).");
        if (ranks.Length > 0 && !ranks.Contains(spec.Rank))
            throw new SpmFormatException(ModelName, name, $"input '{name}' has rank {spec.Rank} {spec.ShapeString}; expected rank {string.Join(" or ", ranks)}.");
        return spec;
    }

    /// <summary>The output called <paramref name="name"/>, or the first output when <paramref name="name"/> is null.</summary>
    public TensorSpec RequireOutput(string? name = null)
    {
        if (Outputs.Count == 0) throw new SpmFormatException(ModelName, null, "the model has no outputs.");
        if (name is null) return Outputs[0];
        return Outputs.FirstOrDefault(o => o.Name == name)
            ?? throw new SpmFormatException(ModelName, name, $"the model has no output '{name}' (outputs: {string.Join(", ", Outputs.Select(o => o.Name))}).");
    }

    private TensorSpec ToSpec(string name, NodeMetadata meta)
    {
        if (!meta.IsTensor) throw new SpmFormatException(ModelName, name, $"'{name}' is not a tensor ({meta.OnnxValueType}).");
        return new TensorSpec(name, meta.ElementDataType, (int[])meta.Dimensions.Clone());
    }
}
