using Spm.Core.Atlas;

namespace Spm.Core.Tests.Atlas;

/// <summary>
/// The split-signal atlas (<see cref="ConceptAtlas.FromSimilarities"/>, <see cref="BottomUpClustering.RunSplit"/>): the
/// finest communities from one reading, the merges above them from another.
/// </summary>
[TestFixture]
public sealed class SplitSignalTests
{
    // Two attributes (shape, colour) of two values each, three words per value. Concept index = 6 * attribute + 3 * value + word.
    private static readonly string[] Words =
    [
        "a circle", "a disc", "a round shape", "a square", "a tile", "a block",
        "a red shape", "a crimson shape", "a scarlet shape", "a blue shape", "a cobalt shape", "a sapphire shape",
    ];

    private static int Attribute(int i) => i / 6;
    private static int Value(int i) => i / 3;
    private static int Word(int i) => i % 3;

    /// <summary>
    /// What the model draws: the words of one value alike (0.9), and each shape value drawn like one colour value
    /// (circle like red, square like blue: 0.2), everything else 0.02. Synonyms are right, attributes are mixed.
    /// </summary>
    private static double[,] Drawing() => Matrix((i, j) =>
        Value(i) == Value(j) ? 0.9 : Value(i) % 2 == Value(j) % 2 ? 0.2 : 0.02);

    /// <summary>
    /// How the words are phrased: one attribute alike (0.4), and the k-th word of each value of one attribute closer
    /// still (0.7, a shared phrasing that means nothing), the attributes far apart (0.05). Attributes are right,
    /// synonyms are not seen.
    /// </summary>
    private static double[,] Phrasing() => Matrix((i, j) =>
        Attribute(i) != Attribute(j) ? 0.05 : Word(i) == Word(j) ? 0.7 : 0.4);

    private static double[,] Matrix(Func<int, int, double> f)
    {
        int n = Words.Length;
        var m = new double[n, n];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
                m[i, j] = i == j ? 1 : f(i, j);
        return m;
    }

    private static readonly ConceptAtlasOptions Options = new(new SparsifyOptions(Neighbours: 0, Threshold: 0.1), Communities: 4);

    private static readonly int[] Values = Enumerable.Range(0, Words.Length).Select(Value).ToArray();

    /// <summary>The concept sets of every tree node (communities and merges).</summary>
    private static List<HashSet<string>> Nodes(ConceptAtlas atlas)
    {
        var members = atlas.CommunityMembers();
        var tree = atlas.Hierarchy.Tree;
        return Enumerable.Range(0, tree.LeafCount + tree.Merges.Count)
            .Select(node => tree.Leaves(node).SelectMany(c => members[c]).ToHashSet()).ToList();
    }

    private static bool HasSubtree(ConceptAtlas atlas, IEnumerable<string> concepts)
    {
        var set = concepts.ToHashSet();
        return Nodes(atlas).Any(s => s.SetEquals(set));
    }

    private static readonly string[] Shapes = Words[..6], Colours = Words[6..];

    [Test]
    public void SplitSignal_TakesSynonymsFromOneReading_AndAttributesFromTheOther()
    {
        // The drawing alone finds the values but merges each shape with the colour drawn like it.
        var drawing = ConceptAtlas.FromSimilarity(Words, Drawing(), Options, "drawing");
        Assert.That(Partitions.Same(drawing.Hierarchy.Communities, Values), "the drawing's communities are the values");
        Assert.That(HasSubtree(drawing, Shapes) || HasSubtree(drawing, Colours), Is.False, "the drawing mixes the attributes");
        Assert.That(HasSubtree(drawing, ["a circle", "a disc", "a round shape", "a red shape", "a crimson shape", "a scarlet shape"]));

        // The phrasing alone keeps the attributes apart but cannot find the values.
        var phrasing = ConceptAtlas.FromSimilarity(Words, Phrasing(), Options, "phrasing");
        Assert.That(Partitions.Same(phrasing.Hierarchy.Communities, Values), Is.False, "the phrasing does not see the synonyms");

        // Split: the drawing's communities, merged by the phrasing: each value, then each attribute, is a subtree.
        var split = ConceptAtlas.FromSimilarities(Words, Drawing(), Phrasing(), Options, "drawing", "phrasing");
        Assert.That(split.Hierarchy.Communities, Is.EqualTo(drawing.Hierarchy.Communities), "the communities come from the first reading only");
        Assert.That(HasSubtree(split, Shapes), "shapes");
        Assert.That(HasSubtree(split, Colours), "colours");
        Assert.That(split.Similarity, Is.EqualTo("drawing"));
        Assert.That(split.MergeSimilarity, Is.EqualTo("phrasing"));
        Assert.That(split.Graph.Edges(), Is.EqualTo(drawing.Graph.Edges()), "the community graph is the first reading's");
        // The merge graph keeps every positive similarity by default (the linkage averages over all pairs): 12 · 11 / 2 edges.
        Assert.That(split.MergeGraph!.EdgeCount, Is.EqualTo(66));
        // Each value meets the other value of its attribute at the mean phrasing between them: 3 pairs at 0.7, 6 at 0.4.
        Assert.That(split.Hierarchy.Tree.Merges[0].Similarity, Is.EqualTo((3 * 0.7 + 6 * 0.4) / 9).Within(1e-12));
        Assert.That(split.Hierarchy.Tree.Merges[^1].Similarity, Is.EqualTo(0.05).Within(1e-12), "the root joins the attributes");
    }

