using Spm.Tests.Common;
using Spm.Core.Atlas;

namespace Spm.Core.Tests.Atlas;

/// <summary>Family and anchor selection from a small hand-written atlas (the shape of the built-in vocabulary's).</summary>
[TestFixture]
public sealed class AtlasSelectionTests
{
    private const string Json = HandMadeAtlas.Json;

    private string _dir = null!;
    private string _path = null!;
    private ConceptAtlas _atlas = null!;

    [SetUp]
    public void SetUp()
    {
        _dir = Spm.Tests.Common.TestPaths.NewTempDir("spm-atlas-select");
        _path = Path.Combine(_dir, "atlas.json");
        File.WriteAllText(_path, Json);
        _atlas = ConceptAtlas.Load(_path);
    }

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, true);

    [Test]
    public void ConceptAnchors_OwnCommunityFirst_ThenSiblingSubtreesWalkingUp_WholeSubtrees()
    {
        // circle: the other shapes (2 < 4), then the sibling of the shapes, node 4 (colours and patterns), whole.
        Assert.That(AtlasSelection.ConceptAnchors(_atlas, 0, 4),
            Is.EqualTo(new[] { "a square", "a triangle", "a red shape", "a blue shape", "a striped pattern", "a plain pattern" }));
        // red: blue (1 < 4), the patterns (3 < 4), then the shapes (sibling of node 4 under node 5).
        Assert.That(AtlasSelection.ConceptAnchors(_atlas, 3, 4),
            Is.EqualTo(new[] { "a blue shape", "a striped pattern", "a plain pattern", "a circle", "a square", "a triangle" }));
        Assert.That(AtlasSelection.ConceptAnchors(_atlas, 3, 1), Is.EqualTo(new[] { "a blue shape" }));
        // Asking for more than the atlas holds gives every other concept, nearest first, never the target.
        Assert.That(AtlasSelection.ConceptAnchors(_atlas, 5, 100),
            Is.EqualTo(new[] { "a plain pattern", "a red shape", "a blue shape", "a circle", "a square", "a triangle", "on a white background" }));
        Assert.That(AtlasSelection.ConceptAnchors(_atlas, 7, 0), Is.Empty);
    }

    [Test]
    public void Anchors_LeaveOutExcludedConcepts_AndWalkOnToMakeUpTheMinimum()
    {
        // striped with surrogate "plain": the community's other pattern is gone, so the colours (node 1) follow, and
        // with a minimum of 3 also the shapes (node 0), which the list with plain in it never reached.
        int plain = AtlasSelection.FindConcept(_atlas, "plain", _path);
        Assert.That(AtlasSelection.ConceptAnchors(_atlas, 5, 3), Is.EqualTo(new[] { "a plain pattern", "a red shape", "a blue shape" }));
        Assert.That(AtlasSelection.ConceptAnchors(_atlas, 5, 3, [plain]), Is.EqualTo(new[] { "a red shape", "a blue shape", "a circle", "a square", "a triangle" }));
        Assert.That(AtlasSelection.ConceptAnchors(_atlas, 5, 100, [plain]), Has.No.Member("a plain pattern").And.No.Member("a striped pattern").And.Count.EqualTo(6));
        Assert.That(AtlasSelection.ConceptAnchors(_atlas, 5, 3, []), Is.EqualTo(AtlasSelection.ConceptAnchors(_atlas, 5, 3)));
        // A family's anchors skip the excluded concept too.
        Assert.That(AtlasSelection.FamilyAnchors(_atlas, 0, 4, [3]), Is.EqualTo(new[] { "a blue shape", "a striped pattern", "a plain pattern", "on a white background" }));
    }

    [Test]
    public void ConceptsNamedBy_ExactAloneElseEveryWholeWordMatch()
    {
        Assert.That(AtlasSelection.ConceptsNamedBy(_atlas, "plain"), Is.EqualTo(new[] { 6 }));
        Assert.That(AtlasSelection.ConceptsNamedBy(_atlas, " A Red Shape "), Is.EqualTo(new[] { 3 }));
        Assert.That(AtlasSelection.ConceptsNamedBy(_atlas, "shape"), Is.EqualTo(new[] { 3, 4 }));
        Assert.That(AtlasSelection.ConceptsNamedBy(_atlas, "squ"), Is.Empty, "whole words only");
        Assert.That(AtlasSelection.ConceptsNamedBy(_atlas, "  "), Is.Empty);
        Assert.That(AtlasSelection.ConceptsNamedBy(_atlas, "dog"), Is.Empty);
    }

    [Test]
    public void FamilyConcepts_AreTheSubtreesConcepts_AndFamilyAnchorsLieOutsideIt()
    {
        Assert.That(AtlasSelection.FamilyConcepts(_atlas, 4), Is.EqualTo(new[] { "a red shape", "a blue shape", "a striped pattern", "a plain pattern" }));
        Assert.That(AtlasSelection.FamilyConcepts(_atlas, 0), Is.EqualTo(new[] { "a circle", "a square", "a triangle" }));
        Assert.That(AtlasSelection.FamilyConcepts(_atlas, 6), Is.EqualTo(_atlas.Concepts));
        Assert.That(AtlasSelection.FamilyAnchors(_atlas, 4, 3), Is.EqualTo(new[] { "a circle", "a square", "a triangle" }));
        Assert.That(AtlasSelection.FamilyAnchors(_atlas, 4, 4), Is.EqualTo(new[] { "a circle", "a square", "a triangle", "on a white background" }));
        Assert.That(AtlasSelection.FamilyAnchors(_atlas, 5, 1), Is.EqualTo(new[] { "on a white background" }));
        Assert.That(AtlasSelection.FamilyAnchors(_atlas, 6, 4), Is.Empty, "the root has nothing outside it");
        Assert.That(() => AtlasSelection.FamilyConcepts(_atlas, 7), Throws.InstanceOf<ArgumentOutOfRangeException>());
    }

    [Test]
    public void FindConcept_ExactThenWholeWord_AndErrorsNameTheTargetAndTheFile()
    {
        Assert.That(AtlasSelection.FindConcept(_atlas, "a circle", _path), Is.EqualTo(0));
        Assert.That(AtlasSelection.FindConcept(_atlas, " A Circle ", _path), Is.EqualTo(0));
        Assert.That(AtlasSelection.FindConcept(_atlas, "circle", _path), Is.EqualTo(0));
        Assert.That(AtlasSelection.FindConcept(_atlas, "red", _path), Is.EqualTo(3));
        Assert.That(AtlasSelection.FindConcept(_atlas, "striped", _path), Is.EqualTo(5));
        Assert.That(() => AtlasSelection.FindConcept(_atlas, "shape", _path), Throws.InstanceOf<SpmException>()
            .With.Message.EqualTo($"'shape' names several concepts of the atlas '{_path}' (\"a red shape\", \"a blue shape\"); give one of them exactly as --concept."));
        Assert.That(() => AtlasSelection.FindConcept(_atlas, "circ", _path), Throws.InstanceOf<SpmException>()
            .With.Message.StartsWith($"'circ' is not a concept of the atlas '{_path}'"));
    }

    [Test]
    public void ParseNode_AcceptsTheTreesIds_AndNamesAnUnknownNodeAndTheFile()
    {
        Assert.That(AtlasSelection.ParseNode(_atlas, "4", _path), Is.EqualTo(4));
        Assert.That(AtlasSelection.ParseNode(_atlas, "0", _path), Is.EqualTo(0));
        foreach (var bad in new[] { "7", "-1", "colours" })
            Assert.That(() => AtlasSelection.ParseNode(_atlas, bad, _path), Throws.InstanceOf<SpmException>()
                .With.Message.StartsWith($"The atlas '{_path}' has no node '{bad}': its tree nodes are 0..6"));
    }

    [Test]
    public void TreeLines_StartWithEachNodesId()
    {
        Assert.That(_atlas.TreeLines(), Is.EqualTo(new[]
        {
            "[6] merge at 0.000 (8 concepts)",
            "├─ [5] merge at 0.004 (7 concepts)",
            "│  ├─ [0] a circle, a square, a triangle",
            "│  └─ [4] merge at 0.020 (4 concepts)",
            "│     ├─ [1] a red shape, a blue shape",
            "│     └─ [2] a striped pattern, a plain pattern",
            "└─ [3] on a white background",
        }));
    }
}
