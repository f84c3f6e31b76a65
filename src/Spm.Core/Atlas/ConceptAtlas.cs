using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Spm.Core.IO;

namespace Spm.Core.Atlas;

/// <summary>Settings of <see cref="ConceptAtlas.Build"/>.</summary>
/// <param name="Sparsify">How the similarity matrix becomes a graph (default: each concept's 4 nearest neighbours).</param>
/// <param name="Communities">Finest communities; null estimates them (eigengap: concept graphs are weighted).</param>
/// <param name="Linkage">How communities are merged.</param>
/// <param name="Seed">Seed of the spectral step.</param>
/// <param name="Center">Subtract the mean embedding before the cosine (see <see cref="SimilarityGraph.CenteredCosine"/>); on by default: the raw cosines of a small text encoder are all above 0.9 (the padding positions dominate), and centering leaves what tells the concepts apart. Off, the weights are the gate's own clipcos.</param>
/// <param name="MergeSparsify">
/// How a separate merge similarity (<see cref="ConceptAtlas.FromSimilarities"/>) becomes the merge graph; null:
/// <see cref="DefaultMergeSparsify"/>. Not used when the merges are read from the community graph.
/// </param>
public sealed record ConceptAtlasOptions(SparsifyOptions? Sparsify = null, int? Communities = null, Linkage Linkage = Linkage.Average, ulong Seed = 0, bool Center = true,
    SparsifyOptions? MergeSparsify = null)
{
    /// <summary>The sparsification used when <see cref="Sparsify"/> is null.</summary>
    public static SparsifyOptions DefaultSparsify { get; } = new(Neighbours: 4);

    /// <summary>
    /// The merge graph's sparsification when <see cref="MergeSparsify"/> is null: every positive similarity is an edge.
    /// The linkage averages the weight over all concept pairs of two groups, so every pair should count; a k-nearest
    /// graph would leave most pairs of two large groups at zero and make the average depend on which k neighbours each
    /// concept happened to keep. (The community graph is sparsified because the spectral step needs it, not the linkage.)
    /// </summary>
    public static SparsifyOptions DefaultMergeSparsify { get; } = new(Neighbours: 0);
}

/// <summary>
/// A tree of concepts: the concept graph (nodes = concept prompts, edge weights = similarities), its finest
/// communities found by <see cref="BottomUpClustering"/>, and the dendrogram merging them. Saved as JSON.
/// </summary>
public sealed class ConceptAtlas
{
    /// <summary>Creates an atlas from its parts (what <see cref="Build"/> and <see cref="Load"/> produce).</summary>
    /// <param name="concepts">The concept prompts.</param>
    /// <param name="graph">The concept graph the finest communities were found on.</param>
    /// <param name="hierarchy">The finest communities and the dendrogram.</param>
    /// <param name="similarity">What <paramref name="graph"/>'s edge weights measure.</param>
    /// <param name="metadata">Where the atlas came from.</param>
    /// <param name="mergeGraph">The graph the communities were merged on, when it is not <paramref name="graph"/> (<see cref="FromSimilarities"/>); null: the same graph.</param>
    /// <param name="mergeSimilarity">What <paramref name="mergeGraph"/>'s edge weights measure (required with it).</param>
    /// <exception cref="ArgumentException">Sizes disagree, or a merge graph comes without its description.</exception>
    public ConceptAtlas(IReadOnlyList<string> concepts, WeightedGraph graph, HierarchyResult hierarchy, string similarity, IReadOnlyDictionary<string, string>? metadata = null,
        WeightedGraph? mergeGraph = null, string? mergeSimilarity = null)
    {
        ArgumentNullException.ThrowIfNull(concepts);
        ArgumentNullException.ThrowIfNull(graph);
        ArgumentNullException.ThrowIfNull(hierarchy);
        if (graph.NodeCount != concepts.Count || hierarchy.Communities.Length != concepts.Count)
            throw new ArgumentException($"{concepts.Count} concepts, but the graph has {graph.NodeCount} nodes and the hierarchy {hierarchy.Communities.Length}.");
        if (mergeGraph is not null && mergeGraph.NodeCount != concepts.Count)
            throw new ArgumentException($"{concepts.Count} concepts, but the merge graph has {mergeGraph.NodeCount} nodes.", nameof(mergeGraph));
        if ((mergeGraph is null) != (mergeSimilarity is null))
            throw new ArgumentException("A merge graph and its description go together.", nameof(mergeSimilarity));
        MergeGraph = mergeGraph;
        MergeSimilarity = mergeSimilarity;
        Concepts = concepts.ToArray();
        Graph = graph;
        Hierarchy = hierarchy;
        Similarity = similarity;
        Metadata = metadata ?? new Dictionary<string, string>();
    }

