using Microsoft.ML.OnnxRuntime;
using Spm.Core;
using Spm.Core.Tensors;
using Spm.Diffusion.Onnx;
using Spm.Diffusion.Onnx.Proto;

namespace Spm.Training.Autodiff;

/// <summary>
/// The text encoder made differentiable with respect to its token embeddings: the encoder's token-embedding lookup
/// (a <c>Gather</c> from the vocabulary table, indexed by <c>input_ids</c>) is cut out and its output becomes a graph
/// input <see cref="EmbedsInput"/>, so a caller can feed any continuous embedding (what gradient attacks and soft prompts
/// optimise) and get <c>d(Σ hidden · cotangent) / d embeds</c>, the vector-Jacobian product the chain rule through the
/// UNet needs. Two sessions: the forward graph and the gradient graph built by <see cref="GradientGraphBuilder"/>.
/// </summary>
public sealed class TextEncoderGradients : IDisposable
{
    /// <summary>Name of the embeddings input the rewritten graph takes ([batch, tokens, width]).</summary>
    public const string EmbedsInput = "inputs_embeds";

    /// <summary>Name of the cotangent input of the gradient graph (shaped like the hidden states).</summary>
    public const string CotangentInput = "cotangent";

    private readonly InferenceSession _forward, _backward;
    private readonly GradientGraph _graph;
    private readonly string _idsInput, _hiddenOutput;
    private readonly bool _idsUsed, _idsInt32;
    private readonly float[] _table;

    private TextEncoderGradients(InferenceSession forward, InferenceSession backward, GradientGraph graph, string idsInput, bool idsUsed, bool idsInt32,
        string hiddenOutput, float[] table, int vocabulary, int width, string tableName)
    {
        _forward = forward;
        _backward = backward;
        _graph = graph;
        _idsInput = idsInput;
        _idsUsed = idsUsed;
        _idsInt32 = idsInt32;
        _hiddenOutput = hiddenOutput;
        _table = table;
        VocabularySize = vocabulary;
        Width = width;
        EmbeddingTableName = tableName;
    }

    /// <summary>Rows of the token-embedding table.</summary>
    public int VocabularySize { get; }

    /// <summary>Width of a token embedding (the table's second dimension).</summary>
    public int Width { get; }

    /// <summary>The initializer the token embeddings were read from.</summary>
    public string EmbeddingTableName { get; }

    /// <summary>The token-embedding table [vocabulary, width], row-major.</summary>
    public ReadOnlySpan<float> EmbeddingTable => _table;

    /// <summary>The embedding row of one token.</summary>
    public ReadOnlySpan<float> TokenEmbedding(int id)
    {
        if ((uint)id >= (uint)VocabularySize) throw new ArgumentOutOfRangeException(nameof(id), $"Token id {id} is outside the table's {VocabularySize} rows.");
        return _table.AsSpan(id * Width, Width);
    }

