using MathNet.Numerics.LinearAlgebra;
using Spm.Core.Atlas;
using Spm.Core.Randomness;

namespace Spm.Core.Tests.Atlas;

[TestFixture]
public sealed class HierarchyTests
{
    /// <summary>Depth 3, 8 blocks of 60: each level well separated.</summary>
    private static HsbmSample Easy(ulong seed) =>
        HsbmGenerator.Generate(new HsbmConfig(3, [60], [0.02, 0.06, 0.12, 0.5], seed));

    private static void AssertAllLevels(HsbmSample truth, HierarchyResult found)
    {
        var levels = found.Levels(3);
        for (int l = 0; l < 3; l++)
            Assert.That(Partitions.Same(truth.Levels[l], levels[l]), $"level {l + 1}: agreement {Partitions.Agreement(truth.Levels[l], levels[l]):0.000}");
    }

    [TestCase(1UL)]
    [TestCase(2UL)]
    public void BottomUp_RecoversEveryLevelOfAnEasyHsbm_WithEstimatedCount(ulong seed)
    {
        var sample = Easy(seed);
        var found = BottomUpClustering.Run(sample.Graph, new BottomUpOptions(Spectral: new SpectralOptions(seed)));
        Assert.That(found.CommunityCount, Is.EqualTo(8), "Bethe-Hessian estimate");
        AssertAllLevels(sample, found);
        Assert.That(found.Tree.CountInversions(), Is.Zero);
    }

    [Test]
    public void TopDown_RecoversEveryLevelOfAnEasyHsbm_AndStopsAtTheBottom()
    {
        var sample = Easy(3);
        var found = TopDownClustering.Run(sample.Graph, new TopDownOptions(MaxDepth: 6));
        Assert.That(found.CommunityCount, Is.EqualTo(8), "the Bethe-Hessian stopping rule ends the recursion at the bottom communities");
        AssertAllLevels(sample, found);
    }

    [Test]
    public void TopDown_OnAGraphWithoutStructure_DoesNotSplit()
    {
        var er = HsbmGenerator.Generate(new HsbmConfig(1, [150], [0.08, 0.08], 5)).Graph;
        var found = TopDownClustering.Run(er, new TopDownOptions(MaxDepth: 3));
        Assert.That(found.CommunityCount, Is.EqualTo(1));
        Assert.That(SpectralClustering.EstimateCommunityCount(er, CommunityCountMethod.BetheHessian), Is.EqualTo(1));
    }

    [Test]
    public void SameSeed_SameLabels_BothMethods()
    {
        var g = HsbmGenerator.Generate(new HsbmConfig(2, [50], [0.05, 0.08, 0.2], 9)).Graph;
        var opts = new BottomUpOptions(4, Spectral: new SpectralOptions(Seed: 42));
        Assert.That(BottomUpClustering.Run(g, opts).Levels(2), Is.EqualTo(BottomUpClustering.Run(g, opts).Levels(2)));
        var td = new TopDownOptions(2, Spectral: new SpectralOptions(Seed: 42));
        Assert.That(TopDownClustering.Run(g, td).Levels(2), Is.EqualTo(TopDownClustering.Run(g, td).Levels(2)));
    }

    [Test]
    public void Hsbm_SameSeedSameGraph_DensitiesMatchProbabilities()
    {
        var cfg = new HsbmConfig(2, [200], [0.01, 0.05, 0.3], 7);
        var a = HsbmGenerator.Generate(cfg);
        Assert.That(HsbmGenerator.Generate(cfg).Graph.Edges(), Is.EqualTo(a.Graph.Edges()));
        Assert.That(HsbmGenerator.Generate(cfg with { Seed = 8 }).Graph.Edges(), Is.Not.EqualTo(a.Graph.Edges()));
        var dens = SpectralClustering.ConnectionDensities(a.Graph, a.Levels[1], 4);
        Assert.That(dens[0, 0], Is.EqualTo(0.3).Within(0.02));
        Assert.That(dens[0, 1], Is.EqualTo(0.05).Within(0.01), "siblings");
        Assert.That(dens[0, 2], Is.EqualTo(0.01).Within(0.005), "split at the root");
        Assert.That(a.Levels[0].Distinct().Count(), Is.EqualTo(2));
        Assert.That(a.Levels[1].Distinct().Count(), Is.EqualTo(4));
    }

