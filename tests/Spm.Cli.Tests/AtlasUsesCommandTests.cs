using Spm.Cli.Commands;
using Spm.Core.Atlas;
using Spm.Core.Membranes;
using Spm.Tests.Common;

namespace Spm.Cli.Tests;

/// <summary>
/// The atlas's uses on the command line: <c>spm train --anchors-from-atlas</c> and <c>--concept-family</c> (what is refused,
/// by exit code and message, and one short family run), <c>spm atlas build --edges cross-effects</c>, node ids in <c>atlas show</c>.
/// </summary>
[TestFixture]
public class AtlasUsesCommandTests
{
    private const string AtlasJson = HandMadeAtlas.Json;

    private string _dir = null!;
    private string _atlas = null!;
    private string _out = null!;

    private static string Model => Path.Combine(TestPaths.RepoRoot, "models", "tiny-shapes");

    [SetUp]
    public void SetUp()
    {
        _dir = TestPaths.NewTempDir("spm-atlas-uses");
        _atlas = Path.Combine(_dir, "atlas.json");
        _out = Path.Combine(_dir, "out.safetensors");
        File.WriteAllText(_atlas, AtlasJson);
    }

    [TearDown] public void TearDown() => Directory.Delete(_dir, true);

    private static (int Code, string Out, string Err) Train(params string[] args) => CliHarness.Run(c => [TrainCommand.Create(c)], ["train", "--model", Model, .. args]);

    private static (int Code, string Out, string Err) Root(params string[] args) => CliHarness.RunRoot(CliGlobals.CreateRoot, args);

    [Test]
    public void TrainAtlasOptions_AreRefusedBeforeTraining_WithMessagesNamingNodeAndFile()
    {
        var cases = new (string[] Args, int Code, string Message)[]
        {
            (["--concept-family", "9", "--atlas", _atlas], 2, $"The atlas '{_atlas}' has no node '9': its tree nodes are 0..6"),
            (["--concept-family", "colours", "--atlas", _atlas], 2, $"The atlas '{_atlas}' has no node 'colours'"),
            (["--concept-family", "4"], 2, "--concept-family needs --atlas ATLAS.json"),
            (["--concept", "circle", "--atlas", _atlas], 2, "--atlas names the atlas of --concept-family"),
            (["--concept", "circle", "--concept-family", "4", "--atlas", _atlas], 2, "--concept-family erases the concepts of an atlas node: leave out --concept."),
            (["--concept-family", "4", "--atlas", _atlas, "--anchors-from-atlas", _atlas], 2, "leave out --anchors-from-atlas"),
            (["--concept", "dog", "--anchors-from-atlas", _atlas], 2, $"'dog' is not a concept of the atlas '{_atlas}'"),
            (["--concept", "shape", "--anchors-from-atlas", _atlas], 2, $"'shape' names several concepts of the atlas '{_atlas}'"),
            (["--concept", "circle", "--anchors-from-atlas", _atlas, "--no-anchoring"], 2, "--no-anchoring has no anchors to draw from an atlas"),
            (["--concept", "circle", "--atlas-anchors", "3"], 2, "--atlas-anchors goes with --anchors-from-atlas or --concept-family."),
            (["--concept", "circle", "--anchor-surrogate"], 2, "--anchor-surrogate goes with --anchors-from-atlas or --concept-family."),
            (["--concept-family", "4", "--atlas", Path.Combine(_dir, "missing.json")], 3, "missing.json"),
        };
        foreach (var (args, code, message) in cases)
        {
            var (c, _, err) = Train([.. args, "--iterations", "1", "--out", _out]);
            Assert.That(c, Is.EqualTo(code), $"{string.Join(" ", args)}: {err}");
            Assert.That(err, Does.Contain(message), string.Join(" ", args));
        }
        Assert.That(File.Exists(_out), Is.False);
    }

