namespace Spm.Core.Atlas;

/// <summary>Which hierarchical community detection to run.</summary>
public enum HierarchyMethod
{
    /// <summary>Finest communities first, then merged by a linkage (<see cref="BottomUpClustering"/>).</summary>
    BottomUp,

    /// <summary>Recursive spectral bisection (<see cref="TopDownClustering"/>), the baseline.</summary>
    TopDown,
}

/// <summary>A hierarchy found on a graph: each node's finest community and the tree over those communities.</summary>
/// <param name="Communities">The finest community of each node (0..CommunityCount-1): the leaves of <paramref name="Tree"/>.</param>
/// <param name="Tree">The dendrogram over the finest communities.</param>
public sealed record HierarchyResult(int[] Communities, Dendrogram Tree)
{
    /// <summary>The number of finest communities.</summary>
    public int CommunityCount => Tree.LeafCount;

    /// <summary>
    /// Node labels for levels 1..<paramref name="depth"/> (level 1 the root's split, level <paramref name="depth"/>
    /// the finest communities; see <see cref="Dendrogram.LeafLevels"/>), each level numbered 0, 1, ... in node order.
    /// </summary>
    public int[][] Levels(int depth)
    {
        var leafLevels = Tree.LeafLevels(depth);
        var result = new int[depth][];
        for (int l = 0; l < depth; l++)
        {
            var raw = new int[Communities.Length];
            for (int i = 0; i < raw.Length; i++) raw[i] = leafLevels[l][Communities[i]];
            result[l] = SpectralClustering.Relabel(raw);
        }
        return result;
    }
}

/// <summary>Settings of the bottom-up algorithm.</summary>
/// <param name="Communities">The number of finest communities; null estimates it with <paramref name="CountMethod"/>.</param>
/// <param name="CountMethod">The estimate used when <paramref name="Communities"/> is null.</param>
/// <param name="MaxCommunities">Largest estimate allowed.</param>
/// <param name="Linkage">How groups of communities are compared while merging.</param>
/// <param name="Spectral">The spectral clustering settings (seed, refinement).</param>
public sealed record BottomUpOptions(
    int? Communities = null,
    CommunityCountMethod CountMethod = CommunityCountMethod.Auto,
    int MaxCommunities = 64,
    Linkage Linkage = Linkage.Average,
    SpectralOptions? Spectral = null);

/// <summary>
/// Bottom-up hierarchical community detection (after Dreveton, Kuroda, Grossglauser and Thiran, "When Does
/// Bottom-up Beat Top-down in Hierarchical Community Detection?"): (1) spectral clustering into the finest
/// communities, (2) the connection weight of every community pair estimated as the edge density between them,
/// (3) agglomerative merging of communities by a linkage into a dendrogram. Every level is read off one clustering
/// of the whole graph, and the merge decisions pool all edges between two groups, so weak splits near the top of
/// the hierarchy are resolved as soon as the finest communities are.
/// </summary>
public static class BottomUpClustering
{
    /// <summary>Runs the three steps on <paramref name="graph"/>.</summary>
    /// <param name="graph">The graph.</param>
    /// <param name="options">Settings (null: defaults, estimated community count, average linkage).</param>
    /// <param name="progress">Receives one line per step.</param>
    /// <param name="cancellationToken">Cancels the eigensolvers and refinement.</param>
    public static HierarchyResult Run(WeightedGraph graph, BottomUpOptions? options = null, IProgress<string>? progress = null, CancellationToken cancellationToken = default)
        => RunSplit(graph, graph, options, progress, cancellationToken);

