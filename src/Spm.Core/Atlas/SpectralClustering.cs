namespace Spm.Core.Atlas;

/// <summary>How the number of finest communities is estimated when it is not given.</summary>
public enum CommunityCountMethod
{
    /// <summary><see cref="BetheHessian"/> on unweighted graphs (all weights 1), <see cref="Eigengap"/> on weighted ones.</summary>
    Auto,

    /// <summary>
    /// The number of negative eigenvalues of the Bethe Hessian H(r) = (r² − 1) I − r A + D with
    /// r = sqrt(Σd² / Σd − 1) (Saade, Krzakala and Zdeborová): every community structure detectable above the noise
    /// bulk gives one, including the weak splits near the top of a hierarchy that an eigengap overlooks.
    /// Meant for unweighted (0/1) adjacency.
    /// </summary>
    BetheHessian,

    /// <summary>
    /// The largest gap between consecutive top eigenvalues of the regularized normalized adjacency (at least 2).
    /// Works with any positive weights, but on a hierarchy it tends to stop at the strongest (coarsest) level.
    /// </summary>
    Eigengap,
}

/// <summary>Settings of the spectral clustering step.</summary>
/// <param name="Seed">Seed of the eigensolver start vector and of k-means (same seed, same labels).</param>
/// <param name="Refine">
/// After k-means, reassign each node to the community under which its edges are most likely (a Poisson block
/// model with the connection densities estimated from the current labels), until nothing changes. Spectral
/// clustering alone leaves a few misplaced nodes; exact recovery needs this clean-up.
/// </param>
/// <param name="MaxRefinePasses">Upper bound on refinement passes.</param>
/// <param name="KMeansRestarts">k-means++ restarts.</param>
public sealed record SpectralOptions(ulong Seed = 0, bool Refine = true, int MaxRefinePasses = 10, int KMeansRestarts = 8)
{
    /// <summary>The defaults.</summary>
    public static SpectralOptions Default { get; } = new();
}

/// <summary>
/// Spectral clustering of a weighted graph: the top eigenvectors of the regularized normalized adjacency
/// D_τ^(-1/2) A D_τ^(-1/2) (D_τ = D + τI, τ the mean degree, which keeps low-degree nodes of sparse graphs from
/// dominating the embedding), rows scaled to unit length, k-means, then an optional likelihood refinement.
/// </summary>
public static class SpectralClustering
{
    /// <summary>Splits the nodes of <paramref name="graph"/> into <paramref name="k"/> communities (labels 0..k-1).</summary>
    public static int[] Cluster(WeightedGraph graph, int k, SpectralOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(graph);
        options ??= SpectralOptions.Default;
        int n = graph.NodeCount;
        if (k < 1 || k > n) throw new ArgumentOutOfRangeException(nameof(k), $"The number of communities must be in 1..{n}, got {k}.");
        if (k == 1) return new int[n];
        var eig = SymmetricEigensolver.Largest(n, k, NormalizedAdjacency(graph), options.Seed, 1e-8, cancellationToken);
        var points = new double[n * k];
        for (int i = 0; i < n; i++)
        {
            double norm = 0;
            for (int j = 0; j < k; j++) { double v = eig.Vectors[j][i]; points[i * k + j] = v; norm += v * v; }
            if (norm > 0)
            {
                norm = Math.Sqrt(norm);
                for (int j = 0; j < k; j++) points[i * k + j] /= norm;
            }
        }
        var (labels, _) = KMeans.Cluster(points, n, k, k, options.Seed, options.KMeansRestarts);
        if (options.Refine) labels = RefineByLikelihood(graph, labels, k, options.MaxRefinePasses, cancellationToken);
        return Relabel(labels);
    }

    /// <summary>The operator x ↦ D_τ^(-1/2) A D_τ^(-1/2) x with τ the mean weighted degree.</summary>
    public static SymmetricOperator NormalizedAdjacency(WeightedGraph graph)
    {
        ArgumentNullException.ThrowIfNull(graph);
        int n = graph.NodeCount;
        var deg = graph.Degrees;
        double tau = 0;
        foreach (var d in deg) tau += d;
        tau = n == 0 ? 0 : tau / n;
        var inv = new double[n];
        for (int i = 0; i < n; i++) inv[i] = deg[i] + tau > 0 ? 1 / Math.Sqrt(deg[i] + tau) : 0;
        var scratch = new double[n];
        return (x, y) =>
        {
            for (int i = 0; i < n; i++) scratch[i] = x[i] * inv[i];
            graph.Multiply(scratch, y);
            for (int i = 0; i < n; i++) y[i] *= inv[i];
        };
    }

