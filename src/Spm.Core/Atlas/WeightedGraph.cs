namespace Spm.Core.Atlas;

/// <summary>One undirected weighted edge between nodes <paramref name="Source"/> and <paramref name="Target"/>.</summary>
/// <param name="Source">A node id (0-based).</param>
/// <param name="Target">The other node id (0-based).</param>
/// <param name="Weight">A positive weight (1 for an unweighted edge).</param>
public readonly record struct WeightedEdge(int Source, int Target, double Weight);

/// <summary>
/// An undirected graph with positive edge weights and nodes 0..n-1, stored as a symmetric sparse adjacency matrix in
/// compressed-row form: every edge appears in both endpoints' rows, so a row scan sees all neighbours of a node and a
/// matrix-vector product is one pass over the arrays (what the Lanczos eigensolver needs on 10,000-node graphs).
/// Self-loops are dropped (they carry no community information and would bias the spectral steps) and repeated
/// edges between the same pair add up.
/// </summary>
public sealed class WeightedGraph
{
    private readonly int[] _rowStart;
    private readonly int[] _columns;
    private readonly double[] _weights;
    private readonly double[] _degrees;

    private WeightedGraph(int nodeCount, int[] rowStart, int[] columns, double[] weights)
    {
        NodeCount = nodeCount;
        _rowStart = rowStart;
        _columns = columns;
        _weights = weights;
        _degrees = new double[nodeCount];
        for (int i = 0; i < nodeCount; i++)
        {
            double d = 0;
            for (int k = rowStart[i]; k < rowStart[i + 1]; k++) d += weights[k];
            _degrees[i] = d;
            TotalWeight += d;
        }
        TotalWeight /= 2;
    }

    /// <summary>The number of nodes n (ids 0..n-1; isolated nodes count).</summary>
    public int NodeCount { get; }

    /// <summary>The number of distinct undirected edges (each pair once).</summary>
    public int EdgeCount => _columns.Length / 2;

    /// <summary>The sum of all edge weights (each undirected edge once).</summary>
    public double TotalWeight { get; }

    /// <summary>The weighted degree of each node (sum of its edge weights).</summary>
    public ReadOnlySpan<double> Degrees => _degrees;

    /// <summary>The neighbours of <paramref name="node"/>, in increasing id order.</summary>
    public ReadOnlySpan<int> Neighbours(int node) => _columns.AsSpan(_rowStart[node], _rowStart[node + 1] - _rowStart[node]);

    /// <summary>The weights of the edges to <see cref="Neighbours"/>, in the same order.</summary>
    public ReadOnlySpan<double> NeighbourWeights(int node) => _weights.AsSpan(_rowStart[node], _rowStart[node + 1] - _rowStart[node]);