    /// <summary>The concept prompts (node i is Concepts[i]).</summary>
    public IReadOnlyList<string> Concepts { get; }

    /// <summary>The concept graph.</summary>
    public WeightedGraph Graph { get; }

    /// <summary>Finest communities and their dendrogram.</summary>
    public HierarchyResult Hierarchy { get; }

    /// <summary>What the edge weights measure (free text, saved in the JSON).</summary>
    public string Similarity { get; }

    /// <summary>
    /// The graph the finest communities were merged on (the tree's inter-community weights) when it is not
    /// <see cref="Graph"/>; null when the whole hierarchy was read from <see cref="Graph"/>.
    /// </summary>
    public WeightedGraph? MergeGraph { get; }

    /// <summary>What <see cref="MergeGraph"/>'s edge weights measure; null without a merge graph.</summary>
    public string? MergeSimilarity { get; }

    /// <summary>Where the atlas came from (model folder, options), saved in the JSON.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>
    /// Builds an atlas from concept embeddings: cosine similarities (centered or not, <see cref="ConceptAtlasOptions.Center"/>),
    /// sparsified into a graph, then bottom-up clustering.
    /// </summary>
    /// <param name="concepts">The concept prompts (at least 3, distinct).</param>
    /// <param name="embeddings">One vector per concept, all of one length.</param>
    /// <param name="options">Settings.</param>
    /// <param name="similarity">Description of the embedding, saved in the atlas.</param>
    /// <param name="metadata">Saved in the atlas.</param>
    /// <param name="cancellationToken">Cancels the clustering.</param>
    public static ConceptAtlas Build(IReadOnlyList<string> concepts, IReadOnlyList<float[]> embeddings, ConceptAtlasOptions? options = null,
        string similarity = "cosine", IReadOnlyDictionary<string, string>? metadata = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(concepts);
        ArgumentNullException.ThrowIfNull(embeddings);
        options ??= new ConceptAtlasOptions();
        if (concepts.Count < 3) throw new SpmException($"An atlas needs at least 3 concepts, got {concepts.Count}.");
        if (embeddings.Count != concepts.Count) throw new ArgumentException($"{concepts.Count} concepts but {embeddings.Count} embeddings.", nameof(embeddings));
        var dup = concepts.GroupBy(c => c).FirstOrDefault(g => g.Count() > 1);
        if (dup is not null) throw new SpmException($"The concept '{dup.Key}' appears twice.");
        return FromSimilarity(concepts, SimilarityGraph.Cosine(embeddings, options.Center), options, similarity, metadata, cancellationToken);
    }

    /// <summary>
    /// Builds an atlas from a similarity matrix given directly (for example measured membrane cross-effects, where
    /// there is no embedding): <paramref name="similarity"/>[i, j] for concepts i and j, symmetric, the diagonal ignored.
    /// <see cref="ConceptAtlasOptions.Center"/> does not apply.
    /// </summary>
    /// <exception cref="SpmException">Fewer than 3 concepts, or a concept twice.</exception>
    /// <exception cref="ArgumentException">The matrix is not n x n, not symmetric or not finite.</exception>
    public static ConceptAtlas FromSimilarity(IReadOnlyList<string> concepts, double[,] similarity, ConceptAtlasOptions? options,
        string description, IReadOnlyDictionary<string, string>? metadata = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(concepts);
        ArgumentNullException.ThrowIfNull(similarity);
        ArgumentNullException.ThrowIfNull(description);
        options ??= new ConceptAtlasOptions();
        CheckConcepts(concepts);
        CheckSimilarity(concepts.Count, similarity, nameof(similarity));
        var graph = SimilarityGraph.FromSimilarities(similarity, options.Sparsify ?? ConceptAtlasOptions.DefaultSparsify);
        var hierarchy = BottomUpClustering.Run(graph, BottomUp(options, concepts.Count), null, cancellationToken);
        return new ConceptAtlas(concepts, graph, hierarchy, description, metadata);
    }

