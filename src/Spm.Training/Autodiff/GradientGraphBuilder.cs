using Spm.Core;
using Spm.Diffusion.Onnx.Proto;
using static Spm.Diffusion.Onnx.OnnxAttributes;

namespace Spm.Training.Autodiff;

/// <summary>
/// Builds ONE ONNX model that computes a scalar loss over a forward model and its gradients with respect to chosen
/// graph inputs (membrane mode: the membrane tensors are inputs, the UNet is frozen) or initializers (full mode),
/// by reverse-mode differentiation of the graph. Only nodes on a path from a wrt tensor to the loss get backward
/// nodes; gradients of tensors with several consumers are summed; every added tensor and node is named
/// <c>grad/&lt;forward node&gt;/&lt;what&gt;</c>.
/// </summary>
public static class GradientGraphBuilder
{
    /// <summary>Builds the gradient graph.</summary>
    /// <param name="forward">The forward model (not modified). Default-domain opset 13 or later.</param>
    /// <param name="request">Loss terms and wrt tensors.</param>
    /// <param name="shapes">Element types and probe dimensions of the forward tensors (see <see cref="TensorShapes.Probe"/>).</param>
    /// <exception cref="SpmException">A wrt tensor or loss output does not exist, or an op on the gradient path has no rule.</exception>
    public static GradientGraph Build(ModelProto forward, GradientRequest request, TensorShapes shapes)
    {
        ArgumentNullException.ThrowIfNull(forward);
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(shapes);
        if (request.Loss.Count == 0) throw new SpmException("The gradient request has no loss term.");
        if (request.Wrt.Count == 0) throw new SpmException("The gradient request names no tensor to differentiate.");

        var model = forward.Clone();
        var graph = model.Graph;
        int opset = (int)(model.OpsetImport.FirstOrDefault(o => o.Domain is "" or "ai.onnx")?.Version ?? 0);
        if (opset < 13) throw new SpmException($"Gradient graphs need default-domain opset 13 or later; the model has {opset}.");

        var nodes = TopologicalOrder(graph);
        var inputs = graph.Input.Select(i => i.Name).ToHashSet(StringComparer.Ordinal);
        var initializers = graph.Initializer.Select(i => i.Name).ToHashSet(StringComparer.Ordinal);
        var produced = nodes.SelectMany(n => n.Output).Where(o => o.Length > 0).ToHashSet(StringComparer.Ordinal);

        foreach (var w in request.Wrt)
        {
            if (!inputs.Contains(w) && !initializers.Contains(w))
                throw new SpmException($"Cannot differentiate with respect to '{w}': it is neither a graph input nor an initializer.");
            if (!GradientContext.IsFloating(shapes.Get(w).ElemType))
                throw new SpmException($"Cannot differentiate with respect to '{w}': it is not a floating-point tensor.");
        }
        foreach (var term in request.Loss)
        {
            if (!produced.Contains(term.Output) && !inputs.Contains(term.Output))
                throw new SpmException($"Loss term reads '{term.Output}', which no node of the graph produces.");
            if (term.Kind != LossKind.Sum && string.IsNullOrEmpty(term.InputName))
                throw new SpmException($"Loss term {term.Kind} on '{term.Output}' needs an input name for its weights or target.");
        }

        // Forward: which tensors depend (differentiably) on a wrt tensor.
        var requires = new HashSet<string>(request.Wrt, StringComparer.Ordinal);
        foreach (var node in nodes)
        {
            if (GradientRules.NoGradient.Contains(node.OpType)) continue;
            if (!node.Input.Any(requires.Contains)) continue;
            foreach (var o in node.Output)
                if (o.Length > 0 && shapes.TryGet(o, out var t, out _) && GradientContext.IsFloating(t))
                    requires.Add(o);
        }

        // Backward: which of those reach the loss.
        var reaches = new HashSet<string>(request.Loss.Select(t => t.Output).Where(requires.Contains), StringComparer.Ordinal);
        var active = new List<NodeProto>();
        for (int i = nodes.Count - 1; i >= 0; i--)
        {
            var node = nodes[i];
            if (!node.Output.Any(reaches.Contains)) continue;
            bool any = false;
            foreach (var inp in node.Input)
                if (inp.Length > 0 && requires.Contains(inp)) { reaches.Add(inp); any = true; }
            if (any) active.Add(node); // reverse topological order
        }

        var ctx = new GradientContext(graph, shapes, opset);
        var contributions = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        void Contribute(string tensor, string grad)
        {
            if (!contributions.TryGetValue(tensor, out var list)) contributions[tensor] = list = new List<string>(1);
            list.Add(grad);
        }

        var extraInputs = new List<string>();
        var lossName = ctx.Reserve(request.LossOutputName);
        var lossTerms = new List<string>();
        ctx.Scope = "loss";
        foreach (var term in request.Loss)
        {
            var (type, dims) = shapes.Get(term.Output);
            string? extra = null;
            if (term.Kind != LossKind.Sum)
            {
                extra = term.InputName!;
                if (!inputs.Contains(extra))
                {
                    ctx.Reserve(extra);
                    graph.Input.Add(TensorValueInfo(extra, type, dims.Length));
                    inputs.Add(extra);
                    extraInputs.Add(extra);
                }
            }
            string value, seed;
            switch (term.Kind)
            {
                case LossKind.WeightedSum:
                    value = ctx.ReduceSum(ctx.Mul(term.Output, extra!), [], keepDims: false);
                    seed = term.Coefficient == 1 ? extra! : ctx.Mul(extra!, ctx.Scalar(term.Coefficient, type));
                    break;
                case LossKind.MeanSquaredError:
                {
                    var diff = ctx.Sub(term.Output, extra!);
                    value = ctx.Op("ReduceMean", "mse", [ctx.Mul(diff, diff)], Int("keepdims", 0));
                    var n = ctx.Op("Cast", "count", [ctx.Op("Size", "count", [term.Output])], Int("to", type));
                    seed = ctx.Mul(diff, ctx.Div(ctx.Scalar(2 * term.Coefficient, type), n));
                    break;
                }
                default:
                    value = ctx.ReduceSum(term.Output, [], keepDims: false);
                    seed = ctx.Op("Expand", "ones", [ctx.Scalar(term.Coefficient, type), ctx.ShapeOf(term.Output)]);
                    break;
            }
            if (term.Coefficient != 1) value = ctx.Mul(value, ctx.Scalar(term.Coefficient, type));
            lossTerms.Add(value);
            if (requires.Contains(term.Output)) Contribute(term.Output, seed);
        }
        // ReduceSum over no axes keeps rank; make the loss a true scalar.
        if (lossTerms.Count == 1) ctx.OpNamed("Reshape", lossName, [lossTerms[0], ctx.IntConst()]);
        else ctx.OpNamed("Reshape", lossName, [ctx.Op("Sum", "total", lossTerms), ctx.IntConst()]);

        string? Accumulated(string tensor, string? finalName = null)
        {
            if (!contributions.TryGetValue(tensor, out var list) || list.Count == 0) return null;
            if (list.Count == 1 && finalName is null) return list[0];
            return finalName is null
                ? ctx.Op("Sum", "acc", list)
                : ctx.OpNamed(list.Count == 1 ? "Identity" : "Sum", finalName, list);
        }

        foreach (var node in active)
        {
            ctx.Scope = node.Name.Length > 0 ? node.Name : $"{node.OpType}_{node.Output[0]}";
            var outGrads = node.Output.Select(o => o.Length > 0 ? Accumulated(o) : null).ToArray();
            if (outGrads.All(g => g is null)) continue;
            var rule = GradientRules.Find(node.OpType)
                ?? throw new SpmException($"No gradient rule for op '{node.OpType}' (node '{node.Name}') on the gradient path; supported: {string.Join(", ", GradientRules.Supported.Order())}.");
            if (node.Domain is not ("" or "ai.onnx"))
                throw new SpmException($"No gradient rule for op '{node.Domain}.{node.OpType}' (node '{node.Name}') on the gradient path.");
            var need = node.Input.Select(i => i.Length > 0 && requires.Contains(i) && reaches.Contains(i)).ToArray();
            var inGrads = rule.Backward(ctx, node, outGrads, need);
            for (int i = 0; i < need.Length; i++)
                if (need[i] && inGrads[i] is { } gi) Contribute(node.Input[i], gi);
        }

        ctx.Scope = "out";
        var gradOutputs = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var w in request.Wrt)
        {
            var name = ctx.Reserve(request.GradientPrefix + w);
            if (Accumulated(w, name) is null)
                ctx.OpNamed("ConstantOfShape", name, [ctx.ShapeOf(w)], Tensor("value", GradientContext.OneElement(0, shapes.Get(w).ElemType)));
            gradOutputs[w] = name;
        }

