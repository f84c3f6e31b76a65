using Spm.Core;
using Spm.Diffusion.Onnx.Proto;

namespace Spm.Shapes.Building;

/// <summary>Moves trained weights between two builders of the same network (e.g. an autoencoder and its decoder half).</summary>
public static class WeightTransfer
{
    /// <summary>
    /// Copies trained weights from <paramref name="from"/> into <paramref name="to"/>, matching each float initializer by
    /// the node that consumes it (node name and input slot), not by its own name: the exporter-style anonymous names of
    /// MatMul weights (<c>onnx::MatMul_N</c>) are numbered in emission order, so the same weight has another name in the
    /// autoencoder (encoder first) than in the standalone decoder.
    /// </summary>
    /// <returns>How many weights were copied (every float initializer of <paramref name="to"/>).</returns>
    /// <exception cref="SpmException">A weight has no counterpart or another shape.</exception>
    public static int CopyByConsumer(GraphBuilder from, GraphBuilder to)
    {
        ArgumentNullException.ThrowIfNull(from);
        ArgumentNullException.ThrowIfNull(to);
        return CopyByConsumer(from.Build(), to, partial: false).Count;
    }

    /// <summary>
    /// Copies the float weights of a built or loaded model (say a shipped pipeline's <c>unet/model.onnx</c>) into
    /// <paramref name="to"/> by consumer, as <see cref="CopyByConsumer(GraphBuilder, GraphBuilder)"/> does. With
    /// <paramref name="partial"/> the weights of <paramref name="to"/> that <paramref name="source"/> has no counterpart for
    /// stay as they are (a decoder's weights into an autoencoder leave the encoder's).
    /// </summary>
    /// <returns>The names (in <paramref name="to"/>) of the weights copied.</returns>
    /// <exception cref="SpmException">A weight has another shape, or (not partial) no counterpart.</exception>
    public static IReadOnlySet<string> CopyByConsumer(ModelProto source, GraphBuilder to, bool partial)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(to);
        var values = source.Graph.Initializer.Where(i => i.DataType == 1).ToDictionary(i => i.Name, StringComparer.Ordinal);
        var bySlot = new Dictionary<(string Node, int Slot), string>();
        foreach (var node in source.Graph.Node)
            for (int k = 0; k < node.Input.Count; k++)
                if (values.ContainsKey(node.Input[k])) bySlot.TryAdd((node.Name, k), node.Input[k]);
        var target = to.Build();
        var floats = target.Graph.Initializer.Where(i => i.DataType == 1).ToDictionary(i => i.Name, i => i.Dims.ToArray(), StringComparer.Ordinal);
        var done = new HashSet<string>(StringComparer.Ordinal);
        foreach (var node in target.Graph.Node)
            for (int k = 0; k < node.Input.Count; k++)
            {
                var name = node.Input[k];
                if (!floats.TryGetValue(name, out var dims) || done.Contains(name)) continue;
                if (!bySlot.TryGetValue((node.Name, k), out var sourceName)) continue;
                var t = values[sourceName];
                if (!t.Dims.SequenceEqual(dims)) throw new SpmException($"Weight '{name}' of node '{node.Name}' is [{string.Join(",", dims)}] but the trained one is [{string.Join(",", t.Dims)}].");
                to.SetInitializer(name, TensorInit.FromData(ReadFloats(t)));
                done.Add(name);
            }
        var missing = floats.Keys.Where(n => !done.Contains(n)).ToList();
        if (missing.Count > 0 && !partial) throw new SpmException($"{missing.Count} weights have no trained counterpart (first: '{missing[0]}').");
        return done;
    }

    private static float[] ReadFloats(TensorProto t)
    {
        if (t.RawData.Length == 0 && t.FloatData.Count > 0) return t.FloatData.ToArray();
        var values = new float[t.RawData.Length / 4];
        System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(t.RawData.Span).CopyTo(values);
        return values;
    }
}