    /// <summary>Finds the token lookup of <paramref name="textEncoder"/>, rewrites the graph and opens both sessions.</summary>
    /// <param name="textEncoder">The text encoder (input <c>input_ids</c> [B, L], first output the last hidden state).</param>
    /// <param name="settings">Threads and provider.</param>
    /// <exception cref="SpmFormatException">No token-embedding lookup can be found (the message names the model).</exception>
    /// <exception cref="SpmException">An op on the path from the embeddings to the hidden states has no gradient rule.</exception>
    public static TextEncoderGradients Create(OnnxModel textEncoder, GradientSessionSettings? settings = null)
    {
        ArgumentNullException.ThrowIfNull(textEncoder);
        var s = (settings ?? new GradientSessionSettings()) with { ExternalDataFolder = textEncoder.BaseDirectory };
        var model = textEncoder.Proto.Clone();
        var graph = model.Graph;
        var idsInput = graph.Input.FirstOrDefault(i => i.Name == "input_ids")?.Name
            ?? graph.Input.FirstOrDefault(i => i.Type?.TensorType?.ElemType is 6 or 7)?.Name
            ?? throw new SpmFormatException(textEncoder.FilePath, "input_ids", "the text encoder has no integer token-id input.");
        var hidden = graph.Output.FirstOrDefault(o => o.Name == "last_hidden_state")?.Name
            ?? graph.Output.FirstOrDefault()?.Name
            ?? throw new SpmFormatException(textEncoder.FilePath, "last_hidden_state", "the text encoder has no output.");

        var lookup = FindTokenLookup(graph, idsInput)
            ?? throw new SpmFormatException(textEncoder.FilePath, idsInput,
                "no token-embedding lookup found (a Gather from a [vocabulary, width] initializer indexed by the token ids): this text encoder cannot be differentiated by token embeddings.");
        var tableName = lookup.Input[0];
        var table = textEncoder.ReadFloat(tableName);
        if (table.Rank != 2) throw new SpmFormatException(textEncoder.FilePath, tableName, $"the token-embedding table is {table.ShapeString}, not [vocabulary, width].");
        int vocabulary = table.Shape[0], width = table.Shape[1];

        // Cut the lookup out: its output becomes the embeddings input, everything downstream stays as exported.
        var embedsName = lookup.Output[0];
        graph.Node.Remove(lookup);
        foreach (var n in graph.Node)
            for (int i = 0; i < n.Input.Count; i++)
                if (n.Input[i] == embedsName) n.Input[i] = EmbedsInput;
        graph.Input.Add(FloatInput(EmbedsInput, 3));
        var keep = graph.Output.First(o => o.Name == hidden);
        graph.Output.Clear();
        graph.Output.Add(keep);
        PruneDeadNodes(graph);
        bool idsUsed = graph.Node.Any(n => n.Input.Contains(idsInput));
        bool idsInt32 = graph.Input.First(i => i.Name == idsInput).Type?.TensorType?.ElemType == 6;
        if (!idsUsed)
        {
            var input = graph.Input.First(i => i.Name == idsInput);
            graph.Input.Remove(input);
        }

        // Probe at batch 2 with the tokenizer's usual frame (BOS, a word, EOS, padding) to learn every tensor's shape.
        const int probeBatch = 2, probeLength = 77;
        var probeIds = new long[probeBatch * probeLength];
        var probeEmbeds = new float[probeBatch * probeLength * width];
        var probeCot = new float[probeEmbeds.Length];
        var feeds = new Dictionary<string, OrtValue>(StringComparer.Ordinal);
        try
        {
            if (idsUsed) feeds[idsInput] = IdsValue(graph, idsInput, probeIds, probeBatch, probeLength);
            feeds[EmbedsInput] = OrtValue.CreateTensorValueFromMemory(probeEmbeds, [probeBatch, probeLength, width]);
            var shapes = TensorShapes.Probe(model, feeds, s);
            var gradient = GradientGraphBuilder.Build(model, new GradientRequest([LossTerm.WeightedSum(hidden, CotangentInput)], [EmbedsInput], KeepForwardOutputs: false), shapes);
            var forward = GradientSessionFactory.Create(model, s);
            try
            {
                var backward = GradientSessionFactory.Create(gradient.Model, s);
                return new TextEncoderGradients(forward, backward, gradient, idsInput, idsUsed, idsInt32, hidden, table.Data, vocabulary, width, tableName);
            }
            catch
            {
                forward.Dispose();
                throw;
            }
        }
        finally
        {
            foreach (var v in feeds.Values) v.Dispose();
        }
    }

    /// <summary>The table rows of <paramref name="ids"/> ([batch × tokens] row-major) as a [batch, tokens, width] tensor.</summary>
    public FloatTensor Embed(ReadOnlySpan<int> ids, int batch)
    {
        int tokens = RowLength(ids.Length, batch);
        var e = new FloatTensor(batch, tokens, Width);
        for (int i = 0; i < ids.Length; i++) TokenEmbedding(ids[i]).CopyTo(e.Data.AsSpan(i * Width, Width));
        return e;
    }

    /// <summary>The last hidden state [B, L, D] for token ids (the encoder may read them, e.g. for its pooled output or a mask) and embeddings.</summary>
    public FloatTensor Forward(ReadOnlySpan<int> ids, FloatTensor embeds)
    {
        var (names, values) = Feeds(ids, embeds, null);
        try
        {
            using var ro = new RunOptions();
            using var results = _forward.Run(ro, names, values, [_hiddenOutput]);
            return MembraneGradientSession.ToFloat(results[0]);
        }
        finally
        {
            foreach (var v in values) v.Dispose();
        }
    }

