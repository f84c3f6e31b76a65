using System.Globalization;
using System.Text.RegularExpressions;

namespace Spm.Core.Atlas;

/// <summary>
/// Concept lists a trainer takes from a concept atlas: a subtree's concepts (a family to erase together) and the
/// concepts nearest to a target or a family in the tree (anchors for latent anchoring, which must be kept).
/// </summary>
/// <remarks>
/// Tree node ids are the dendrogram's (<see cref="Dendrogram"/>): 0..K-1 are the finest communities, K + i the i-th
/// merge, the root last; <c>spm atlas show</c> prints them in brackets.
/// Anchors are ordered nearest first. "Nearest" follows the tree, not raw similarity: first the other concepts of the
/// target's own finest community, then, walking up from the target's community (or the family's node) to the root,
/// the concepts of the sibling subtree met at each ancestor. Whole subtrees are taken, in concept order, until the
/// list holds at least the asked minimum, so the list may be longer than the minimum (and is shorter only when the
/// atlas has no more concepts outside). Excluded concepts (a training run's surrogate: anchoring it would hold the
/// very prediction the erasure moves towards) are skipped and do not count towards the minimum.
/// </remarks>
public static class AtlasSelection
{
    /// <summary>Reads a tree node id given by a user (an integer printed by <c>spm atlas show</c>).</summary>
    /// <param name="atlas">The atlas.</param>
    /// <param name="text">The node id as text.</param>
    /// <param name="atlasPath">The atlas file, named in errors.</param>
    /// <exception cref="SpmException">Not an integer, or no node of the atlas has that id (the message names the node and the file).</exception>
    public static int ParseNode(ConceptAtlas atlas, string text, string atlasPath)
    {
        ArgumentNullException.ThrowIfNull(atlas);
        ArgumentNullException.ThrowIfNull(text);
        int last = atlas.Hierarchy.Tree.Root;
        if (!int.TryParse(text.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out int node) || node < 0 || node > last)
            throw new SpmException($"The atlas '{atlasPath}' has no node '{text}': its tree nodes are 0..{last} (0..{atlas.Hierarchy.CommunityCount - 1} the finest communities, {last} the root; 'spm atlas show' prints them in brackets).");
        return node;
    }

    /// <summary>The concepts of the subtree under <paramref name="node"/> (the finest communities below it), in concept order.</summary>
    public static IReadOnlyList<string> FamilyConcepts(ConceptAtlas atlas, int node)
    {
        ArgumentNullException.ThrowIfNull(atlas);
        CheckNode(atlas, node);
        var leaves = atlas.Hierarchy.Tree.Leaves(node).ToHashSet();
        return atlas.Concepts.Where((_, i) => leaves.Contains(atlas.Hierarchy.Communities[i])).ToArray();
    }

    /// <summary>
    /// Anchors for a family: the concepts of the sibling subtree at each ancestor of <paramref name="node"/>, nearest
    /// ancestor first, until at least <paramref name="minimum"/> are listed. Never a concept of the subtree itself.
    /// </summary>
    /// <param name="atlas">The atlas.</param>
    /// <param name="node">The family's tree node.</param>
    /// <param name="minimum">Anchors wanted at least.</param>
    /// <param name="exclude">Concept indices never to list (the surrogate's concept); null for none.</param>
    public static IReadOnlyList<string> FamilyAnchors(ConceptAtlas atlas, int node, int minimum, IReadOnlyCollection<int>? exclude = null)
    {
        ArgumentNullException.ThrowIfNull(atlas);
        CheckNode(atlas, node);
        ArgumentOutOfRangeException.ThrowIfNegative(minimum);
        var result = new List<string>();
        AddSiblings(atlas, node, minimum, result, exclude ?? []);
        return result;
    }

