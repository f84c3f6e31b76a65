namespace Spm.Training.Optimizers;

/// <summary>A named parameter being trained: its values and the gradient of the current step, same length.</summary>
public sealed class TrainableTensor
{
    /// <summary>Creates a parameter over <paramref name="value"/> (not copied) with a zeroed gradient.</summary>
    public TrainableTensor(string name, int[] shape, float[] value)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(value);
        long count = 1;
        foreach (var d in shape) count = checked(count * d);
        if (count != value.Length) throw new ArgumentException($"Parameter '{name}': shape [{string.Join(",", shape)}] does not hold {value.Length} values.");
        Name = name;
        Shape = shape;
        Value = value;
        Grad = new float[value.Length];
    }

    /// <summary>Unique name (optimizer state is keyed by it).</summary>
    public string Name { get; }

    /// <summary>Dimensions.</summary>
    public int[] Shape { get; }

    /// <summary>Current values, updated in place by optimizers.</summary>
    public float[] Value { get; }

    /// <summary>Gradient of the loss with respect to <see cref="Value"/> for the current step.</summary>
    public float[] Grad { get; }
}