    /// <summary>Estimates the number of communities (1..<paramref name="maxCount"/>).</summary>
    /// <param name="graph">The graph.</param>
    /// <param name="method">Which estimate (see <see cref="CommunityCountMethod"/>).</param>
    /// <param name="maxCount">Largest answer.</param>
    /// <param name="seed">Eigensolver seed.</param>
    /// <param name="cancellationToken">Cancels the eigensolver.</param>
    public static int EstimateCommunityCount(WeightedGraph graph, CommunityCountMethod method = CommunityCountMethod.Auto, int maxCount = 64, ulong seed = 0, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(graph);
        int n = graph.NodeCount;
        if (n <= 2) return n;
        maxCount = Math.Clamp(maxCount, 1, n - 1);
        if (method == CommunityCountMethod.Auto)
            method = graph.Edges().All(e => e.Weight == 1) ? CommunityCountMethod.BetheHessian : CommunityCountMethod.Eigengap;
        return method == CommunityCountMethod.BetheHessian
            ? BetheHessianCount(graph, maxCount, seed, cancellationToken)
            : EigengapCount(graph, maxCount, seed, cancellationToken);
    }

    private static int EigengapCount(WeightedGraph graph, int maxCount, ulong seed, CancellationToken ct)
    {
        int want = Math.Min(graph.NodeCount, maxCount + 1);
        var values = SymmetricEigensolver.Largest(graph.NodeCount, want, NormalizedAdjacency(graph), seed, 1e-8, ct).Values;
        int best = 2;
        double gap = double.NegativeInfinity;
        for (int k = 2; k < values.Length; k++)
            if (values[k - 1] - values[k] > gap) { gap = values[k - 1] - values[k]; best = k; }
        return Math.Min(best, maxCount);
    }

    private static int BetheHessianCount(WeightedGraph graph, int maxCount, ulong seed, CancellationToken ct)
    {
        int n = graph.NodeCount;
        var deg = graph.Degrees.ToArray();
        double s1 = 0, s2 = 0, dmax = 0;
        foreach (var d in deg) { s1 += d; s2 += d * d; dmax = Math.Max(dmax, d); }
        if (s1 == 0) return 1;
        double r = Math.Sqrt(Math.Max(s2 / s1 - 1, 1e-6));
        // Smallest eigenvalues of H are the largest of S = σI − H, with σ ≥ λmax(H) by Gershgorin (row i of H has
        // diagonal r² − 1 + d_i and off-diagonal absolute sum r d_i); H < 0 ⇔ S > σ.
        double sigma = r * r - 1 + (1 + r) * dmax;
        var ax = new double[n];
        SymmetricOperator s = (x, y) =>
        {
            graph.Multiply(x, ax);
            for (int i = 0; i < n; i++) y[i] = (sigma - r * r + 1 - deg[i]) * x[i] + r * ax[i];
        };
        for (int want = Math.Min(16, maxCount + 1); ; want = Math.Min(2 * want, maxCount + 1))
        {
            var values = SymmetricEigensolver.Largest(n, want, s, seed, 1e-10, ct).Values;
            int negative = values.Count(v => v > sigma);
            if (negative < want || want >= maxCount + 1) return Math.Clamp(negative, 1, maxCount);
        }
    }

    /// <summary>
    /// Connection densities between communities: entry (a, b) is the total edge weight between a and b divided by
    /// the number of node pairs |a|·|b| (within a community: by |a|(|a| − 1)/2). This is the estimate of the
    /// inter-community connection weight the bottom-up algorithm merges on.
    /// </summary>
    public static double[,] ConnectionDensities(WeightedGraph graph, ReadOnlySpan<int> labels, int k)
    {
        var (weights, sizes) = BlockWeights(graph, labels, k);
        var dens = new double[k, k];
        for (int a = 0; a < k; a++)
            for (int b = 0; b < k; b++)
            {
                double pairs = a == b ? sizes[a] * (sizes[a] - 1) / 2.0 : (double)sizes[a] * sizes[b];
                dens[a, b] = pairs > 0 ? weights[a, b] / pairs : 0;
            }
        return dens;
    }

