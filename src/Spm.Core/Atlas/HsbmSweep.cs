using System.Diagnostics;

namespace Spm.Core.Atlas;

/// <summary>
/// The benchmark of the atlas: bottom-up against top-down on generated hierarchical SBMs across signal-to-noise
/// ratios. At ratio s the edge probabilities are <c>p_k = s · Shape[k] · log(n) / n</c> (k the depth of the lowest
/// common ancestor), so s scales every level's signal and its noise together.
/// </summary>
/// <param name="Depth">Tree depth (2^Depth bottom communities).</param>
/// <param name="BlockSize">Nodes per bottom community.</param>
/// <param name="Shape">Depth + 1 coefficients, root split first, same community last.</param>
/// <param name="Snrs">The ratios s of the sweep.</param>
/// <param name="GraphsPerPoint">Graphs drawn per ratio (both methods run on the same graphs).</param>
/// <param name="Seed">Base seed: graph g of point i uses Seed + 1000·i + g.</param>
/// <param name="Linkage">Bottom-up linkage.</param>
public sealed record HsbmSweepConfig(int Depth, int BlockSize, IReadOnlyList<double> Shape, IReadOnlyList<double> Snrs, int GraphsPerPoint = 20, ulong Seed = 1, Linkage Linkage = Linkage.Average);

/// <summary>One method's results at one ratio.</summary>
/// <param name="LevelRecovered">Per level (1..Depth): graphs on which that level's partition was recovered exactly.</param>
/// <param name="TreeRecovered">Graphs on which every level was recovered exactly.</param>
/// <param name="MeanBottomAgreement">Mean share of nodes in the right bottom community (best matching).</param>
/// <param name="Inversions">Total dendrogram inversions over the graphs.</param>
/// <param name="GraphsWithInversions">Graphs whose dendrogram has at least one inversion.</param>
/// <param name="Seconds">Total clustering time.</param>
public sealed record MethodScore(int[] LevelRecovered, int TreeRecovered, double MeanBottomAgreement, int Inversions, int GraphsWithInversions, double Seconds);

/// <summary>The results at one ratio.</summary>
/// <param name="Snr">The ratio s.</param>
/// <param name="Probabilities">The edge probabilities used (root split first).</param>
/// <param name="Graphs">Graphs drawn.</param>
/// <param name="BottomUp">Bottom-up's scores.</param>
/// <param name="TopDown">Top-down's scores.</param>
public sealed record HsbmSweepPoint(double Snr, double[] Probabilities, int Graphs, MethodScore BottomUp, MethodScore TopDown);

/// <summary>Runs <see cref="HsbmSweepConfig"/>.</summary>
public static class HsbmSweep
{
    /// <summary>
    /// Runs the sweep. Both methods know the depth: bottom-up is given 2^Depth finest communities, top-down splits
    /// to that depth with no other stopping rule (its most favourable setting).
    /// </summary>
    /// <param name="config">The sweep.</param>
    /// <param name="progress">Receives (graphs done, graphs total) after each graph.</param>
    /// <param name="cancellationToken">Checked between graphs and inside the solvers.</param>
    public static IReadOnlyList<HsbmSweepPoint> Run(HsbmSweepConfig config, IProgress<(int Done, int Total)>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (config.Shape.Count != config.Depth + 1) throw new ArgumentException($"The shape needs {config.Depth + 1} coefficients, got {config.Shape.Count}.");
        ArgumentOutOfRangeException.ThrowIfLessThan(config.GraphsPerPoint, 1);
        int n = config.BlockSize << config.Depth, total = config.Snrs.Count * config.GraphsPerPoint, done = 0;
        var points = new List<HsbmSweepPoint>();
        for (int pi = 0; pi < config.Snrs.Count; pi++)
        {
            double s = config.Snrs[pi];
            var probs = HsbmConfig.LogDegree(n, config.Shape.Select(a => a * s).ToArray());
            var bu = new Tally(config.Depth);
            var td = new Tally(config.Depth);
            for (int g = 0; g < config.GraphsPerPoint; g++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                ulong seed = config.Seed + 1000UL * (ulong)pi + (ulong)g;
                var sample = HsbmGenerator.Generate(new HsbmConfig(config.Depth, [config.BlockSize], probs, seed));
                var spectral = new SpectralOptions(Seed: seed);
                var sw = Stopwatch.StartNew();
                var up = BottomUpClustering.Run(sample.Graph, new BottomUpOptions(1 << config.Depth, Linkage: config.Linkage, Spectral: spectral), null, cancellationToken);
                bu.Add(sample, up, sw.Elapsed.TotalSeconds);
                sw.Restart();
                var down = TopDownClustering.Run(sample.Graph, new TopDownOptions(config.Depth, MinSize: 1, StopWhenNoStructure: false, Spectral: spectral), null, cancellationToken);
                td.Add(sample, down, sw.Elapsed.TotalSeconds);
                progress?.Report((++done, total));
            }
            points.Add(new HsbmSweepPoint(s, probs, config.GraphsPerPoint, bu.Score(), td.Score()));
        }
        return points;
    }

    private sealed class Tally(int depth)
    {
        private readonly int[] _levels = new int[depth];
        private int _tree, _inversions, _withInversions, _graphs;
        private double _agreement, _seconds;

        public void Add(HsbmSample truth, HierarchyResult found, double seconds)
        {
            var levels = found.Levels(depth);
            bool all = true;
            for (int l = 0; l < depth; l++)
            {
                bool ok = Partitions.Same(truth.Levels[l], levels[l]);
                if (ok) _levels[l]++;
                all &= ok;
            }
            if (all) _tree++;
            _agreement += Partitions.Agreement(truth.Levels[depth - 1], levels[depth - 1]);
            int inv = found.Tree.CountInversions();
            _inversions += inv;
            if (inv > 0) _withInversions++;
            _seconds += seconds;
            _graphs++;
        }

        public MethodScore Score() => new((int[])_levels.Clone(), _tree, _graphs == 0 ? 0 : _agreement / _graphs, _inversions, _withInversions, _seconds);
    }
}
