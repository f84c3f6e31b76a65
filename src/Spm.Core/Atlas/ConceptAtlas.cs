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
public sealed record ConceptAtlasOptions(SparsifyOptions? Sparsify = null, int? Communities = null, Linkage Linkage = Linkage.Average, ulong Seed = 0, bool Center = true)
{
    /// <summary>The sparsification used when <see cref="Sparsify"/> is null.</summary>
    public static SparsifyOptions DefaultSparsify { get; } = new(Neighbours: 4);
}

/// <summary>
/// A tree of concepts: the concept graph (nodes = concept prompts, edge weights = similarities), its finest
/// communities found by <see cref="BottomUpClustering"/>, and the dendrogram merging them. Saved as JSON.
/// </summary>
public sealed class ConceptAtlas
{
    /// <summary>Creates an atlas from its parts (what <see cref="Build"/> and <see cref="Load"/> produce).</summary>
    public ConceptAtlas(IReadOnlyList<string> concepts, WeightedGraph graph, HierarchyResult hierarchy, string similarity, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(concepts);
        ArgumentNullException.ThrowIfNull(graph);
        ArgumentNullException.ThrowIfNull(hierarchy);
        if (graph.NodeCount != concepts.Count || hierarchy.Communities.Length != concepts.Count)
            throw new ArgumentException($"{concepts.Count} concepts, but the graph has {graph.NodeCount} nodes and the hierarchy {hierarchy.Communities.Length}.");
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
        if (concepts.Count < 3) throw new SpmException($"An atlas needs at least 3 concepts, got {concepts.Count}.");
        var dupe = concepts.GroupBy(c => c).FirstOrDefault(g => g.Count() > 1);
        if (dupe is not null) throw new SpmException($"The concept '{dupe.Key}' appears twice.");
        int n = concepts.Count;
        if (similarity.GetLength(0) != n || similarity.GetLength(1) != n)
            throw new ArgumentException($"{n} concepts need a {n} x {n} similarity matrix, got {similarity.GetLength(0)} x {similarity.GetLength(1)}.", nameof(similarity));
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
            {
                if (!double.IsFinite(similarity[i, j])) throw new ArgumentException($"similarity[{i}, {j}] is not finite.", nameof(similarity));
                if (i != j && Math.Abs(similarity[i, j] - similarity[j, i]) > 1e-9 * (1 + Math.Abs(similarity[i, j])))
                    throw new ArgumentException($"The similarity matrix is not symmetric at [{i}, {j}].", nameof(similarity));
            }
        var sim = similarity;
        var graph = SimilarityGraph.FromSimilarities(sim, options.Sparsify ?? ConceptAtlasOptions.DefaultSparsify);
        var hierarchy = BottomUpClustering.Run(graph, new BottomUpOptions(options.Communities, CommunityCountMethod.Eigengap,
            MaxCommunities: Math.Max(2, concepts.Count / 2), Linkage: options.Linkage, Spectral: new SpectralOptions(Seed: options.Seed)), null, cancellationToken);
        return new ConceptAtlas(concepts, graph, hierarchy, description, metadata);
    }

    /// <summary>The concepts of each finest community, in concept order.</summary>
    public IReadOnlyList<string[]> CommunityMembers() =>
        Enumerable.Range(0, Hierarchy.CommunityCount)
            .Select(c => Concepts.Where((_, i) => Hierarchy.Communities[i] == c).ToArray()).ToArray();

    /// <summary>The atlas as JSON (format 1): concepts with their community, edges, and the dendrogram's merges.</summary>
    public string ToJson()
    {
        var root = new JsonObject
        {
            ["format"] = "spm-concept-atlas",
            ["version"] = 1,
            ["similarity"] = Similarity,
            ["metadata"] = new JsonObject(Metadata.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value))),
            ["concepts"] = new JsonArray(Concepts.Select((c, i) => (JsonNode)new JsonObject { ["id"] = i, ["prompt"] = c, ["community"] = Hierarchy.Communities[i] }).ToArray()),
            ["edges"] = new JsonArray(Graph.Edges().Select(e => (JsonNode)new JsonObject { ["source"] = e.Source, ["target"] = e.Target, ["weight"] = Math.Round(e.Weight, 6) }).ToArray()),
            ["tree"] = new JsonObject
            {
                ["communities"] = Hierarchy.CommunityCount,
                ["merges"] = new JsonArray(Hierarchy.Tree.Merges.Select(m => (JsonNode)new JsonObject { ["left"] = m.Left, ["right"] = m.Right, ["similarity"] = Math.Round(m.Similarity, 6) }).ToArray()),
            },
        };
        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n";
    }

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
            var edges = Required<JsonArray>(root, "edges", path).Select((e, i) => new WeightedEdge(
                e?["source"]?.GetValue<int>() ?? throw new SpmFormatException(path, $"edges[{i}].source", "missing."),
                e?["target"]?.GetValue<int>() ?? throw new SpmFormatException(path, $"edges[{i}].target", "missing."),
                e?["weight"]?.GetValue<double>() ?? throw new SpmFormatException(path, $"edges[{i}].weight", "missing."))).ToList();
            var tree = Required<JsonObject>(root, "tree", path);
            int k = tree["communities"]?.GetValue<int>() ?? throw new SpmFormatException(path, "tree.communities", "missing.");
            if (communities.Any(c => c < 0 || c >= k)) throw new SpmFormatException(path, "concepts", $"a community id is outside 0..{k - 1}.");
            var merges = Required<JsonArray>(tree, "merges", path).Select((m, i) => new DendrogramMerge(
                m?["left"]?.GetValue<int>() ?? throw new SpmFormatException(path, $"tree.merges[{i}].left", "missing."),
                m?["right"]?.GetValue<int>() ?? throw new SpmFormatException(path, $"tree.merges[{i}].right", "missing."),
                m?["similarity"]?.GetValue<double>() ?? throw new SpmFormatException(path, $"tree.merges[{i}].similarity", "missing."))).ToList();
            var meta = (root["metadata"] as JsonObject)?.ToDictionary(kv => kv.Key, kv => kv.Value?.ToString() ?? "") ?? new Dictionary<string, string>();
            return new ConceptAtlas(names, WeightedGraph.FromEdges(names.Length, edges), new HierarchyResult(communities, new Dendrogram(k, merges)),
                root["similarity"]?.GetValue<string>() ?? "", meta);
        }
        catch (Exception ex) when (ex is InvalidOperationException or FormatException or ArgumentException)
        {
            throw new SpmFormatException(path, null, ex.Message, ex);
        }
    }

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