    [Test]
    public void MergeSparsify_AppliesToTheMergeGraphOnly()
    {
        var knn = Options with { MergeSparsify = new SparsifyOptions(Neighbours: 1) };
        var split = ConceptAtlas.FromSimilarities(Words, Drawing(), Phrasing(), knn, "drawing", "phrasing");
        Assert.That(split.Graph.Edges(), Is.EqualTo(ConceptAtlas.FromSimilarity(Words, Drawing(), Options, "drawing").Graph.Edges()));
        // Each word's nearest by phrasing is the same-position word of the other value: 6 edges.
        Assert.That(split.MergeGraph!.EdgeCount, Is.EqualTo(6));
    }

    [Test]
    public void SplitAtlas_RoundTripsThroughJson_AndAOneGraphAtlasHasNoMergeGraph()
    {
        var dir = Spm.Tests.Common.TestPaths.NewTempDir("spm-atlas-split");
        try
        {
            var split = ConceptAtlas.FromSimilarities(Words, Drawing(), Phrasing(), Options, "drawing", "phrasing");
            var path = Path.Combine(dir, "split.json");
            split.Save(path);
            var back = ConceptAtlas.Load(path);
            Assert.That(back.MergeSimilarity, Is.EqualTo("phrasing"));
            Assert.That(back.MergeGraph!.Edges().Select(e => (e.Source, e.Target)), Is.EqualTo(split.MergeGraph!.Edges().Select(e => (e.Source, e.Target))));
            Assert.That(back.Graph.EdgeCount, Is.EqualTo(split.Graph.EdgeCount));
            Assert.That(back.TreeLines(), Is.EqualTo(split.TreeLines()));

            var one = ConceptAtlas.FromSimilarity(Words, Drawing(), Options, "drawing");
            Assert.That(one.MergeGraph, Is.Null);
            Assert.That(one.MergeSimilarity, Is.Null);
            Assert.That(one.ToJson(), Does.Not.Contain("merge_edges").And.Not.Contain("merge_similarity"));

            File.WriteAllText(path, split.ToJson().Replace("\"merge_similarity\"", "\"other\""));
            Assert.That(Assert.Throws<SpmFormatException>(() => ConceptAtlas.Load(path))!.Message, Does.Contain("merge_similarity"));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Test]
    public void RunSplit_OnOneGraphTwice_IsRun_AndRefusesGraphsOfDifferentSizes()
    {
        var graph = SimilarityGraph.FromSimilarities(Drawing(), new SparsifyOptions(Threshold: 0.1));
        var options = new BottomUpOptions(4);
        var once = BottomUpClustering.Run(graph, options);
        var twice = BottomUpClustering.RunSplit(graph, graph, options);
        Assert.That(twice.Communities, Is.EqualTo(once.Communities));
        Assert.That(twice.Tree.Merges, Is.EqualTo(once.Tree.Merges));
        var small = WeightedGraph.FromEdges(3, [new WeightedEdge(0, 1, 1)]);
        Assert.That(() => BottomUpClustering.RunSplit(graph, small), Throws.ArgumentException.With.Message.StartsWith("The merge graph has 3 nodes, the community graph 12."));
        Assert.That(() => ConceptAtlas.FromSimilarities(Words, Drawing(), new double[3, 3], Options, "a", "b"),
            Throws.ArgumentException.With.Message.StartsWith("12 concepts need a 12 x 12 similarity matrix, got 3 x 3."));
    }
}