    [Test]
    [Category(TestCategories.Slow)]
    public void ConceptFamily_TrainsOneMembraneForTheSubtree_AnchoredOutsideIt()
    {
        var (code, _, err) = Train("--concept-family", "0", "--atlas", _atlas, "--atlas-anchors", "5", "--iterations", "2", "--threads", "1", "--seed", "1", "--out", _out);
        Assert.That(code, Is.EqualTo(0), err);
        Assert.That(err, Does.Contain($"erasing the family of node 0 of {_atlas}: 3 concepts (a circle, a square, a triangle)"));
        // Node 0's sibling is node 4 (4 concepts < 5), then node 3.
        Assert.That(err, Does.Contain("anchors drawn from the 5 nearest concepts outside it: a red shape, a blue shape, a striped pattern, a plain pattern, on a white background"));
        var spm = SpmFile.Load(_out);
        Assert.That(spm.Config.Prompts, Is.EqualTo(new[] { "a circle", "a square", "a triangle" }));
        Assert.That(spm.Config.Extra[SpmMetadataKeys.Training], Does.Contain("\"anchor_prompts\":[\"a red shape\",\"a blue shape\",\"a striped pattern\",\"a plain pattern\",\"on a white background\"]"));

        // Family anchors for one concept: the rest of its community first, then the sibling subtrees (default at least 8).
        var single = Path.Combine(_dir, "circle.safetensors");
        (code, _, err) = Train("--concept", "circle", "--surrogate", "square", "--anchors-from-atlas", _atlas, "--iterations", "1", "--threads", "1", "--out", single);
        Assert.That(code, Is.EqualTo(0), err);
        // The surrogate's concept ("a square") is left out by default; the list walks on to make up for it.
        Assert.That(err, Does.Contain("the surrogate 'square' names \"a square\"; left out of the anchors"));
        Assert.That(err, Does.Contain($"family anchors for 'circle' (atlas concept \"a circle\") from {_atlas}: a triangle, a red shape, a blue shape, a striped pattern, a plain pattern, on a white background"));
        Assert.That(SpmFile.Load(single).Config.Prompts, Is.EqualTo(new[] { "circle" }));
        Assert.That(SpmFile.Load(single).Config.Extra[SpmMetadataKeys.Training], Does.Contain("\"anchor_prompts\":[\"a triangle\","));

        // --anchor-surrogate keeps it, nearest first as before.
        (code, _, err) = Train("--concept", "circle", "--surrogate", "square", "--anchors-from-atlas", _atlas, "--anchor-surrogate", "--iterations", "1", "--threads", "1", "--out", single, "--force");
        Assert.That(code, Is.EqualTo(0), err);
        Assert.That(err, Does.Contain($"family anchors for 'circle' (atlas concept \"a circle\") from {_atlas}: a square, a triangle, a red shape, a blue shape, a striped pattern, a plain pattern, on a white background"));
        Assert.That(SpmFile.Load(single).Config.Extra[SpmMetadataKeys.Training], Does.Contain("\"anchor_prompts\":[\"a square\",\"a triangle\","));
    }

    [Test]
    public void Show_PrintsNodeIds()
    {
        var (code, stdout, err) = Root("atlas", "show", _atlas);
        Assert.That(code, Is.EqualTo(0), err);
        Assert.That(stdout, Does.Contain("[6] merge at 0.000 (8 concepts)\n├─ [5] merge at 0.004 (7 concepts)\n│  ├─ [0] a circle, a square, a triangle\n│  └─ [4] merge at 0.020 (4 concepts)"));
    }

    [Test]
    public void BuildSources_AreCheckedBeforeAnyModelWork()
    {
        var prompts = Path.Combine(_dir, "p.txt");
        File.WriteAllText(prompts, "a\nb\nc\n");
        var json = Path.Combine(_dir, "a.json");
        var cases = new (string[] Args, string Message)[]
        {
            ([], "exactly one of --prompts FILE, --library DIR or --spm FILE"),
            (["--prompts", prompts, "--spm", "circle"], "exactly one of --prompts FILE, --library DIR or --spm FILE"),
            (["--prompts", prompts, "--edges", "cross-effects"], "--edges cross-effects measures SPMs"),
            (["--prompts", prompts, "--images", "2"], "--images and --image-seed go with --edges cross-effects, guidance or combined."),
            (["--prompts", prompts, "--guidance-weight", "0.3"], "--guidance-weight goes with --edges combined."),
            (["--prompts", prompts, "--edges", "combined", "--guidance-weight", "1.5"], "--guidance-weight must be between 0 and 1, got 1.5."),
            (["--spm", "circle", "--spm", "red", "--edges", "cross-effects"], "a cross-effect atlas needs at least 3 SPMs (got 2)"),
            (["--spm", "circle", "--spm", "red", "--spm", "striped", "--edges", "cross-effects", "--merge-edges", "embedding"], "--merge-edges goes with --edges embedding, guidance or combined"),
            (["--prompts", prompts, "--merge-guidance-weight", "0.2"], "--merge-guidance-weight goes with --merge-edges combined."),
            (["--prompts", prompts, "--merge-edges", "embedding", "--merge-guidance-weight", "0.2"], "--merge-guidance-weight goes with --merge-edges combined."),
            (["--prompts", prompts, "--merge-edges", "combined", "--merge-guidance-weight", "-0.1"], "--merge-guidance-weight must be between 0 and 1, got -0.1."),
            (["--prompts", prompts, "--merge-neighbours", "3"], "--merge-neighbours goes with --merge-edges."),
        };
        foreach (var (args, message) in cases)
        {
            var (code, _, err) = Root(["atlas", "build", "--model", Model, .. args, "--out", json]);
            Assert.That(code, Is.EqualTo(2), $"{string.Join(" ", args)}: {err}");
            Assert.That(err, Does.Contain(message), string.Join(" ", args));
        }
        Assert.That(File.Exists(json), Is.False);
    }