    /// <summary>
    /// The bottom-up algorithm with its two levels read from two graphs on the same nodes: the finest communities
    /// (step 1, and the community count when it is estimated) from <paramref name="communityGraph"/>, the connection
    /// weights between communities (step 2), and so every merge of the tree, from <paramref name="mergeGraph"/>. For
    /// two readings of the same concepts that see different levels: one that tells which nodes are the same thing
    /// (the finest level) and one that tells which group a node belongs to (the levels above). With the same graph
    /// twice this is <see cref="Run"/>.
    /// </summary>
    /// <param name="communityGraph">The graph the finest communities are found on.</param>
    /// <param name="mergeGraph">The graph whose edge densities between those communities are merged on (same node count).</param>
    /// <param name="options">Settings, as for <see cref="Run"/>.</param>
    /// <param name="progress">Receives one line per step.</param>
    /// <param name="cancellationToken">Cancels the eigensolvers and refinement.</param>
    /// <exception cref="ArgumentException">The graphs differ in node count.</exception>
    public static HierarchyResult RunSplit(WeightedGraph communityGraph, WeightedGraph mergeGraph, BottomUpOptions? options = null, IProgress<string>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(communityGraph);
        ArgumentNullException.ThrowIfNull(mergeGraph);
        if (mergeGraph.NodeCount != communityGraph.NodeCount)
            throw new ArgumentException($"The merge graph has {mergeGraph.NodeCount} nodes, the community graph {communityGraph.NodeCount}.", nameof(mergeGraph));
        var graph = communityGraph;
        options ??= new BottomUpOptions();
        var spectral = options.Spectral ?? SpectralOptions.Default;
        int k = options.Communities ?? SpectralClustering.EstimateCommunityCount(graph, options.CountMethod, options.MaxCommunities, spectral.Seed, cancellationToken);
        if (k < 1 || k > graph.NodeCount) throw new ArgumentOutOfRangeException(nameof(options), $"The number of communities must be in 1..{graph.NodeCount}, got {k}.");
        progress?.Report(options.Communities is null ? $"estimated {k} finest communities ({options.CountMethod})" : $"{k} finest communities (given)");
        var labels = SpectralClustering.Cluster(graph, k, spectral, cancellationToken);
        int found = labels.Length == 0 ? 0 : labels.Max() + 1;
        progress?.Report($"spectral clustering: {found} communities");
        var (weights, sizes) = SpectralClustering.BlockWeights(mergeGraph, labels, found);
        var tree = Agglomerate(weights, sizes, options.Linkage);
        progress?.Report($"merged with {options.Linkage.ToString().ToLowerInvariant()} linkage{(ReferenceEquals(mergeGraph, communityGraph) ? "" : " on the merge graph")}");
        return new HierarchyResult(labels, tree);
    }

    /// <summary>
    /// Agglomerative merging of communities. Starts from each community alone and repeatedly merges the two groups
    /// with the highest linkage (ties: the pair of oldest groups), recording the linkage as the merge's similarity.
    /// </summary>
    /// <param name="blockWeights">Total edge weight between communities a and b (symmetric; the diagonal is ignored).</param>
    /// <param name="sizes">The number of nodes in each community (all positive).</param>
    /// <param name="linkage">How groups are compared.</param>
    public static Dendrogram Agglomerate(double[,] blockWeights, IReadOnlyList<int> sizes, Linkage linkage = Linkage.Average)
    {
        ArgumentNullException.ThrowIfNull(blockWeights);
        ArgumentNullException.ThrowIfNull(sizes);
        int k = sizes.Count;
        if (blockWeights.GetLength(0) != k || blockWeights.GetLength(1) != k)
            throw new ArgumentException($"Expected a {k}×{k} weight matrix.", nameof(blockWeights));
        if (sizes.Any(s => s <= 0)) throw new ArgumentException("Every community needs at least one node.", nameof(sizes));
        // Slot s holds the group with dendrogram id ids[s]; weight[s,t] is the total weight between groups s and t
        // (what average linkage needs), sim[s,t] the current linkage value.
        var ids = Enumerable.Range(0, k).ToList();
        var count = sizes.Select(s => (double)s).ToList();
        var weight = new List<double[]>();
        var sim = new List<double[]>();
        for (int a = 0; a < k; a++)
        {
            weight.Add(new double[k]);
            sim.Add(new double[k]);
            for (int b = 0; b < k; b++)
            {
                weight[a][b] = blockWeights[a, b];
                sim[a][b] = blockWeights[a, b] / ((double)sizes[a] * sizes[b]);
            }
        }
        var alive = Enumerable.Repeat(true, k).ToList();
        var merges = new List<DendrogramMerge>(Math.Max(0, k - 1));
        for (int step = 0; step < k - 1; step++)
        {
            int bs = -1, bt = -1;
            double best = double.NegativeInfinity;
            for (int s = 0; s < ids.Count; s++)
            {
                if (!alive[s]) continue;
                for (int t = s + 1; t < ids.Count; t++)
                    if (alive[t] && sim[s][t] > best) { best = sim[s][t]; bs = s; bt = t; }
            }
            merges.Add(new DendrogramMerge(ids[bs], ids[bt], best));
            // The merged group takes slot bs; slot bt dies.
            ids[bs] = k + step;
            alive[bt] = false;
            double merged = count[bs] + count[bt];
            for (int u = 0; u < ids.Count; u++)
            {
                if (!alive[u] || u == bs) continue;
                double w = weight[bs][u] + weight[bt][u];
                double v = linkage switch
                {
                    Linkage.Average => w / (merged * count[u]),
                    Linkage.Single => Math.Max(sim[bs][u], sim[bt][u]),
                    Linkage.Complete => Math.Min(sim[bs][u], sim[bt][u]),
                    _ => throw new ArgumentOutOfRangeException(nameof(linkage)),
                };
                weight[bs][u] = weight[u][bs] = w;
                sim[bs][u] = sim[u][bs] = v;
            }
            count[bs] = merged;
        }
        return new Dendrogram(k, merges);
    }
}

