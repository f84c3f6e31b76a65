using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace Spm.Diffusion.Runtime;

/// <summary>
/// A float32 host buffer paired with the <see cref="OrtValue"/> a session reads or writes: for float32 models the
/// value wraps the buffer itself (zero copy, so writes to the buffer are seen by the next run); for float16/float64
/// models a separate value is converted to or from the buffer on <see cref="PushToValue"/>/<see cref="PullFromValue"/>.
/// </summary>
internal sealed class FloatStaging : IDisposable
{
    private readonly string _model;
    private readonly string _name;

    public FloatStaging(float[] buffer, long[] shape, TensorSpec spec, string model, bool isOutput)
    {
        Buffer = buffer;
        _model = model;
        _name = spec.Name;
        ZeroCopy = spec.ElementType == TensorElementType.Float;
        Value = isOutput ? OrtTensors.OutputBuffer(buffer, shape, spec, model) : OrtTensors.FloatInput(buffer, shape, spec, model);
    }

    /// <summary>The float32 data.</summary>
    public float[] Buffer { get; }

    /// <summary>The value bound to the session.</summary>
    public OrtValue Value { get; }

    /// <summary>True when <see cref="Value"/> is a view of <see cref="Buffer"/>.</summary>
    public bool ZeroCopy { get; }

    /// <summary>Makes <see cref="Value"/> reflect <see cref="Buffer"/> (converts for non-float32 models).</summary>
    public void PushToValue()
    {
        if (ZeroCopy) return;
        var info = Value.GetTensorTypeAndShape();
        if (info.ElementDataType == TensorElementType.Float16)
        {
            TensorPrimitives.ConvertToHalf(Buffer, MemoryMarshal.Cast<byte, Half>(Value.GetTensorMutableRawData()));
        }
        else
        {
            var dst = Value.GetTensorMutableDataAsSpan<double>();
            for (int i = 0; i < Buffer.Length; i++) dst[i] = Buffer[i];
        }
    }

    /// <summary>Makes <see cref="Buffer"/> reflect <see cref="Value"/> (converts for non-float32 models).</summary>
    public void PullFromValue()
    {
        if (ZeroCopy) return;
        OrtTensors.ReadFloats(Value, Buffer, _model, _name);
    }

    public void Dispose() => Value.Dispose();
}
