using Spm.Core.Randomness;

namespace Spm.Core.Atlas;

/// <summary>
/// A hierarchical stochastic block model: a complete binary tree of depth <paramref name="Depth"/> whose 2^Depth
/// leaves are the bottom communities. Two nodes are joined with probability
/// <paramref name="Probabilities"/>[k], where k is the depth of their lowest common ancestor in the tree (0: they
/// split at the root; Depth: same bottom community).
/// </summary>
/// <param name="Depth">Tree depth d ≥ 1 (2^d bottom communities).</param>
/// <param name="BlockSizes">Nodes per bottom community (2^d entries), or one entry for equal sizes.</param>
/// <param name="Probabilities">d + 1 edge probabilities, index = depth of the lowest common ancestor.</param>
/// <param name="Seed">Seed of the edge draws.</param>
public sealed record HsbmConfig(int Depth, IReadOnlyList<int> BlockSizes, IReadOnlyList<double> Probabilities, ulong Seed = 0)
{
    /// <summary>The number of bottom communities, 2^Depth.</summary>
    public int Communities => 1 << Depth;

    /// <summary>The size of every bottom community (a single size repeated).</summary>
    public int[] Sizes() => BlockSizes.Count == 1 ? Enumerable.Repeat(BlockSizes[0], Communities).ToArray() : BlockSizes.ToArray();

    /// <summary>The total number of nodes.</summary>
    public int NodeCount => Sizes().Sum();

    /// <summary>
    /// The probabilities of the usual logarithmic-degree regime: <c>p_k = a_k · log(n) / n</c> for coefficients
    /// <paramref name="coefficients"/> (d + 1 of them, index = depth of the lowest common ancestor).
    /// </summary>
    public static double[] LogDegree(int nodeCount, IReadOnlyList<double> coefficients) =>
        coefficients.Select(a => Math.Min(1, a * Math.Log(nodeCount) / nodeCount)).ToArray();

    /// <summary>Checks the configuration.</summary>
    /// <exception cref="ArgumentException">A size or probability is out of range or their counts do not fit the depth.</exception>
    public void Validate()
    {
        if (Depth < 1 || Depth > 16) throw new ArgumentException($"The depth must be in 1..16, got {Depth}.");
        if (BlockSizes.Count != 1 && BlockSizes.Count != Communities)
            throw new ArgumentException($"Give one block size or {Communities} (2^{Depth}), got {BlockSizes.Count}.");
        if (BlockSizes.Any(s => s < 1)) throw new ArgumentException("Block sizes must be at least 1.");
        if (Probabilities.Count != Depth + 1)
            throw new ArgumentException($"Give {Depth + 1} probabilities (root split first, same community last), got {Probabilities.Count}.");
        if (Probabilities.Any(p => !(p >= 0 && p <= 1))) throw new ArgumentException("Probabilities must be in [0, 1].");
    }
}

/// <summary>A generated graph and its true hierarchy.</summary>
/// <param name="Graph">The graph (unit weights).</param>
/// <param name="Levels">levels[l-1][node]: the true community at level l (level 1 = the root's two halves, level d = the bottom communities).</param>
public sealed record HsbmSample(WeightedGraph Graph, int[][] Levels);

/// <summary>Draws graphs from a <see cref="HsbmConfig"/>.</summary>
public static class HsbmGenerator
{
    /// <summary>
    /// Draws one graph. Nodes are numbered block by block (block 0 first). Edges are drawn per block pair by
    /// skipping ahead geometrically, so the cost grows with the number of edges rather than n².
    /// </summary>
    public static HsbmSample Generate(HsbmConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        var sizes = config.Sizes();
        int blocks = sizes.Length, d = config.Depth;
        var start = new int[blocks + 1];
        for (int b = 0; b < blocks; b++) start[b + 1] = start[b] + sizes[b];
        int n = start[blocks];
        var rng = new SeededRandom(config.Seed);
        var edges = new List<WeightedEdge>();
        for (int a = 0; a < blocks; a++)
            for (int b = a; b < blocks; b++)
            {
                double p = config.Probabilities[LowestCommonAncestorDepth(a, b, d)];
                if (p <= 0) continue;
                long pairs = a == b ? (long)sizes[a] * (sizes[a] - 1) / 2 : (long)sizes[a] * sizes[b];
                foreach (long idx in Bernoulli(pairs, p, rng))
                {
                    int u, v;
                    if (a == b)
                    {
                        // Pair index over i < j within the block, row by row: row i holds (size - 1 - i) pairs.
                        (u, v) = TrianglePair(idx, sizes[a]);
                    }
                    else { u = (int)(idx / sizes[b]); v = (int)(idx % sizes[b]); }
                    edges.Add(new WeightedEdge(start[a] + u, start[b] + v, 1));
                }
            }
        var levels = new int[d][];
        for (int l = 1; l <= d; l++)
        {
            levels[l - 1] = new int[n];
            for (int b = 0; b < blocks; b++)
                for (int i = start[b]; i < start[b + 1]; i++) levels[l - 1][i] = b >> (d - l);
        }
        return new HsbmSample(WeightedGraph.FromEdges(n, edges), levels);
    }