    /// <summary>
    /// Builds an atlas whose two levels come from two similarity matrices of the same concepts (the split-signal
    /// atlas, <see cref="BottomUpClustering.RunSplit"/>): the finest communities from <paramref name="communitySimilarity"/>
    /// (sparsified by <see cref="ConceptAtlasOptions.Sparsify"/>, as in <see cref="FromSimilarity"/>), and the
    /// connection weights that merge them into the tree from <paramref name="mergeSimilarity"/> (sparsified by
    /// <see cref="ConceptAtlasOptions.MergeSparsify"/>: by default every positive similarity). For a reading that
    /// tells which concepts mean the same thing (what a model draws for them) and one that tells which kind of
    /// concept each is (how it is phrased): on the built-in model's vocabulary, guidance-heavy edges find the synonyms
    /// and text-heavy edges the attributes above them.
    /// </summary>
    /// <param name="concepts">The concept prompts (at least 3, distinct).</param>
    /// <param name="communitySimilarity">n x n, symmetric, finite (the diagonal ignored): the finest communities' reading.</param>
    /// <param name="mergeSimilarity">n x n, symmetric, finite (the diagonal ignored): the merges' reading.</param>
    /// <param name="options">Settings.</param>
    /// <param name="description">What <paramref name="communitySimilarity"/> measures (<see cref="Similarity"/>).</param>
    /// <param name="mergeDescription">What <paramref name="mergeSimilarity"/> measures (<see cref="MergeSimilarity"/>).</param>
    /// <param name="metadata">Saved in the atlas.</param>
    /// <param name="cancellationToken">Cancels the clustering.</param>
    /// <exception cref="SpmException">Fewer than 3 concepts, or a concept twice.</exception>
    /// <exception cref="ArgumentException">A matrix is not n x n, not symmetric or not finite.</exception>
    public static ConceptAtlas FromSimilarities(IReadOnlyList<string> concepts, double[,] communitySimilarity, double[,] mergeSimilarity, ConceptAtlasOptions? options,
        string description, string mergeDescription, IReadOnlyDictionary<string, string>? metadata = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(concepts);
        ArgumentNullException.ThrowIfNull(communitySimilarity);
        ArgumentNullException.ThrowIfNull(mergeSimilarity);
        ArgumentNullException.ThrowIfNull(description);
        ArgumentNullException.ThrowIfNull(mergeDescription);
        options ??= new ConceptAtlasOptions();
        CheckConcepts(concepts);
        CheckSimilarity(concepts.Count, communitySimilarity, nameof(communitySimilarity));
        CheckSimilarity(concepts.Count, mergeSimilarity, nameof(mergeSimilarity));
        var graph = SimilarityGraph.FromSimilarities(communitySimilarity, options.Sparsify ?? ConceptAtlasOptions.DefaultSparsify);
        var mergeGraph = SimilarityGraph.FromSimilarities(mergeSimilarity, options.MergeSparsify ?? ConceptAtlasOptions.DefaultMergeSparsify);
        var hierarchy = BottomUpClustering.RunSplit(graph, mergeGraph, BottomUp(options, concepts.Count), null, cancellationToken);
        return new ConceptAtlas(concepts, graph, hierarchy, description, metadata, mergeGraph, mergeDescription);
    }

    private static BottomUpOptions BottomUp(ConceptAtlasOptions options, int concepts) =>
        new(options.Communities, CommunityCountMethod.Eigengap, MaxCommunities: Math.Max(2, concepts / 2), Linkage: options.Linkage,
            Spectral: new SpectralOptions(Seed: options.Seed));

    private static void CheckConcepts(IReadOnlyList<string> concepts)
    {
        if (concepts.Count < 3) throw new SpmException($"An atlas needs at least 3 concepts, got {concepts.Count}.");
        var dupe = concepts.GroupBy(c => c).FirstOrDefault(g => g.Count() > 1);
        if (dupe is not null) throw new SpmException($"The concept '{dupe.Key}' appears twice.");
    }