    /// <summary>Builds a graph from edges; repeated pairs add their weights and self-loops are dropped.</summary>
    /// <param name="nodeCount">n; every edge endpoint must be in 0..n-1.</param>
    /// <param name="edges">The undirected edges (each pair once; the reverse direction is implied).</param>
    /// <exception cref="ArgumentException">An endpoint is out of range or a weight is not finite and positive.</exception>
    public static WeightedGraph FromEdges(int nodeCount, IEnumerable<WeightedEdge> edges)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(nodeCount);
        ArgumentNullException.ThrowIfNull(edges);
        var list = new List<WeightedEdge>();
        var counts = new int[nodeCount];
        foreach (var e in edges)
        {
            if ((uint)e.Source >= (uint)nodeCount || (uint)e.Target >= (uint)nodeCount)
                throw new ArgumentException($"Edge ({e.Source}, {e.Target}) has an endpoint outside 0..{nodeCount - 1}.", nameof(edges));
            if (!(e.Weight > 0) || !double.IsFinite(e.Weight))
                throw new ArgumentException($"Edge ({e.Source}, {e.Target}) has weight {e.Weight}; weights must be finite and positive.", nameof(edges));
            if (e.Source == e.Target) continue;
            list.Add(e);
            counts[e.Source]++;
            counts[e.Target]++;
        }
        var rowStart = new int[nodeCount + 1];
        for (int i = 0; i < nodeCount; i++) rowStart[i + 1] = rowStart[i] + counts[i];
        var cols = new int[rowStart[nodeCount]];
        var wts = new double[cols.Length];
        var fill = rowStart[..nodeCount].ToArray();
        foreach (var e in list)
        {
            cols[fill[e.Source]] = e.Target; wts[fill[e.Source]++] = e.Weight;
            cols[fill[e.Target]] = e.Source; wts[fill[e.Target]++] = e.Weight;
        }
        // Sort each row by column and merge repeats in place, then compact: rows must be sorted for the subgraph and
        // duplicate-free for EdgeCount to mean distinct pairs.
        int write = 0;
        var newStart = new int[nodeCount + 1];
        for (int i = 0; i < nodeCount; i++)
        {
            int s = rowStart[i], len = rowStart[i + 1] - s;
            Array.Sort(cols, wts, s, len);
            newStart[i] = write;
            for (int k = s; k < s + len; k++)
            {
                if (write > newStart[i] && cols[write - 1] == cols[k]) wts[write - 1] += wts[k];
                else { cols[write] = cols[k]; wts[write] = wts[k]; write++; }
            }
        }
        newStart[nodeCount] = write;
        return new WeightedGraph(nodeCount, newStart, cols[..write], wts[..write]);
    }

    /// <summary>The distinct undirected edges (source &lt; target), in row order.</summary>
    public IEnumerable<WeightedEdge> Edges()
    {
        for (int i = 0; i < NodeCount; i++)
            for (int k = _rowStart[i]; k < _rowStart[i + 1]; k++)
                if (_columns[k] > i) yield return new WeightedEdge(i, _columns[k], _weights[k]);
    }

    /// <summary>The weight of the edge between <paramref name="a"/> and <paramref name="b"/> (0 when there is none).</summary>
    public double Weight(int a, int b)
    {
        var row = Neighbours(a);
        int k = row.BinarySearch(b);
        return k >= 0 ? NeighbourWeights(a)[k] : 0;
    }

    /// <summary>
    /// The subgraph induced by <paramref name="nodes"/>: node <c>i</c> of the result is <c>nodes[i]</c> here.
    /// </summary>
    public WeightedGraph Subgraph(ReadOnlySpan<int> nodes)
    {
        var index = new Dictionary<int, int>(nodes.Length);
        for (int i = 0; i < nodes.Length; i++) index[nodes[i]] = i;
        var rowStart = new int[nodes.Length + 1];
        var cols = new List<int>();
        var wts = new List<double>();
        for (int i = 0; i < nodes.Length; i++)
        {
            var nb = Neighbours(nodes[i]);
            var w = NeighbourWeights(nodes[i]);
            int start = cols.Count;
            for (int k = 0; k < nb.Length; k++)
                if (index.TryGetValue(nb[k], out int j)) { cols.Add(j); wts.Add(w[k]); }
            // Local ids follow the order of `nodes`, which need not be sorted: keep rows sorted for Weight().
            var c = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(cols)[start..];
            var ws = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(wts)[start..];
            c.Sort(ws);
            rowStart[i + 1] = cols.Count;
        }
        return new WeightedGraph(nodes.Length, rowStart, cols.ToArray(), wts.ToArray());
    }

    /// <summary>
    /// <c>y = A x</c> for the weighted adjacency matrix A (symmetric, zero diagonal).
    /// </summary>
    public void Multiply(ReadOnlySpan<double> x, Span<double> y)
    {
        if (x.Length != NodeCount || y.Length != NodeCount)
            throw new ArgumentException($"Vectors must have length {NodeCount}.");
        for (int i = 0; i < NodeCount; i++)
        {
            double s = 0;
            for (int k = _rowStart[i]; k < _rowStart[i + 1]; k++) s += _weights[k] * x[_columns[k]];
            y[i] = s;
        }
    }
}
