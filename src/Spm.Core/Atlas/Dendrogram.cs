namespace Spm.Core.Atlas;

/// <summary>One internal node of a <see cref="Dendrogram"/>: the union of two children.</summary>
/// <param name="Left">A child: a leaf id (0..LeafCount-1) or LeafCount + the index of an earlier merge.</param>
/// <param name="Right">The other child.</param>
/// <param name="Similarity">
/// How strongly the two children are connected (the linkage value: an edge density). Higher means merged earlier;
/// along any path to the root it should not increase, and a node whose similarity exceeds its child's is an inversion.
/// </param>
public readonly record struct DendrogramMerge(int Left, int Right, double Similarity);

/// <summary>
/// A binary tree over <see cref="LeafCount"/> leaves (the finest communities). Node ids 0..LeafCount-1 are leaves;
/// id LeafCount + i is <see cref="Merges"/>[i], whose children have smaller ids; the last merge is the root.
/// </summary>
public sealed class Dendrogram
{
    private readonly int[] _parent;

    /// <summary>Builds a tree; every node but the root must be the child of exactly one merge.</summary>
    /// <exception cref="ArgumentException">The merges do not form one binary tree over the leaves.</exception>
    public Dendrogram(int leafCount, IReadOnlyList<DendrogramMerge> merges)
    {
        ArgumentNullException.ThrowIfNull(merges);
        ArgumentOutOfRangeException.ThrowIfLessThan(leafCount, 1);
        if (merges.Count != leafCount - 1) throw new ArgumentException($"A binary tree over {leafCount} leaves has {leafCount - 1} merges, got {merges.Count}.", nameof(merges));
        LeafCount = leafCount;
        Merges = merges.ToArray();
        _parent = new int[2 * leafCount - 1];
        Array.Fill(_parent, -1);
        for (int i = 0; i < merges.Count; i++)
        {
            int id = leafCount + i;
            foreach (int c in new[] { merges[i].Left, merges[i].Right })
            {
                if (c < 0 || c >= id) throw new ArgumentException($"Merge {i} has child {c}; children must be earlier nodes.", nameof(merges));
                if (_parent[c] != -1) throw new ArgumentException($"Node {c} has two parents.", nameof(merges));
                _parent[c] = id;
            }
        }
    }

    /// <summary>The number of leaves.</summary>
    public int LeafCount { get; }

    /// <summary>The internal nodes, children before parents.</summary>
    public IReadOnlyList<DendrogramMerge> Merges { get; }

    /// <summary>The root's id (leaf 0 when there is a single leaf).</summary>
    public int Root => 2 * LeafCount - 2;

    /// <summary>The parent of a node, or -1 for the root.</summary>
    public int Parent(int node) => _parent[node];

    /// <summary>The children of an internal node (id ≥ LeafCount).</summary>
    public (int Left, int Right) Children(int node) => (Merges[node - LeafCount].Left, Merges[node - LeafCount].Right);

    /// <summary>The number of edges from <paramref name="node"/> up to the root.</summary>
    public int Depth(int node)
    {
        int d = 0;
        for (int p = _parent[node]; p != -1; p = _parent[p]) d++;
        return d;
    }

    /// <summary>The leaves under a node, in left-to-right order.</summary>
    public IReadOnlyList<int> Leaves(int node)
    {
        var result = new List<int>();
        var stack = new Stack<int>();
        stack.Push(node);
        while (stack.Count > 0)
        {
            int x = stack.Pop();
            if (x < LeafCount) { result.Add(x); continue; }
            var (l, r) = Children(x);
            stack.Push(r);
            stack.Push(l);
        }
        return result;
    }

    /// <summary>
    /// Partitions of the leaves for levels 1..<paramref name="depth"/>: at level l &lt; depth each leaf takes the
    /// id of its ancestor l edges below the root (or its own when it is shallower), so level 1 is the root's split;
    /// level <paramref name="depth"/> is the leaves themselves (the finest communities).
    /// </summary>
    /// <returns>levels[l-1][leaf] = a label (labels are node ids; only the partition matters).</returns>
    public int[][] LeafLevels(int depth)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(depth, 1);
        var levels = new int[depth][];
        for (int l = 1; l <= depth; l++)
        {
            levels[l - 1] = new int[LeafCount];
            for (int leaf = 0; leaf < LeafCount; leaf++)
            {
                if (l == depth) { levels[l - 1][leaf] = leaf; continue; }
                // Walk up to the ancestor at depth l from the root.
                int node = leaf, d = Depth(leaf);
                while (d > l) { node = _parent[node]; d--; }
                levels[l - 1][leaf] = node;
            }
        }
        return levels;
    }

    /// <summary>
    /// Internal nodes whose similarity is higher than that of an internal child: the finer split separates groups
    /// less connected than the coarser one above it, which no monotone (ultrametric) tree does.
    /// </summary>
    public int CountInversions()
    {
        int count = 0;
        for (int i = 0; i < Merges.Count; i++)
        {
            var m = Merges[i];
            foreach (int c in new[] { m.Left, m.Right })
                if (c >= LeafCount && Merges[c - LeafCount].Similarity < m.Similarity - 1e-12 * Math.Abs(m.Similarity)) { count++; break; }
        }
        return count;
    }
}
