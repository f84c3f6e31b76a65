using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Spm.Core;

namespace Spm.Diffusion.Runtime;

/// <summary>
/// Conversions at the model boundary: the pipeline computes in float32 and converts to whatever element type the
/// session declares (float16 models, int64 vs int32 token ids, scalar vs vector timesteps).
/// </summary>
public static class OrtTensors
{
    /// <summary>A float tensor input of the declared type; float32 wraps <paramref name="data"/> without copying.</summary>
    public static OrtValue FloatInput(Memory<float> data, long[] shape, TensorSpec spec, string model)
    {
        switch (spec.ElementType)
        {
            case TensorElementType.Float:
                return OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, data, shape);
            case TensorElementType.Float16:
            {
                var v = OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, TensorElementType.Float16, shape);
                TensorPrimitives.ConvertToHalf(data.Span, MemoryMarshal.Cast<byte, Half>(v.GetTensorMutableRawData()));
                return v;
            }
            case TensorElementType.Double:
            {
                var v = OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, TensorElementType.Double, shape);
                var dst = v.GetTensorMutableDataAsSpan<double>();
                var src = data.Span;
                for (int i = 0; i < src.Length; i++) dst[i] = src[i];
                return v;
            }
            default:
                throw new SpmFormatException(model, spec.Name, $"input '{spec.Name}' has element type {spec.ElementType}; a floating-point type was expected.");
        }
    }

    /// <summary>Token ids as int32 (wrapped) or int64 (widened), per the declared type.</summary>
    public static OrtValue IdInput(int[] ids, long[] shape, TensorSpec spec, string model)
    {
        switch (spec.ElementType)
        {
            case TensorElementType.Int32:
                return OrtValue.CreateTensorValueFromMemory(ids, shape);
            case TensorElementType.Int64:
            {
                var wide = new long[ids.Length];
                for (int i = 0; i < ids.Length; i++) wide[i] = ids[i];
                return OrtValue.CreateTensorValueFromMemory(wide, shape);
            }
            default:
                throw new SpmFormatException(model, spec.Name, $"input '{spec.Name}' has element type {spec.ElementType}; int32 or int64 token ids were expected.");
        }
    }

    /// <summary>
    /// The timestep input: a scalar (rank 0) or one value per batch row (rank 1), of the declared type.
    /// Integer types get the timestep rounded to the nearest integer (schedulers use integer timesteps on the training grid).
    /// </summary>
    public static OrtValue TimestepInput(double t, int batch, TensorSpec spec, string model)
    {
        var rows = new double[spec.Rank == 0 ? 1 : batch];
        Array.Fill(rows, t);
        return TimestepRows(rows, spec, model);
    }

    /// <summary>
    /// The timestep input with a value per batch row (training draws a timestep per row). The one place a UNet's
    /// timestep is typed: float32, float64, float16, int64 or int32 (integers rounded to the nearest), scalar or [B].
    /// A scalar input takes a single value: rows with different timesteps need one call each.
    /// </summary>
    /// <exception cref="SpmFormatException">The declared rank or type cannot carry a timestep.</exception>
    /// <exception cref="ArgumentException">A scalar timestep input was given several different values.</exception>
    public static OrtValue TimestepRows(ReadOnlySpan<double> t, TensorSpec spec, string model)
    {
        ArgumentNullException.ThrowIfNull(spec);
        if (t.IsEmpty) throw new ArgumentException("At least one timestep is needed.", nameof(t));
        long[] shape = spec.Rank switch
        {
            0 => [],
            1 => [t.Length],
            _ => throw new SpmFormatException(model, spec.Name, $"timestep input '{spec.Name}' has rank {spec.Rank}; expected a scalar or [batch]."),
        };
        if (spec.Rank == 0)
        {
            foreach (var v in t)
                if (v != t[0]) throw new ArgumentException($"'{model}' takes one scalar timestep for the whole batch; these rows differ ({t[0]} and {v}): run them one call each.", nameof(t));
            t = t[..1];
        }
        switch (spec.ElementType)
        {
            case TensorElementType.Float:
            {
                var a = new float[t.Length];
                for (int i = 0; i < a.Length; i++) a[i] = (float)t[i];
                return OrtValue.CreateTensorValueFromMemory(a, shape);
            }
            case TensorElementType.Double:
                return OrtValue.CreateTensorValueFromMemory(t.ToArray(), shape);
            case TensorElementType.Float16:
            {
                var v = OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, TensorElementType.Float16, shape);
                var dst = MemoryMarshal.Cast<byte, Half>(v.GetTensorMutableRawData());
                for (int i = 0; i < t.Length; i++) dst[i] = (Half)t[i];
                return v;
            }
            case TensorElementType.Int64:
            {
                var a = new long[t.Length];
                for (int i = 0; i < a.Length; i++) a[i] = (long)Math.Round(t[i]);
                return OrtValue.CreateTensorValueFromMemory(a, shape);
            }
            case TensorElementType.Int32:
            {
                var a = new int[t.Length];
                for (int i = 0; i < a.Length; i++) a[i] = (int)Math.Round(t[i]);
                return OrtValue.CreateTensorValueFromMemory(a, shape);
            }
            default:
                throw new SpmFormatException(model, spec.Name, $"timestep input '{spec.Name}' has unsupported element type {spec.ElementType}.");
        }
    }

    /// <summary>An output buffer of the declared type: float32 outputs are written straight into <paramref name="destination"/>.</summary>
    public static OrtValue OutputBuffer(Memory<float> destination, long[] shape, TensorSpec spec, string model)
    {
        if (spec.ElementType == TensorElementType.Float)
            return OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, destination, shape);
        if (spec.ElementType is TensorElementType.Float16 or TensorElementType.Double)
            return OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, spec.ElementType, shape);
        throw new SpmFormatException(model, spec.Name, $"output '{spec.Name}' has element type {spec.ElementType}; a floating-point type was expected.");
    }

    /// <summary>Copies a floating-point tensor into <paramref name="destination"/> as float32 (no-op copy when it already is that buffer).</summary>
    public static void ReadFloats(OrtValue value, Span<float> destination, string model, string name)
    {
        var info = value.GetTensorTypeAndShape();
        if (info.ElementCount != destination.Length)
            throw new SpmFormatException(model, name, $"output '{name}' has {info.ElementCount} elements; expected {destination.Length}.");
        switch (info.ElementDataType)
        {
            case TensorElementType.Float:
            {
                var src = value.GetTensorDataAsSpan<float>();
                if (!Unsafe.AreSame(src, destination)) src.CopyTo(destination);
                break;
            }
            case TensorElementType.Float16:
                TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<byte, Half>(value.GetTensorMutableRawData()), destination);
                break;
            case TensorElementType.Double:
            {
                var src = value.GetTensorDataAsSpan<double>();
                for (int i = 0; i < src.Length; i++) destination[i] = (float)src[i];
                break;
            }
            default:
                throw new SpmFormatException(model, name, $"output '{name}' has element type {info.ElementDataType}; a floating-point type was expected.");
        }
    }

    /// <summary>The shape of a tensor value.</summary>
    public static long[] ShapeOf(OrtValue value) => value.GetTensorTypeAndShape().Shape;

    private static class Unsafe
    {
        public static bool AreSame(ReadOnlySpan<float> a, Span<float> b)
            => a.Length == b.Length && System.Runtime.CompilerServices.Unsafe.AreSame(ref MemoryMarshal.GetReference(a), ref MemoryMarshal.GetReference(b));
    }
}