    private static void CheckSimilarity(int n, double[,] similarity, string name)
    {
        if (similarity.GetLength(0) != n || similarity.GetLength(1) != n)
            throw new ArgumentException($"{n} concepts need a {n} x {n} similarity matrix, got {similarity.GetLength(0)} x {similarity.GetLength(1)}.", name);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
            {
                if (!double.IsFinite(similarity[i, j])) throw new ArgumentException($"{name}[{i}, {j}] is not finite.", name);
                if (i != j && Math.Abs(similarity[i, j] - similarity[j, i]) > 1e-9 * (1 + Math.Abs(similarity[i, j])))
                    throw new ArgumentException($"The similarity matrix is not symmetric at [{i}, {j}].", name);
            }
    }

    /// <summary>The concepts of each finest community, in concept order.</summary>
    public IReadOnlyList<string[]> CommunityMembers() =>
        Enumerable.Range(0, Hierarchy.CommunityCount)
            .Select(c => Concepts.Where((_, i) => Hierarchy.Communities[i] == c).ToArray()).ToArray();

    /// <summary>
    /// The atlas as JSON (format 1): concepts with their community, edges, and the dendrogram's merges; with a merge
    /// graph also <c>merge_similarity</c> and <c>merge_edges</c> (the edges the merges were weighed on).
    /// </summary>
    public string ToJson()
    {
        var root = new JsonObject
        {
            ["format"] = "spm-concept-atlas",
            ["version"] = 1,
            ["similarity"] = Similarity,
            ["metadata"] = new JsonObject(Metadata.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value))),
            ["concepts"] = new JsonArray(Concepts.Select((c, i) => (JsonNode)new JsonObject { ["id"] = i, ["prompt"] = c, ["community"] = Hierarchy.Communities[i] }).ToArray()),
            ["edges"] = EdgesJson(Graph),
            ["tree"] = new JsonObject
            {
                ["communities"] = Hierarchy.CommunityCount,
                ["merges"] = new JsonArray(Hierarchy.Tree.Merges.Select(m => (JsonNode)new JsonObject { ["left"] = m.Left, ["right"] = m.Right, ["similarity"] = Math.Round(m.Similarity, 6) }).ToArray()),
            },
        };
        if (MergeGraph is not null)
        {
            root["merge_similarity"] = MergeSimilarity;
            root["merge_edges"] = EdgesJson(MergeGraph);
        }
        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n";
    }

    private static JsonArray EdgesJson(WeightedGraph graph) =>
        new(graph.Edges().Select(e => (JsonNode)new JsonObject { ["source"] = e.Source, ["target"] = e.Target, ["weight"] = Math.Round(e.Weight, 6) }).ToArray());

    /// <summary>Writes <see cref="ToJson"/> atomically.</summary>
    public void Save(string path, bool overwrite = true) => AtomicFile.WriteAllText(path, ToJson(), overwrite);

    /// <summary>Reads an atlas written by <see cref="Save"/>.</summary>
    /// <exception cref="SpmInputNotFoundException">The file does not exist.</exception>
    /// <exception cref="SpmFormatException">The file is not a valid atlas (the message names the field).</exception>
    public static ConceptAtlas Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path)) throw new SpmInputNotFoundException(path, "atlas");
        JsonNode? root;
        try { root = JsonNode.Parse(File.ReadAllText(path)); }
        catch (JsonException ex) { throw new SpmFormatException(path, null, $"not JSON: {ex.Message}", ex); }
        try
        {
            if (root?["format"]?.GetValue<string>() != "spm-concept-atlas") throw new SpmFormatException(path, "format", "not an spm concept atlas (expected \"format\": \"spm-concept-atlas\").");
            var concepts = Required<JsonArray>(root, "concepts", path);
            var names = new string[concepts.Count];
            var communities = new int[concepts.Count];
            for (int i = 0; i < concepts.Count; i++)
            {
                names[i] = concepts[i]?["prompt"]?.GetValue<string>() ?? throw new SpmFormatException(path, $"concepts[{i}].prompt", "missing.");
                communities[i] = concepts[i]?["community"]?.GetValue<int>() ?? throw new SpmFormatException(path, $"concepts[{i}].community", "missing.");
            }
            var edges = ReadEdges(Required<JsonArray>(root, "edges", path), "edges", path);
            WeightedGraph? mergeGraph = null;
            string? mergeSimilarity = null;
            if (root["merge_edges"] is not null)
            {
                var mergeEdges = ReadEdges(Required<JsonArray>(root, "merge_edges", path), "merge_edges", path);
                mergeGraph = WeightedGraph.FromEdges(names.Length, mergeEdges);
                mergeSimilarity = root["merge_similarity"]?.GetValue<string>() ?? throw new SpmFormatException(path, "merge_similarity", "missing (the file has merge_edges).");
            }
            var tree = Required<JsonObject>(root, "tree", path);
            int k = tree["communities"]?.GetValue<int>() ?? throw new SpmFormatException(path, "tree.communities", "missing.");
            if (communities.Any(c => c < 0 || c >= k)) throw new SpmFormatException(path, "concepts", $"a community id is outside 0..{k - 1}.");
            var merges = Required<JsonArray>(tree, "merges", path).Select((m, i) => new DendrogramMerge(
                m?["left"]?.GetValue<int>() ?? throw new SpmFormatException(path, $"tree.merges[{i}].left", "missing."),
                m?["right"]?.GetValue<int>() ?? throw new SpmFormatException(path, $"tree.merges[{i}].right", "missing."),
                m?["similarity"]?.GetValue<double>() ?? throw new SpmFormatException(path, $"tree.merges[{i}].similarity", "missing."))).ToList();
            var meta = (root["metadata"] as JsonObject)?.ToDictionary(kv => kv.Key, kv => kv.Value?.ToString() ?? "") ?? new Dictionary<string, string>();
            return new ConceptAtlas(names, WeightedGraph.FromEdges(names.Length, edges), new HierarchyResult(communities, new Dendrogram(k, merges)),
                root["similarity"]?.GetValue<string>() ?? "", meta, mergeGraph, mergeSimilarity);
        }
        catch (Exception ex) when (ex is InvalidOperationException or FormatException or ArgumentException)
        {
            throw new SpmFormatException(path, null, ex.Message, ex);
        }
    }

    private static List<WeightedEdge> ReadEdges(JsonArray array, string key, string path) =>
        array.Select((e, i) => new WeightedEdge(
            e?["source"]?.GetValue<int>() ?? throw new SpmFormatException(path, $"{key}[{i}].source", "missing."),
            e?["target"]?.GetValue<int>() ?? throw new SpmFormatException(path, $"{key}[{i}].target", "missing."),
            e?["weight"]?.GetValue<double>() ?? throw new SpmFormatException(path, $"{key}[{i}].weight", "missing."))).ToList();

    private static T Required<T>(JsonNode node, string key, string path) where T : JsonNode =>
        node[key] as T ?? throw new SpmFormatException(path, key, $"missing or not a JSON {(typeof(T) == typeof(JsonArray) ? "array" : "object")}.");

    /// <summary>
    /// The tree as indented text lines: every node starts with its id in brackets (the id <c>--concept-family</c>
    /// takes: 0..K-1 the finest communities, then the merges, the root last); internal nodes show the linkage
    /// similarity at which their children merge, leaves list their concepts.
    /// </summary>
    public IReadOnlyList<string> TreeLines()
    {
        var lines = new List<string>();
        var members = CommunityMembers();
        void Walk(int node, string indent, bool last, bool root)
        {
            string branch = root ? "" : indent + (last ? "└─ " : "├─ ");
            string childIndent = root ? "" : indent + (last ? "   " : "│  ");
            var tree = Hierarchy.Tree;
            if (node < tree.LeafCount)
            {
                lines.Add($"{branch}[{node}] {string.Join(", ", members[node])}");
                return;
            }
            var (l, r) = tree.Children(node);
            lines.Add($"{branch}[{node}] merge at {tree.Merges[node - tree.LeafCount].Similarity.ToString("0.000", CultureInfo.InvariantCulture)} ({tree.Leaves(node).Sum(c => members[c].Length)} concepts)");
            Walk(l, childIndent, false, false);
            Walk(r, childIndent, true, false);
        }
        Walk(Hierarchy.Tree.Root, "", true, true);
        return lines;
    }

    /// <summary>
    /// A dendrogram drawing (SVG): concepts listed on the left, grouped by finest community, and the merges as
    /// elbows whose horizontal position is the linkage similarity (further right = merged at a lower similarity).
    /// The layout is <see cref="DendrogramLayout"/>'s, which also draws it as pixels.
    /// </summary>
    public string ToSvg(string? title = null) => DendrogramLayout.Of(this, title).ToSvg();
}