    /// <summary>The depth of the lowest common ancestor of bottom communities a and b in a tree of depth d.</summary>
    public static int LowestCommonAncestorDepth(int a, int b, int depth)
    {
        int x = a ^ b, bits = 0;
        while (x != 0) { bits++; x >>= 1; }
        return depth - bits;
    }

    private static IEnumerable<long> Bernoulli(long count, double p, SeededRandom rng)
    {
        if (p >= 1)
        {
            for (long i = 0; i < count; i++) yield return i;
            yield break;
        }
        double logQ = Math.Log(1 - p);
        long idx = -1;
        while (true)
        {
            // Gap to the next success of independent Bernoulli(p) trials: geometric, by inversion.
            double u = 1 - rng.NextDouble();
            idx += 1 + (long)Math.Floor(Math.Log(u) / logQ);
            if (idx >= count) yield break;
            yield return idx;
        }
    }

    private static (int, int) TrianglePair(long idx, int size)
    {
        // Row i starts at S(i) = i(2·size − i − 1)/2: invert the quadratic, then correct for rounding.
        double m = 2.0 * size - 1;
        int i = (int)Math.Max(0, Math.Floor((m - Math.Sqrt(m * m - 8.0 * idx)) / 2));
        static long RowStart(long i, long size) => i * (2 * size - i - 1) / 2;
        while (i > 0 && RowStart(i, size) > idx) i--;
        while (RowStart(i + 1, size) <= idx) i++;
        return (i, i + 1 + (int)(idx - RowStart(i, size)));
    }
}

/// <summary>Comparisons of partitions (labels are arbitrary: only which nodes share a label matters).</summary>
public static class Partitions
{
    /// <summary>True when the two labelings define the same partition (exact recovery up to renaming).</summary>
    public static bool Same(ReadOnlySpan<int> a, ReadOnlySpan<int> b)
    {
        if (a.Length != b.Length) return false;
        var ab = new Dictionary<int, int>();
        var ba = new Dictionary<int, int>();
        for (int i = 0; i < a.Length; i++)
        {
            if (ab.TryGetValue(a[i], out int x) ? x != b[i] : !ab.TryAdd(a[i], b[i])) return false;
            if (ba.TryGetValue(b[i], out int y) ? y != a[i] : !ba.TryAdd(b[i], a[i])) return false;
        }
        return true;
    }

    /// <summary>The share of nodes labelled correctly under the best one-to-one matching of labels (greedy on overlaps).</summary>
    public static double Agreement(ReadOnlySpan<int> truth, ReadOnlySpan<int> found)
    {
        if (truth.Length != found.Length) throw new ArgumentException("Labelings differ in length.");
        if (truth.Length == 0) return 1;
        var overlap = new Dictionary<(int, int), int>();
        for (int i = 0; i < truth.Length; i++)
            overlap[(truth[i], found[i])] = overlap.GetValueOrDefault((truth[i], found[i])) + 1;
        var usedT = new HashSet<int>();
        var usedF = new HashSet<int>();
        int correct = 0;
        foreach (var kv in overlap.OrderByDescending(kv => kv.Value).ThenBy(kv => kv.Key))
            if (!usedT.Contains(kv.Key.Item1) && !usedF.Contains(kv.Key.Item2))
            {
                usedT.Add(kv.Key.Item1); usedF.Add(kv.Key.Item2); correct += kv.Value;
            }
        return (double)correct / truth.Length;
    }
}
