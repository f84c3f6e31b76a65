namespace Spm.Core.Atlas;

/// <summary>How a dense similarity matrix becomes a sparse graph.</summary>
/// <param name="Neighbours">Keep each node's k most similar others (an edge kept by either endpoint stays); 0 keeps all.</param>
/// <param name="Threshold">Drop similarities below this (after the kNN step). Similarities ≤ 0 are always dropped: edge weights must be positive.</param>
public sealed record SparsifyOptions(int Neighbours = 0, double Threshold = 0);

/// <summary>Graphs from pairwise similarities (concept embeddings, measured cross-effects).</summary>
public static class SimilarityGraph
{
    /// <summary>Builds a weighted graph whose edge weights are the kept similarities.</summary>
    /// <param name="similarity">A symmetric n × n matrix (the diagonal is ignored).</param>
    /// <param name="options">kNN and threshold sparsification.</param>
    /// <exception cref="ArgumentException">The matrix is not square, not symmetric or not finite.</exception>
    public static WeightedGraph FromSimilarities(double[,] similarity, SparsifyOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(similarity);
        options ??= new SparsifyOptions();
        int n = similarity.GetLength(0);
        if (similarity.GetLength(1) != n) throw new ArgumentException("The similarity matrix must be square.", nameof(similarity));
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
            {
                if (!double.IsFinite(similarity[i, j])) throw new ArgumentException($"Similarity ({i}, {j}) is not finite.", nameof(similarity));
                if (Math.Abs(similarity[i, j] - similarity[j, i]) > 1e-9 * Math.Max(1, Math.Abs(similarity[i, j])))
                    throw new ArgumentException($"The similarity matrix is not symmetric at ({i}, {j}).", nameof(similarity));
            }
        var keep = new bool[n, n];
        int k = options.Neighbours <= 0 ? n - 1 : Math.Min(options.Neighbours, n - 1);
        for (int i = 0; i < n; i++)
        {
            // Ties broken by index so the graph does not depend on sort stability.
            var order = Enumerable.Range(0, n).Where(j => j != i).OrderByDescending(j => similarity[i, j]).ThenBy(j => j).Take(k);
            foreach (int j in order) keep[i, j] = keep[j, i] = true;
        }
        var edges = new List<WeightedEdge>();
        for (int i = 0; i < n; i++)
            for (int j = i + 1; j < n; j++)
                if (keep[i, j] && similarity[i, j] >= options.Threshold && similarity[i, j] > 0)
                    edges.Add(new WeightedEdge(i, j, similarity[i, j]));
        return WeightedGraph.FromEdges(n, edges);
    }

    /// <summary>
    /// Cosine similarities of vectors after subtracting their mean: what the vectors share (a prompt template, the
    /// padding positions of a text encoder's output) would otherwise make every pair look alike.
    /// </summary>
    public static double[,] CenteredCosine(IReadOnlyList<float[]> vectors) => Cosine(vectors, center: true);

    /// <summary>Cosine similarities of vectors, optionally after subtracting their mean (see <see cref="CenteredCosine"/>).</summary>
    public static double[,] Cosine(IReadOnlyList<float[]> vectors, bool center)
    {
        ArgumentNullException.ThrowIfNull(vectors);
        int n = vectors.Count;
        if (n == 0) return new double[0, 0];
        int d = vectors[0].Length;
        if (vectors.Any(v => v.Length != d)) throw new ArgumentException("Vectors differ in length.", nameof(vectors));
        var mean = new double[d];
        if (center) foreach (var v in vectors) for (int j = 0; j < d; j++) mean[j] += v[j] / (double)n;
        var centered = vectors.Select(v => v.Select((x, j) => x - mean[j]).ToArray()).ToArray();
        var norms = centered.Select(v => Math.Sqrt(v.Sum(x => x * x))).ToArray();
        var sim = new double[n, n];
        for (int a = 0; a < n; a++)
            for (int b = a; b < n; b++)
            {
                double dot = 0;
                for (int j = 0; j < d; j++) dot += centered[a][j] * centered[b][j];
                double c = norms[a] > 0 && norms[b] > 0 ? dot / (norms[a] * norms[b]) : 0;
                sim[a, b] = sim[b, a] = a == b ? 1 : c;
            }
        return sim;
    }

    /// <summary>
    /// The weighted mean of similarity matrices of the same concepts: <c>sum_k w_k S_k / sum_k w_k</c>. Two readings of
    /// a concept that see different things (the text encoder's embedding, which keeps attributes apart by their
    /// phrasing, and what the UNet draws, which brings synonyms together) give one graph where both show.
    /// </summary>
    /// <exception cref="ArgumentException">No matrix, a weight that is negative or not finite, all weights zero, or matrices of different sizes.</exception>
    public static double[,] Blend(IReadOnlyList<(double[,] Similarity, double Weight)> parts)
    {
        ArgumentNullException.ThrowIfNull(parts);
        if (parts.Count == 0) throw new ArgumentException("No similarity matrix to blend.", nameof(parts));
        int n = parts[0].Similarity.GetLength(0);
        double total = 0;
        foreach (var (s, w) in parts)
        {
            ArgumentNullException.ThrowIfNull(s);
            if (s.GetLength(0) != n || s.GetLength(1) != n) throw new ArgumentException($"Similarity matrices differ in size ({s.GetLength(0)}x{s.GetLength(1)} against {n}x{n}).", nameof(parts));
            if (!double.IsFinite(w) || w < 0) throw new ArgumentException($"A blend weight must be finite and >= 0, got {w}.", nameof(parts));
            total += w;
        }
        if (total <= 0) throw new ArgumentException("The blend weights sum to zero.", nameof(parts));
        var blended = new double[n, n];
        foreach (var (s, w) in parts)
        {
            double share = w / total;
            for (int a = 0; a < n; a++)
                for (int b = 0; b < n; b++)
                    blended[a, b] += s[a, b] * share;
        }
        return blended;
    }
}
