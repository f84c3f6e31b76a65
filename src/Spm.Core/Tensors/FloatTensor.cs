namespace Spm.Core.Tensors;

/// <summary>
/// A dense, row-major float32 tensor: the exchange type between the Spm libraries (membrane weights,
/// latents, embeddings). Deliberately minimal; arithmetic goes through <c>TensorPrimitives</c> on <see cref="Span"/>.
/// </summary>
public sealed class FloatTensor
{
    /// <summary>Creates a tensor over <paramref name="data"/> (not copied) with the given shape.</summary>
    /// <exception cref="ArgumentException">The shape's element count differs from the data length, or a dimension is negative.</exception>
    public FloatTensor(int[] shape, float[] data)
    {
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(data);
        long count = ElementCount(shape);
        if (count != data.Length)
            throw new ArgumentException($"Shape [{string.Join(",", shape)}] holds {count} elements but data has {data.Length}.");
        Shape = shape;
        Data = data;
    }

    /// <summary>Creates a zero-filled tensor.</summary>
    public FloatTensor(params int[] shape) : this(shape, new float[checked((int)ElementCount(shape))]) { }

    /// <summary>The dimensions, outermost first.</summary>
    public int[] Shape { get; }

    /// <summary>The elements in row-major order.</summary>
    public float[] Data { get; }

    /// <summary>Number of elements.</summary>
    public int Length => Data.Length;

    /// <summary>Number of dimensions.</summary>
    public int Rank => Shape.Length;

    /// <summary>The elements as a span.</summary>
    public Span<float> Span => Data;

    /// <summary>A deep copy.</summary>
    public FloatTensor Clone() => new((int[])Shape.Clone(), (float[])Data.Clone());

    /// <summary>The same data viewed with another shape of equal element count.</summary>
    public FloatTensor Reshape(params int[] shape) => new(shape, Data);

    /// <summary>Product of the dimensions; throws on negative dimensions or overflow.</summary>
    public static long ElementCount(ReadOnlySpan<int> shape)
    {
        long n = 1;
        foreach (var d in shape)
        {
            if (d < 0) throw new ArgumentException($"Negative dimension {d}.");
            n = checked(n * d);
        }
        return n;
    }

    /// <summary>Shape as text, e.g. <c>[2,4,32,32]</c>.</summary>
    public string ShapeString => "[" + string.Join(",", Shape) + "]";

    /// <inheritdoc />
    public override string ToString() => $"FloatTensor{ShapeString}";
}