        graph.Node.Clear();
        graph.Node.AddRange(nodes);
        graph.Node.AddRange(ctx.Nodes);
        graph.Initializer.AddRange(ctx.NewInitializers);
        if (!request.KeepForwardOutputs) graph.Output.Clear();
        var lossType = shapes.Get(request.Loss[0].Output).ElemType;
        graph.Output.Add(TensorValueInfo(lossName, lossType, 0));
        foreach (var w in request.Wrt)
            graph.Output.Add(TensorValueInfo(gradOutputs[w], shapes.Get(w).ElemType, shapes.Get(w).Dims.Length));
        return new GradientGraph(model, lossName, gradOutputs, extraInputs, ctx.Nodes.Count, SavedBytes(ctx.Nodes, produced, shapes));
    }

    /// <summary>Bytes of the distinct forward node outputs that backward nodes read.</summary>
    private static long SavedBytes(IEnumerable<NodeProto> backward, HashSet<string> forwardProduced, TensorShapes shapes)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        long total = 0;
        foreach (var n in backward)
            foreach (var i in n.Input)
            {
                if (!forwardProduced.Contains(i) || !seen.Add(i) || !shapes.TryGet(i, out int type, out var dims)) continue;
                long count = 1;
                foreach (var d in dims) count *= Math.Max(0, d);
                total += count * (type switch { 11 or 7 or 13 => 8, 10 or 16 or 5 or 4 => 2, 2 or 3 or 9 => 1, _ => 4 });
            }
        return total;
    }

    private static ValueInfoProto TensorValueInfo(string name, int elemType, int rank)
    {
        var shape = new TensorShapeProto();
        for (int i = 0; i < rank; i++) shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimParam = $"{name}_d{i}" });
        return new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = elemType, Shape = shape } },
        };
    }

    /// <summary>The graph's nodes in an order where every input is produced before use (exports are usually already sorted).</summary>
    internal static List<NodeProto> TopologicalOrder(GraphProto graph)
    {
        var available = new HashSet<string>(StringComparer.Ordinal) { "" };
        foreach (var i in graph.Input) available.Add(i.Name);
        foreach (var i in graph.Initializer) available.Add(i.Name);
        var ordered = new List<NodeProto>(graph.Node.Count);
        var pending = graph.Node.ToList();
        bool sorted = true;
        foreach (var n in pending)
        {
            if (!n.Input.All(available.Contains)) { sorted = false; break; }
            foreach (var o in n.Output) available.Add(o);
        }
        if (sorted) return pending;

        available.Clear();
        available.Add("");
        foreach (var i in graph.Input) available.Add(i.Name);
        foreach (var i in graph.Initializer) available.Add(i.Name);
        while (pending.Count > 0)
        {
            int before = pending.Count;
            for (int k = 0; k < pending.Count;)
            {
                var n = pending[k];
                if (n.Input.All(available.Contains))
                {
                    ordered.Add(n);
                    foreach (var o in n.Output) available.Add(o);
                    pending.RemoveAt(k);
                }
                else k++;
            }
            if (pending.Count == before)
                throw new SpmException($"The graph has a cycle or reads undefined tensors (node '{pending[0].Name}', op {pending[0].OpType}).");
        }
        return ordered;
    }
}