    [Test]
    public void BuildGuidance_PairsPromptsTheUNetDrawsAlike()
    {
        // Colour decides most of what the built-in model draws first, so each "a COLOUR shape" must meet the shape of its
        // colour, and only it, among the k = 1 nearest neighbours of the guidance directions.
        var prompts = Path.Combine(_dir, "p.txt");
        File.WriteAllText(prompts, "a red shape\na red circle\na blue shape\na blue square\na green shape\na green triangle\n");
        var json = Path.Combine(_dir, "guidance.json");
        var (code, stdout, err) = Root("atlas", "build", "--model", Model, "--prompts", prompts, "--edges", "guidance", "--images", "2",
            "--neighbours", "1", "--out", json);
        Assert.That(code, Is.EqualTo(0), err);
        var atlas = ConceptAtlas.Load(json);
        Assert.That(atlas.Similarity, Does.StartWith("cosine of the UNet's guidance direction").And.Contain("on 2 noise latents at timesteps 999,900,800"));
        Assert.That(atlas.Metadata["latents"], Is.EqualTo("2"));
        Assert.That(atlas.Metadata["timesteps"], Is.EqualTo("999,900,800"));
        var pairs = atlas.Graph.Edges().Select(e => (Math.Min(e.Source, e.Target), Math.Max(e.Source, e.Target))).Distinct().Order().ToArray();
        Assert.That(pairs, Is.EqualTo(new[] { (0, 1), (2, 3), (4, 5) }), stdout);
    }

    /// <summary>
    /// <c>spm atlas build</c> on the built-in model over six prompts (three colours, each as "a COLOUR shape" and with a
    /// shape), with <paramref name="args"/>; the atlas written to NAME.json, loaded.
    /// </summary>
    private ConceptAtlas BuildColourShapeAtlas(string name, string[] args)
    {
        var prompts = Path.Combine(_dir, "p.txt");
        File.WriteAllText(prompts, "a red shape\na red circle\na blue shape\na blue square\na green shape\na green triangle\n");
        var json = Path.Combine(_dir, name + ".json");
        var (code, _, err) = Root(["atlas", "build", "--model", Model, "--prompts", prompts, .. args, "--out", json]);
        Assert.That(code, Is.EqualTo(0), $"{name}: {err}");
        return ConceptAtlas.Load(json);
    }

    [Test]
    public void BuildCombined_WeighsTheTextEmbeddingAgainstTheGuidanceDirections()
    {
        // At guidance weight 1 the combined atlas is the guidance atlas, edge for edge (so the weight goes to the UNet's
        // reading, not the text encoder's); at the default it is neither, and says both readings and the weight (the
        // blend itself: SimilarityBlendTests).
        ConceptAtlas Build(string name, params string[] extra) => BuildColourShapeAtlas(name, ["--neighbours", "2", "--images", "1", .. extra]);
        static (int, int, double)[] Edges(ConceptAtlas a) =>
            a.Graph.Edges().Select(e => (Math.Min(e.Source, e.Target), Math.Max(e.Source, e.Target), Math.Round(e.Weight, 5))).Distinct().Order().ToArray();
        var guidance = Build("guidance", "--edges", "guidance");
        Assert.That(Edges(Build("w1", "--edges", "combined", "--guidance-weight", "1")), Is.EqualTo(Edges(guidance)));
        var half = Build("half", "--edges", "combined");
        Assert.That(half.Similarity, Does.StartWith("0.5 x cosine of the text encoder's padded last hidden state E(prompt), after subtracting the mean over the concepts + 0.5 x cosine of the UNet's guidance direction"));
        Assert.That(half.Metadata["guidance_weight"], Is.EqualTo("0.5"));
        Assert.That(Edges(half), Is.Not.EqualTo(Edges(guidance)));
    }

