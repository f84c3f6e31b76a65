using Spm.Core.Randomness;

namespace Spm.Core.Atlas;

/// <summary>
/// Lloyd's k-means with k-means++ seeding (Arthur and Vassilvitskii), several seeded restarts keeping the lowest
/// within-cluster sum of squares. Deterministic for a seed.
/// </summary>
public static class KMeans
{
    /// <summary>Clusters <paramref name="count"/> points of <paramref name="dimension"/> coordinates each.</summary>
    /// <param name="points">Row-major coordinates, point i at [i·dimension, (i+1)·dimension).</param>
    /// <param name="count">The number of points.</param>
    /// <param name="dimension">Coordinates per point.</param>
    /// <param name="k">Clusters wanted (1..count).</param>
    /// <param name="seed">Seed of the seeding draws.</param>
    /// <param name="restarts">Independent k-means++ starts; the best is kept.</param>
    /// <param name="maxIterations">Lloyd iterations per start.</param>
    /// <returns>A label in 0..k-1 per point, and the best sum of squared distances.</returns>
    public static (int[] Labels, double Inertia) Cluster(ReadOnlySpan<double> points, int count, int dimension, int k, ulong seed, int restarts = 8, int maxIterations = 100)
    {
        if (points.Length != count * dimension) throw new ArgumentException($"Expected {count}×{dimension} coordinates, got {points.Length}.", nameof(points));
        if (k < 1 || k > count) throw new ArgumentOutOfRangeException(nameof(k), $"k must be in 1..{count}, got {k}.");
        var rng = new SeededRandom(seed);
        int[]? best = null;
        double bestInertia = double.PositiveInfinity;
        var labels = new int[count];
        var centers = new double[k * dimension];
        for (int r = 0; r < Math.Max(1, restarts); r++)
        {
            SeedPlusPlus(points, count, dimension, k, rng, centers);
            double inertia = Lloyd(points, count, dimension, k, centers, labels, maxIterations);
            if (inertia < bestInertia - 1e-12 * Math.Abs(bestInertia) || best is null)
            {
                bestInertia = inertia;
                best = (int[])labels.Clone();
            }
        }
        return (best!, bestInertia);
    }

    private static void SeedPlusPlus(ReadOnlySpan<double> x, int n, int d, int k, SeededRandom rng, double[] centers)
    {
        var dist = new double[n];
        int first = rng.NextInt(0, n);
        x.Slice(first * d, d).CopyTo(centers.AsSpan(0, d));
        for (int i = 0; i < n; i++) dist[i] = Squared(x.Slice(i * d, d), centers.AsSpan(0, d));
        for (int c = 1; c < k; c++)
        {
            double total = 0;
            foreach (var v in dist) total += v;
            int pick;
            if (total <= 0) pick = rng.NextInt(0, n); // every point sits on a center: any choice is as good
            else
            {
                // Draw a point with probability proportional to its squared distance to the nearest chosen center.
                double u = rng.NextDouble() * total, acc = 0;
                pick = n - 1;
                for (int i = 0; i < n; i++) { acc += dist[i]; if (acc >= u) { pick = i; break; } }
            }
            var center = centers.AsSpan(c * d, d);
            x.Slice(pick * d, d).CopyTo(center);
            for (int i = 0; i < n; i++) dist[i] = Math.Min(dist[i], Squared(x.Slice(i * d, d), center));
        }
    }

    private static double Lloyd(ReadOnlySpan<double> x, int n, int d, int k, double[] centers, int[] labels, int maxIterations)
    {
        var sums = new double[k * d];
        var sizes = new int[k];
        double inertia = 0;
        Array.Fill(labels, -1);
        for (int it = 0; it < maxIterations; it++)
        {
            bool changed = false;
            inertia = 0;
            for (int i = 0; i < n; i++)
            {
                var p = x.Slice(i * d, d);
                int arg = 0;
                double bestD = double.PositiveInfinity;
                for (int c = 0; c < k; c++)
                {
                    double dd = Squared(p, centers.AsSpan(c * d, d));
                    if (dd < bestD) { bestD = dd; arg = c; }
                }
                inertia += bestD;
                if (labels[i] != arg) { labels[i] = arg; changed = true; }
            }
            if (!changed) break;
            Array.Clear(sums);
            Array.Clear(sizes);
            for (int i = 0; i < n; i++)
            {
                sizes[labels[i]]++;
                var s = sums.AsSpan(labels[i] * d, d);
                var p = x.Slice(i * d, d);
                for (int j = 0; j < d; j++) s[j] += p[j];
            }
            for (int c = 0; c < k; c++)
            {
                // An emptied cluster keeps its old center (it may win points back); dividing by zero would not.
                if (sizes[c] == 0) continue;
                for (int j = 0; j < d; j++) centers[c * d + j] = sums[c * d + j] / sizes[c];
            }
        }
        return inertia;
    }

    private static double Squared(ReadOnlySpan<double> a, ReadOnlySpan<double> b)
    {
        double s = 0;
        for (int i = 0; i < a.Length; i++) { double t = a[i] - b[i]; s += t * t; }
        return s;
    }
}