/// <summary>Settings of the top-down baseline.</summary>
/// <param name="MaxDepth">Stop splitting at this depth (the root's split is depth 1).</param>
/// <param name="MinSize">Do not split a group into parts smaller than this.</param>
/// <param name="StopWhenNoStructure">
/// Also stop when the group's own subgraph shows fewer than two communities by the Bethe Hessian (see
/// <see cref="CommunityCountMethod.BetheHessian"/>): the stopping rule when the depth is not known.
/// </param>
/// <param name="Spectral">The spectral clustering settings used for every bisection.</param>
public sealed record TopDownOptions(int MaxDepth, int MinSize = 2, bool StopWhenNoStructure = true, SpectralOptions? Spectral = null);

/// <summary>
/// Top-down hierarchical community detection, the baseline: split the graph in two by spectral clustering (with
/// the same likelihood refinement, under a two-block model), then split each part's induced subgraph again, until
/// the stopping rule holds. Each split sees only averaged connection densities between its two halves, and an error
/// near the top is never undone below.
/// </summary>
public static class TopDownClustering
{
    private sealed class Node
    {
        public required int[] Members;
        public Node? Left, Right;
        public double Similarity;
    }

    /// <summary>Runs recursive bisection on <paramref name="graph"/>.</summary>
    public static HierarchyResult Run(WeightedGraph graph, TopDownOptions options, IProgress<string>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(graph);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxDepth, 1);
        var spectral = options.Spectral ?? SpectralOptions.Default;
        var root = Split(graph, Enumerable.Range(0, graph.NodeCount).ToArray(), 0, options, spectral, progress, cancellationToken);
        // Number leaves left to right and merges children-first, as Dendrogram wants.
        var leaves = new List<Node>();
        var merges = new List<DendrogramMerge>();
        int leafCount = CountLeaves(root);
        int Number(Node node)
        {
            if (node.Left is null) { leaves.Add(node); return leaves.Count - 1; }
            int l = Number(node.Left), r = Number(node.Right!);
            merges.Add(new DendrogramMerge(l, r, node.Similarity));
            return leafCount + merges.Count - 1;
        }
        Number(root);
        var communities = new int[graph.NodeCount];
        for (int c = 0; c < leaves.Count; c++)
            foreach (int v in leaves[c].Members) communities[v] = c;
        return new HierarchyResult(communities, new Dendrogram(leafCount, merges));
    }

    private static int CountLeaves(Node n) => n.Left is null ? 1 : CountLeaves(n.Left) + CountLeaves(n.Right!);

    private static Node Split(WeightedGraph graph, int[] members, int depth, TopDownOptions options, SpectralOptions spectral, IProgress<string>? progress, CancellationToken ct)
    {
        ct.ThrowIfCancellationRequested();
        var node = new Node { Members = members };
        if (depth >= options.MaxDepth || members.Length < 2 * Math.Max(1, options.MinSize)) return node;
        var sub = graph.Subgraph(members);
        if (options.StopWhenNoStructure && SpectralClustering.EstimateCommunityCount(sub, CommunityCountMethod.BetheHessian, 2, spectral.Seed, ct) < 2)
        {
            progress?.Report($"depth {depth}: {members.Length} nodes show no further structure");
            return node;
        }
        var labels = SpectralClustering.Cluster(sub, 2, spectral, ct);
        var left = members.Where((_, i) => labels[i] == 0).ToArray();
        var right = members.Where((_, i) => labels[i] != 0).ToArray();
        if (left.Length < options.MinSize || right.Length < options.MinSize) return node;
        var (w, sizes) = SpectralClustering.BlockWeights(sub, labels, 2);
        node.Similarity = w[0, 1] / ((double)sizes[0] * sizes[1]);
        progress?.Report($"depth {depth + 1}: split {members.Length} nodes into {left.Length} + {right.Length}");
        node.Left = Split(graph, left, depth + 1, options, spectral, progress, ct);
        node.Right = Split(graph, right, depth + 1, options, spectral, progress, ct);
        return node;
    }
}