    /// <summary>Total edge weight between each pair of communities (each edge once) and community sizes.</summary>
    public static (double[,] Weights, int[] Sizes) BlockWeights(WeightedGraph graph, ReadOnlySpan<int> labels, int k)
    {
        ArgumentNullException.ThrowIfNull(graph);
        if (labels.Length != graph.NodeCount) throw new ArgumentException($"Expected {graph.NodeCount} labels, got {labels.Length}.", nameof(labels));
        var w = new double[k, k];
        var sizes = new int[k];
        for (int i = 0; i < graph.NodeCount; i++)
        {
            int a = labels[i];
            if ((uint)a >= (uint)k) throw new ArgumentException($"Label {a} of node {i} is outside 0..{k - 1}.", nameof(labels));
            sizes[a]++;
            var nb = graph.Neighbours(i);
            var wt = graph.NeighbourWeights(i);
            for (int t = 0; t < nb.Length; t++)
                if (nb[t] > i) { int b = labels[nb[t]]; w[a, b] += wt[t]; if (a != b) w[b, a] += wt[t]; }
        }
        return (w, sizes);
    }

    /// <summary>
    /// Reassigns every node to the community that maximizes its Poisson block-model log-likelihood
    /// Σ_b [ s_b log B(a,b) − m_b B(a,b) ] (s_b its edge weight into b, m_b the other nodes of b), with B the
    /// densities of the current labels; repeats until stable. Stops early rather than empty a community.
    /// </summary>
    public static int[] RefineByLikelihood(WeightedGraph graph, int[] labels, int k, int maxPasses = 10, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(graph);
        ArgumentNullException.ThrowIfNull(labels);
        int n = graph.NodeCount;
        var current = (int[])labels.Clone();
        var next = new int[n];
        var s = new double[k];
        for (int pass = 0; pass < maxPasses; pass++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var dens = ConnectionDensities(graph, current, k);
            var sizes = new int[k];
            foreach (var l in current) sizes[l]++;
            var logB = new double[k, k];
            for (int a = 0; a < k; a++)
                for (int b = 0; b < k; b++)
                {
                    // Clamp so an empty block pair (density 0) costs a large finite penalty instead of −∞.
                    dens[a, b] = Math.Max(dens[a, b], 1e-12);
                    logB[a, b] = Math.Log(dens[a, b]);
                }
            bool changed = false;
            var newSizes = new int[k];
            for (int i = 0; i < n; i++)
            {
                Array.Clear(s);
                var nb = graph.Neighbours(i);
                var wt = graph.NeighbourWeights(i);
                for (int t = 0; t < nb.Length; t++) s[current[nb[t]]] += wt[t];
                int own = current[i], arg = own;
                double best = double.NegativeInfinity;
                for (int a = 0; a < k; a++)
                {
                    double score = 0;
                    for (int b = 0; b < k; b++)
                        score += s[b] * logB[a, b] - (sizes[b] - (b == own ? 1 : 0)) * dens[a, b];
                    if (score > best + 1e-12) { best = score; arg = a; }
                }
                next[i] = arg;
                newSizes[arg]++;
                if (arg != own) changed = true;
            }
            if (!changed || newSizes.Any(c => c == 0)) break;
            (current, next) = (next, current);
        }
        return current;
    }

    /// <summary>Labels renumbered 0, 1, ... in order of first appearance (a canonical form of the partition).</summary>
    public static int[] Relabel(ReadOnlySpan<int> labels)
    {
        var map = new Dictionary<int, int>();
        var result = new int[labels.Length];
        for (int i = 0; i < labels.Length; i++)
        {
            if (!map.TryGetValue(labels[i], out int v)) { v = map.Count; map[labels[i]] = v; }
            result[i] = v;
        }
        return result;
    }
}
