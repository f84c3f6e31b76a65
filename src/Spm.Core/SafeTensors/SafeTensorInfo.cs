namespace Spm.Core.SafeTensors;

/// <summary>One tensor's header entry in a safetensors file.</summary>
public sealed class SafeTensorInfo
{
    internal SafeTensorInfo(string name, SafeTensorDType dtype, long[] shape, long dataOffset, long byteLength, long elementCount)
    {
        Name = name;
        DType = dtype;
        Shape = shape;
        DataOffset = dataOffset;
        ByteLength = byteLength;
        ElementCount = elementCount;
    }

    /// <summary>The tensor's key.</summary>
    public string Name { get; }

    /// <summary>Element type.</summary>
    public SafeTensorDType DType { get; }

    /// <summary>Dimensions, outermost first (empty for a 0-d scalar). Do not modify.</summary>
    public IReadOnlyList<long> Shape { get; }

    /// <summary>Offset of the first byte, relative to the start of the data buffer (the header's <c>data_offsets[0]</c>).</summary>
    public long DataOffset { get; }

    /// <summary>Size of the tensor's data in bytes.</summary>
    public long ByteLength { get; }

    /// <summary>Number of elements (product of <see cref="Shape"/>; 1 for a scalar).</summary>
    public long ElementCount { get; }

    /// <summary>Shape as text, e.g. <c>[4,64]</c>.</summary>
    public string ShapeString => "[" + string.Join(",", Shape) + "]";

    /// <inheritdoc />
    public override string ToString() => $"{Name} {SafeTensorDTypes.HeaderName(DType)}{ShapeString}";
}
