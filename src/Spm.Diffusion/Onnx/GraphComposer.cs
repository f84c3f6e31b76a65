using Spm.Core;
using Spm.Diffusion.Onnx.Proto;

namespace Spm.Diffusion.Onnx;

/// <summary>
/// Joins two ONNX models into one graph in which outputs of the first feed inputs of the second — e.g. a text encoder
/// in front of a UNet, so that one gradient graph reaches the weights of both (joint training).
/// </summary>
public static class GraphComposer
{
    /// <summary>
    /// Composes <paramref name="first"/> → <paramref name="second"/>. Every value, node and initializer name of the first
    /// model gets <paramref name="prefix"/> (so the two never collide), except the first model's graph inputs, which stay
    /// inputs of the result under their own names. The second model's inputs named in <paramref name="connections"/>
    /// stop being graph inputs and are fed by an Identity of the connected (prefixed) output. The result's outputs are
    /// the second model's; the first model's unconnected outputs are dropped (ONNX Runtime prunes what nothing reads).
    /// </summary>
    /// <param name="first">The upstream model (not modified).</param>
    /// <param name="second">The downstream model (not modified).</param>
    /// <param name="connections">Output of <paramref name="first"/> → input of <paramref name="second"/>.</param>
    /// <param name="prefix">Prefix of the first model's names, e.g. <c>text_encoder/</c>.</param>
    /// <exception cref="SpmException">A connection names an output or input that does not exist, an input of the first
    /// model collides with a name of the second, or a node carries a subgraph (If/Loop/Scan are not renamed).</exception>
    public static ModelProto Chain(ModelProto first, ModelProto second, IReadOnlyDictionary<string, string> connections, string prefix)
    {
        ArgumentNullException.ThrowIfNull(first);
        ArgumentNullException.ThrowIfNull(second);
        ArgumentNullException.ThrowIfNull(connections);
        ArgumentException.ThrowIfNullOrEmpty(prefix);

        var a = first.Graph;
        var b = second.Graph;
        var firstOutputs = a.Output.Select(o => o.Name).ToHashSet(StringComparer.Ordinal);
        var secondInputs = b.Input.Select(i => i.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var (from, to) in connections)
        {
            if (!firstOutputs.Contains(from)) throw new SpmException($"Cannot compose: the first model has no output '{from}' (outputs: {string.Join(", ", firstOutputs)}).");
            if (!secondInputs.Contains(to)) throw new SpmException($"Cannot compose: the second model has no input '{to}' (inputs: {string.Join(", ", secondInputs)}).");
        }
        var fed = connections.Values.ToHashSet(StringComparer.Ordinal);
        if (fed.Count != connections.Count)
            throw new SpmException("Cannot compose: an input of the second model is connected twice.");

        var kept = a.Input.Select(i => i.Name).ToHashSet(StringComparer.Ordinal);
        var secondNames = SecondNames(b);
        foreach (var name in kept)
            if (secondNames.Contains(name))
                throw new SpmException($"Cannot compose: the first model's input '{name}' is also a name in the second model.");
        foreach (var node in a.Node.Concat(b.Node))
            if (node.Attribute.Any(at => at.G is not null || at.Graphs.Count > 0))
                throw new SpmException($"Cannot compose: node '{node.Name}' ({node.OpType}) holds a subgraph, which is not supported.");

        string Rename(string name) => name.Length == 0 || kept.Contains(name) ? name : prefix + name;

        var result = new ModelProto
        {
            IrVersion = Math.Max(first.IrVersion, second.IrVersion),
            ProducerName = second.ProducerName,
            ProducerVersion = second.ProducerVersion,
            Graph = new GraphProto { Name = b.Name },
        };
        foreach (var group in first.OpsetImport.Concat(second.OpsetImport).GroupBy(o => o.Domain, StringComparer.Ordinal))
            result.OpsetImport.Add(new OperatorSetIdProto { Domain = group.Key, Version = group.Max(o => o.Version) });
        foreach (var p in second.MetadataProps) result.MetadataProps.Add(p.Clone());

        var g = result.Graph;
        g.Input.AddRange(a.Input.Select(i => i.Clone()));
        g.Input.AddRange(b.Input.Where(i => !fed.Contains(i.Name)).Select(i => i.Clone()));
        foreach (var init in a.Initializer)
        {
            var t = init.Clone();
            t.Name = Rename(t.Name);
            g.Initializer.Add(t);
        }
        g.Initializer.AddRange(b.Initializer.Select(i => i.Clone()));
        foreach (var node in a.Node)
        {
            var n = node.Clone();
            n.Name = n.Name.Length == 0 ? "" : prefix + n.Name;
            for (int k = 0; k < n.Input.Count; k++) n.Input[k] = Rename(n.Input[k]);
            for (int k = 0; k < n.Output.Count; k++) n.Output[k] = Rename(n.Output[k]);
            g.Node.Add(n);
        }
        foreach (var (from, to) in connections)
        {
            var link = new NodeProto { Name = prefix + "to/" + to, OpType = "Identity" };
            link.Input.Add(Rename(from));
            link.Output.Add(to);
            g.Node.Add(link);
        }
        g.Node.AddRange(b.Node.Select(n => n.Clone()));
        foreach (var vi in a.ValueInfo)
        {
            var v = vi.Clone();
            v.Name = Rename(v.Name);
            g.ValueInfo.Add(v);
        }
        g.ValueInfo.AddRange(b.ValueInfo.Select(v => v.Clone()));
        g.Output.AddRange(b.Output.Select(o => o.Clone()));
        return result;
    }

    private static HashSet<string> SecondNames(GraphProto b)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var i in b.Input) names.Add(i.Name);
        foreach (var i in b.Initializer) names.Add(i.Name);
        foreach (var n in b.Node)
        {
            foreach (var x in n.Input) names.Add(x);
            foreach (var x in n.Output) names.Add(x);
        }
        return names;
    }
}