    /// <summary>
    /// The vector-Jacobian product: <c>d(Σ hidden(embeds) · cotangent) / d embeds</c>, shaped like <paramref name="embeds"/>.
    /// </summary>
    public FloatTensor Backward(ReadOnlySpan<int> ids, FloatTensor embeds, FloatTensor cotangent)
    {
        ArgumentNullException.ThrowIfNull(cotangent);
        if (cotangent.Rank != 3 || cotangent.Shape[0] != embeds.Shape[0] || cotangent.Shape[1] != embeds.Shape[1])
            throw new ArgumentException($"The cotangent {cotangent.ShapeString} does not match the embeddings {embeds.ShapeString}.", nameof(cotangent));
        var (names, values) = Feeds(ids, embeds, cotangent);
        try
        {
            using var ro = new RunOptions();
            using var results = _backward.Run(ro, names, values, [_graph.GradientOutputs[EmbedsInput]]);
            return MembraneGradientSession.ToFloat(results[0]);
        }
        catch (OnnxRuntimeException e)
        {
            throw new SpmException($"The text encoder's gradient graph failed to run: {e.Message}", e);
        }
        finally
        {
            foreach (var v in values) v.Dispose();
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _forward.Dispose();
        _backward.Dispose();
    }

    private (List<string> Names, List<OrtValue> Values) Feeds(ReadOnlySpan<int> ids, FloatTensor embeds, FloatTensor? cotangent)
    {
        ArgumentNullException.ThrowIfNull(embeds);
        if (embeds.Rank != 3 || embeds.Shape[2] != Width)
            throw new ArgumentException($"Embeddings must be [batch, tokens, {Width}], got {embeds.ShapeString}.", nameof(embeds));
        int batch = embeds.Shape[0], tokens = embeds.Shape[1];
        if (ids.Length != batch * tokens)
            throw new ArgumentException($"{ids.Length} token ids do not match embeddings {embeds.ShapeString}.", nameof(ids));
        var names = new List<string>(3);
        var values = new List<OrtValue>(3);
        if (_idsUsed)
        {
            names.Add(_idsInput);
            if (_idsInt32) values.Add(OrtValue.CreateTensorValueFromMemory(ids.ToArray(), [batch, tokens]));
            else
            {
                var longs = new long[ids.Length];
                for (int i = 0; i < ids.Length; i++) longs[i] = ids[i];
                values.Add(OrtValue.CreateTensorValueFromMemory(longs, [batch, tokens]));
            }
        }
        names.Add(EmbedsInput);
        values.Add(MembraneGradientSession.ToOrt(embeds));
        if (cotangent is not null)
        {
            names.Add(CotangentInput);
            values.Add(MembraneGradientSession.ToOrt(cotangent));
        }
        return (names, values);
    }

    private static int RowLength(int count, int batch)
    {
        if (batch < 1 || count == 0 || count % batch != 0) throw new ArgumentException($"{count} ids do not split into {batch} rows.");
        return count / batch;
    }

    /// <summary>The Gather whose data is a rank-2 initializer and whose indices come from the token ids (through casts or reshapes).</summary>
    private static NodeProto? FindTokenLookup(GraphProto graph, string idsInput)
    {
        var initializers = graph.Initializer.ToDictionary(i => i.Name, StringComparer.Ordinal);
        var fromIds = new HashSet<string>(StringComparer.Ordinal) { idsInput };
        foreach (var n in GradientGraphBuilder.TopologicalOrder(graph))
        {
            if (n.OpType == "Gather" && n.Input.Count == 2 && fromIds.Contains(n.Input[1])
                && initializers.TryGetValue(n.Input[0], out var t) && t.Dims.Count == 2 && t.Dims[0] > 1)
                return n;
            if (n.OpType is "Cast" or "Reshape" or "Identity" or "Unsqueeze" or "Squeeze" or "Flatten" && n.Input.Count > 0 && fromIds.Contains(n.Input[0]))
                foreach (var o in n.Output) fromIds.Add(o);
        }
        return null;
    }

    /// <summary>Drops nodes whose outputs nothing reads (the pooled output's ArgMax once that output is gone).</summary>
    private static void PruneDeadNodes(GraphProto graph)
    {
        var needed = new HashSet<string>(graph.Output.Select(o => o.Name), StringComparer.Ordinal);
        var nodes = GradientGraphBuilder.TopologicalOrder(graph);
        var keep = new List<NodeProto>(nodes.Count);
        for (int i = nodes.Count - 1; i >= 0; i--)
        {
            var n = nodes[i];
            if (!n.Output.Any(needed.Contains)) continue;
            keep.Add(n);
            foreach (var inp in n.Input) if (inp.Length > 0) needed.Add(inp);
        }
        keep.Reverse();
        graph.Node.Clear();
        graph.Node.AddRange(keep);
        // The table itself is now read by no node (the caller holds a copy); ORT would warn about it.
        var dead = graph.Initializer.Where(t => !needed.Contains(t.Name)).ToList();
        foreach (var t in dead) graph.Initializer.Remove(t);
    }

    private static OrtValue IdsValue(GraphProto graph, string name, long[] ids, int batch, int length)
    {
        int type = graph.Input.First(i => i.Name == name).Type?.TensorType?.ElemType ?? 7;
        return type == 6
            ? OrtValue.CreateTensorValueFromMemory(ids.Select(v => (int)v).ToArray(), [batch, length])
            : OrtValue.CreateTensorValueFromMemory(ids, [batch, length]);
    }

    private static ValueInfoProto FloatInput(string name, int rank)
    {
        var shape = new TensorShapeProto();
        for (int i = 0; i < rank; i++) shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimParam = $"{name}_d{i}" });
        return new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float, Shape = shape } },
        };
    }
}