    // Four communities of one node each, joined as a chain A-B (0.9), B-C (0.8), C-D (0.7), other pairs 0.1.
    private static readonly double[,] Chain =
    {
        { 0, 0.9, 0.1, 0.1 },
        { 0.9, 0, 0.8, 0.1 },
        { 0.1, 0.8, 0, 0.7 },
        { 0.1, 0.1, 0.7, 0 },
    };

    [Test]
    public void SingleLinkage_FollowsTheChain()
    {
        var t = BottomUpClustering.Agglomerate(Chain, [1, 1, 1, 1], Linkage.Single);
        Assert.That(t.Merges, Is.EqualTo(new[] { new DendrogramMerge(0, 1, 0.9), new DendrogramMerge(4, 2, 0.8), new DendrogramMerge(5, 3, 0.7) }));
    }

    [Test]
    public void CompleteLinkage_PairsTheEnds()
    {
        var t = BottomUpClustering.Agglomerate(Chain, [1, 1, 1, 1], Linkage.Complete);
        Assert.That(t.Merges, Is.EqualTo(new[] { new DendrogramMerge(0, 1, 0.9), new DendrogramMerge(2, 3, 0.7), new DendrogramMerge(4, 5, 0.1) }));
    }

    [Test]
    public void AverageLinkage_IsTheDensityBetweenTheGroups()
    {
        var t = BottomUpClustering.Agglomerate(Chain, [1, 1, 1, 1], Linkage.Average);
        Assert.That(t.Merges[0], Is.EqualTo(new DendrogramMerge(0, 1, 0.9)));
        Assert.That(t.Merges[1], Is.EqualTo(new DendrogramMerge(2, 3, 0.7)), "{A,B}-C averages to 0.45 < 0.7");
        Assert.That(t.Merges[2].Similarity, Is.EqualTo((0.1 + 0.1 + 0.8 + 0.1) / 4).Within(1e-12));
        // Sizes weigh in: the same total weights over more node pairs are a lower density.
        var sized = BottomUpClustering.Agglomerate(Chain, [1, 1, 2, 2], Linkage.Average);
        Assert.That(sized.Merges[0].Similarity, Is.EqualTo(0.9));
        Assert.That(sized.Merges[1], Is.EqualTo(new DendrogramMerge(4, 2, (0.1 + 0.8) / (2.0 * 2))), "{A,B}-C (0.225) beats C-D (0.7/4 = 0.175)");
    }

    [Test]
    public void Dendrogram_LevelsAndInversions()
    {
        // ((0,1),(2,3)) with the root more similar than its left child: one inversion.
        var t = new Dendrogram(4, [new(0, 1, 0.2), new(2, 3, 0.9), new(4, 5, 0.5)]);
        Assert.That(t.CountInversions(), Is.EqualTo(1));
        var levels = t.LeafLevels(2);
        Assert.That(Partitions.Same(levels[0], [0, 0, 1, 1]));
        Assert.That(Partitions.Same(levels[1], [0, 1, 2, 3]));
        Assert.Throws<ArgumentException>(() => new Dendrogram(3, [new(0, 1, 1), new(0, 2, 1)]));
    }

    [Test]
    public void Partitions_SameIgnoresLabelNames()
    {
        Assert.That(Partitions.Same([0, 0, 1, 2], [5, 5, 3, 9]));
        Assert.That(Partitions.Same([0, 0, 1, 1], [0, 0, 1, 2]), Is.False);
        Assert.That(Partitions.Same([0, 1, 1, 1], [0, 0, 1, 1]), Is.False);
        Assert.That(Partitions.Agreement([0, 0, 1, 1], [3, 3, 3, 4]), Is.EqualTo(0.75));
    }