    /// <summary>
    /// Anchors for one target concept: the other concepts of its finest community, then (while fewer than
    /// <paramref name="minimum"/>) the sibling subtrees walking up from that community. Never the target itself.
    /// </summary>
    /// <param name="atlas">The atlas.</param>
    /// <param name="concept">The target's concept index.</param>
    /// <param name="minimum">Anchors wanted at least.</param>
    /// <param name="exclude">Concept indices never to list besides the target (the surrogate's concept); null for none.</param>
    public static IReadOnlyList<string> ConceptAnchors(ConceptAtlas atlas, int concept, int minimum, IReadOnlyCollection<int>? exclude = null)
    {
        ArgumentNullException.ThrowIfNull(atlas);
        ArgumentOutOfRangeException.ThrowIfNegative(concept);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(concept, atlas.Concepts.Count);
        ArgumentOutOfRangeException.ThrowIfNegative(minimum);
        exclude ??= [];
        int community = atlas.Hierarchy.Communities[concept];
        var result = atlas.Concepts.Where((_, i) => i != concept && !exclude.Contains(i) && atlas.Hierarchy.Communities[i] == community).ToList();
        AddSiblings(atlas, community, minimum, result, exclude);
        return result;
    }

    /// <summary>
    /// The atlas concepts a phrase names, as <see cref="FindConcept"/> reads a target: the concept equal to it (case and
    /// surrounding spaces ignored) alone, else every concept containing it as a whole word or phrase ("blue" names
    /// "a blue shape" and "on a light blue background"); empty when none does or the phrase is blank.
    /// </summary>
    public static IReadOnlyList<int> ConceptsNamedBy(ConceptAtlas atlas, string phrase)
    {
        ArgumentNullException.ThrowIfNull(atlas);
        ArgumentNullException.ThrowIfNull(phrase);
        string t = phrase.Trim();
        if (t.Length == 0) return [];
        for (int i = 0; i < atlas.Concepts.Count; i++)
            if (string.Equals(atlas.Concepts[i].Trim(), t, StringComparison.OrdinalIgnoreCase)) return [i];
        var word = new Regex($@"(?<![\w]){Regex.Escape(t)}(?![\w])", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant);
        return Enumerable.Range(0, atlas.Concepts.Count).Where(i => word.IsMatch(atlas.Concepts[i])).ToArray();
    }

    /// <summary>
    /// The atlas concept a training target names: the concept equal to it (case and surrounding spaces ignored), else
    /// the only concept that contains it as a whole word or phrase ("circle" names "a circle").
    /// </summary>
    /// <exception cref="SpmException">No concept, or several, match (the message names the target and the atlas file).</exception>
    public static int FindConcept(ConceptAtlas atlas, string target, string atlasPath)
    {
        ArgumentNullException.ThrowIfNull(atlas);
        ArgumentNullException.ThrowIfNull(target);
        var hits = ConceptsNamedBy(atlas, target);
        if (hits.Count == 1) return hits[0];
        if (hits.Count > 1)
            throw new SpmException($"'{target}' names several concepts of the atlas '{atlasPath}' ({string.Join(", ", hits.Select(i => $"\"{atlas.Concepts[i]}\""))}); give one of them exactly as --concept.");
        throw new SpmException($"'{target}' is not a concept of the atlas '{atlasPath}' (nor a word of exactly one of its {atlas.Concepts.Count} concepts); family anchors need the target in the atlas: add its prompt and rebuild the atlas, or name one of its concepts.");
    }

    private static void AddSiblings(ConceptAtlas atlas, int node, int minimum, List<string> result, IReadOnlyCollection<int> exclude)
    {
        var tree = atlas.Hierarchy.Tree;
        for (int child = node, parent = tree.Parent(node); parent != -1 && result.Count < minimum; child = parent, parent = tree.Parent(parent))
        {
            var (l, r) = tree.Children(parent);
            var leaves = tree.Leaves(l == child ? r : l).ToHashSet();
            result.AddRange(atlas.Concepts.Where((_, i) => !exclude.Contains(i) && leaves.Contains(atlas.Hierarchy.Communities[i])));
        }
    }

    private static void CheckNode(ConceptAtlas atlas, int node)
    {
        if (node < 0 || node > atlas.Hierarchy.Tree.Root)
            throw new ArgumentOutOfRangeException(nameof(node), node, $"The atlas's tree nodes are 0..{atlas.Hierarchy.Tree.Root}.");
    }
}