    [Test]
    public void BuildSplit_FindsCommunitiesOnTheEdges_AndMergesThemOnTheMergeEdges()
    {
        // --edges guidance --merge-edges embedding: the communities (and the graph saved as "edges") are the guidance
        // atlas's, the merge graph is the text embedding's with every positive similarity, and every merge height is the
        // average-linkage density of the merge graph between the communities it joins.
        ConceptAtlas Build(string name, params string[] extra) => BuildColourShapeAtlas(name, ["--communities", "3", .. extra]);
        static (int, int, double)[] Edges(WeightedGraph g) =>
            g.Edges().Select(e => (Math.Min(e.Source, e.Target), Math.Max(e.Source, e.Target), Math.Round(e.Weight, 5))).Distinct().Order().ToArray();
        var guidance = Build("guidance", "--edges", "guidance", "--neighbours", "1", "--images", "1");
        var text = Build("text", "--neighbours", "0");
        var split = Build("split", "--edges", "guidance", "--neighbours", "1", "--images", "1", "--merge-edges", "embedding");
        Assert.That(split.Hierarchy.Communities, Is.EqualTo(guidance.Hierarchy.Communities));
        Assert.That(Edges(split.Graph), Is.EqualTo(Edges(guidance.Graph)));
        Assert.That(split.MergeGraph, Is.Not.Null);
        Assert.That(Edges(split.MergeGraph!), Is.EqualTo(Edges(text.Graph)));
        Assert.That(split.Similarity, Does.StartWith("cosine of the UNet's guidance direction"));
        Assert.That(split.MergeSimilarity, Does.StartWith("cosine of the text encoder's padded last hidden state E(prompt), after subtracting the mean"));
        Assert.That(split.Metadata["merge_edges"], Is.EqualTo("embedding"));
        Assert.That(split.Metadata["merge_neighbours"], Is.EqualTo("0"));
        Assert.That(split.Metadata.ContainsKey("merge_guidance_weight"), Is.False);
        var (weights, sizes) = SpectralClustering.BlockWeights(split.MergeGraph!, split.Hierarchy.Communities, 3);
        var expected = BottomUpClustering.Agglomerate(weights, sizes);
        Assert.That(split.Hierarchy.Tree.Merges.Select(m => (m.Left, m.Right, Math.Round(m.Similarity, 6))),
            Is.EqualTo(expected.Merges.Select(m => (m.Left, m.Right, Math.Round(m.Similarity, 6)))));
        // The same communities merged on the guidance graph itself give other heights.
        Assert.That(split.Hierarchy.Tree.Merges.Select(m => m.Similarity), Is.Not.EqualTo(guidance.Hierarchy.Tree.Merges.Select(m => m.Similarity)));

        var combined = Build("combined", "--edges", "guidance", "--neighbours", "1", "--images", "1", "--merge-edges", "combined", "--merge-neighbours", "2");
        Assert.That(combined.Metadata["merge_guidance_weight"], Is.EqualTo("0.3"));
        Assert.That(combined.MergeSimilarity, Does.StartWith("0.7 x cosine of the text encoder's").And.Contain("+ 0.3 x cosine of the UNet's guidance direction"));
        Assert.That(combined.Metadata["merge_neighbours"], Is.EqualTo("2"));
    }

    [Test]
    [Category(TestCategories.Slow)]
    public void BuildCrossEffects_FromTheShippedSpms_WritesAnAtlasOfTheirConcepts()
    {
        var json = Path.Combine(_dir, "cross.json");
        var (code, stdout, err) = Root("atlas", "build", "--model", Model, "--spm", "circle", "--spm", "red", "--spm", "striped", "--edges", "cross-effects",
            "--images", "1", "--steps", "4", "--out", json);
        Assert.That(code, Is.EqualTo(0), err);
        var atlas = ConceptAtlas.Load(json);
        Assert.That(atlas.Concepts, Is.EqualTo(new[] { "circle", "red", "striped" }));
        Assert.That(atlas.Metadata["edges"], Is.EqualTo("cross-effects"));
        Assert.That(atlas.Metadata["spms"], Is.EqualTo("circle, red, striped"));
        Assert.That(atlas.Metadata["steps"], Is.EqualTo("4"));
        Assert.That(atlas.Similarity, Does.StartWith("membrane cross-effects"));
        Assert.That(stdout, Does.Contain("3 concepts").And.Contain("wrote " + json));
    }
}