    [Test]
    public void Lanczos_MatchesTheDenseSolver()
    {
        // A sparse random symmetric matrix above the dense limit, with a few planted large eigenvalues.
        int n = 700;
        var rng = new SeededRandom(11);
        var edges = new List<WeightedEdge>();
        for (int i = 0; i < n; i++)
            for (int t = 0; t < 6; t++)
            {
                int j = rng.NextInt(0, n);
                if (j != i) edges.Add(new WeightedEdge(i, j, 0.5 + rng.NextDouble() + (i % 4 == j % 4 ? 3 : 0)));
            }
        var g = WeightedGraph.FromEdges(n, edges);
        var eig = SymmetricEigensolver.Largest(n, 5, g.Multiply, seed: 3);
        var dense = Matrix<double>.Build.Dense(n, n, (i, j) => g.Weight(i, j));
        var expected = dense.Evd(Symmetricity.Symmetric).EigenValues.Select(c => c.Real).OrderByDescending(v => v).Take(5).ToArray();
        Assert.That(eig.Values, Is.EqualTo(expected).Within(1e-6));
        Assert.That(eig.MatrixVectorProducts, Is.LessThan(n / 2), "a partial solve, not the whole Krylov space");
        var y = new double[n];
        g.Multiply(eig.Vectors[0], y);
        for (int i = 0; i < n; i++) Assert.That(y[i], Is.EqualTo(eig.Values[0] * eig.Vectors[0][i]).Within(1e-5));
    }

    [Test]
    public void KMeans_SeparatesObviousClusters_Deterministically()
    {
        var pts = new double[] { 0, 0, 0.1, 0, 0, 0.1, 10, 10, 10.1, 10, 10, 10.2 };
        var (a, _) = KMeans.Cluster(pts, 6, 2, 2, seed: 1);
        Assert.That(Partitions.Same(a, [0, 0, 0, 1, 1, 1]));
        Assert.That(KMeans.Cluster(pts, 6, 2, 2, seed: 1).Labels, Is.EqualTo(a));
    }

    [Test]
    public void SimilarityGraph_KeepsNearestNeighboursAndPositiveWeights()
    {
        var sim = new double[,]
        {
            { 1, 0.9, 0.2, -0.5 },
            { 0.9, 1, 0.3, 0.1 },
            { 0.2, 0.3, 1, 0.8 },
            { -0.5, 0.1, 0.8, 1 },
        };
        var g = SimilarityGraph.FromSimilarities(sim, new SparsifyOptions(Neighbours: 1));
        Assert.That(g.Edges().Select(e => (e.Source, e.Target)), Is.EqualTo(new[] { (0, 1), (2, 3) }));
        var all = SimilarityGraph.FromSimilarities(sim, new SparsifyOptions(Threshold: 0.15));
        Assert.That(all.EdgeCount, Is.EqualTo(4), "0.1 is under the threshold and -0.5 is never an edge");
        Assert.Throws<ArgumentException>(() => SimilarityGraph.FromSimilarities(new double[,] { { 1, 0.5 }, { 0.4, 1 } }));
    }

    [Test]
    public void ConceptAtlas_GroupsPlantedFamilies_AndRoundTripsThroughJson()
    {
        // Three families of four concepts: a shared direction per family plus small noise.
        var rng = new SeededRandom(4);
        var concepts = new List<string>();
        var vectors = new List<float[]>();
        for (int f = 0; f < 3; f++)
            for (int m = 0; m < 4; m++)
            {
                var v = new float[12];
                for (int j = 0; j < v.Length; j++) v[j] = (float)(0.1 * rng.NextGaussian());
                v[f] += 1;
                concepts.Add($"family {f} member {m}");
                vectors.Add(v);
            }
        var atlas = ConceptAtlas.Build(concepts, vectors, new ConceptAtlasOptions(new SparsifyOptions(3)));
        Assert.That(atlas.Hierarchy.CommunityCount, Is.EqualTo(3));
        Assert.That(Partitions.Same(atlas.Hierarchy.Communities, [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]));
        var dir = TestPaths_NewDir();
        var path = Path.Combine(dir, "atlas.json");
        atlas.Save(path);
        var back = ConceptAtlas.Load(path);
        Assert.That(back.Concepts, Is.EqualTo(atlas.Concepts));
        Assert.That(back.Hierarchy.Communities, Is.EqualTo(atlas.Hierarchy.Communities));
        Assert.That(back.TreeLines(), Is.EqualTo(atlas.TreeLines()));
        Assert.That(atlas.ToSvg(), Does.StartWith("<svg").And.Contain("family 2 member 3"));
        File.WriteAllText(path, "{\"format\":\"spm-concept-atlas\",\"concepts\":[]}");
        Assert.That(Assert.Throws<SpmFormatException>(() => ConceptAtlas.Load(path))!.Message, Does.Contain("edges"));
        Directory.Delete(dir, true);
    }

    private static string TestPaths_NewDir() => Spm.Tests.Common.TestPaths.NewTempDir("spm-atlas");
}
