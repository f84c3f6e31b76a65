using System.Text.Json.Nodes;
using Spm.Core.Library;
using Spm.Core.Membranes;
using Spm.Core.Tensors;
using Spm.Tests.Common;

namespace Spm.Core.Tests.Library;

public class SpmLibraryTests
{
    private string _dir = null!;
    private string _src = null!;

    [SetUp]
    public void SetUp()
    {
        _dir = TestPaths.NewTempDir("spm-lib");
        _src = TestPaths.NewTempDir("spm-lib-src");
    }

    [TearDown]
    public void TearDown()
    {
        Directory.Delete(_dir, true);
        Directory.Delete(_src, true);
    }

    /// <summary>Writes a one-membrane SPM file with the given prompts (and metadata).</summary>
    internal static string WriteSpm(string dir, string name, string[] prompts, int rank = 2, float alpha = 1f, Dictionary<string, string>? extra = null, int seed = 1)
    {
        var rng = new Random(seed);
        var down = new FloatTensor(new[] { rank, 8 }, Enumerable.Range(0, rank * 8).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray());
        var up = new FloatTensor(new[] { 8, rank }, Enumerable.Range(0, rank * 8).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray());
        var adapter = new SpmAdapter(new SpmConfig(prompts, rank, alpha, extra),
            new[] { new Membrane(SpmKeys.KeyFor("down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k"), down, up, alpha) });
        var path = Path.Combine(dir, name);
        SpmFile.Save(path, adapter);
        return path;
    }

    [Test]
    public void InitAddListRoundTrips()
    {
        SpmLibrary.Init(_dir);
        var lib = SpmLibrary.Open(_dir);
        Assert.That(lib.Entries, Is.Empty);
        var cat = WriteSpm(_src, "cat.safetensors", ["cat", "kitten"], rank: 4, alpha: 2f, extra: new() { [SpmMetadataKeys.BaseModel] = "tiny-sd1" });
        var e = lib.Add(cat);
        Assert.That(e.Concept, Is.EqualTo("cat"));
        Assert.That(e.Prompts, Is.EqualTo(new[] { "cat", "kitten" }));
        Assert.That(e.File, Is.EqualTo("cat.safetensors"));
        Assert.That(e.Rank, Is.EqualTo(4));
        Assert.That(e.Alpha, Is.EqualTo(2f));
        Assert.That(e.BaseModel, Is.EqualTo("tiny-sd1"));
        Assert.That(e.GateCalibration, Is.EqualTo(SpmLibrary.CosineCalibration));
        Assert.That(e.Version, Is.EqualTo(1));
        Assert.That(e.Sha256, Has.Length.EqualTo(64));
        Assert.That(File.ReadAllBytes(Path.Combine(_dir, "cat.safetensors")), Is.EqualTo(File.ReadAllBytes(cat)));

        var reopened = SpmLibrary.Open(_dir);
        Assert.That(reopened.Entries, Has.Count.EqualTo(1));
        Assert.That(reopened.Entries[0] with { Prompts = e.Prompts }, Is.EqualTo(e));
        Assert.That(reopened.Entries[0].Prompts, Is.EqualTo(e.Prompts));
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(_dir, SpmLibrary.IndexFileName)))!;
        Assert.That((string?)json["format"], Is.EqualTo("spm-library"));
        Assert.That((string?)json["entries"]![0]!["sha256"], Is.EqualTo(e.Sha256));
        Assert.That(reopened.Verify(), Is.Empty);
    }

    [Test]
    public void Add_RecordsTheModelFamily_FromTheMetadataOrTheCrossAttentionWidth()
    {
        SpmLibrary.Init(_dir);
        var lib = SpmLibrary.Open(_dir);
        // Written by the trainer: taken as recorded.
        var recorded = lib.Add(WriteSpm(_src, "xl.safetensors", ["xl"], extra: new() { [SpmMetadataKeys.ModelFamily] = SpmModelFamily.Sdxl }));
        Assert.That(recorded.ModelFamily, Is.EqualTo("sdxl"));
        // Without it (the official release, other tools): the width an attn2 to_k membrane reads, 768 = SD 1.x's CLIP.
        var sd1 = new SpmAdapter(new SpmConfig(["cat"], 1, 1f),
            [new Membrane(SpmKeys.KeyFor("down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k"), new FloatTensor([1, 768]), new FloatTensor([320, 1]), 1f)]);
        SpmFile.Save(Path.Combine(_src, "cat.safetensors"), sd1);
        Assert.That(lib.Add(Path.Combine(_src, "cat.safetensors")).ModelFamily, Is.EqualTo("sd1"));
        // An 8-wide toy layer tells nothing: no family, and the index leaves the field out.
        var toy = lib.Add(WriteSpm(_src, "toy.safetensors", ["toy"]));
        Assert.That(toy.ModelFamily, Is.Null);
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(_dir, SpmLibrary.IndexFileName)))!["entries"]!.AsArray();
        Assert.That(json.Select(e => (string?)e!["model_family"]), Is.EqualTo(new[] { "sdxl", "sd1", null }));
        Assert.That(json[2]!.AsObject().ContainsKey("model_family"), Is.False);
        Assert.That(SpmLibrary.Open(_dir).Entries.Select(e => e.ModelFamily), Is.EqualTo(new[] { "sdxl", "sd1", null }));
    }

    [Test]
    public void InitRefusesExistingLibrary()
    {
        SpmLibrary.Init(_dir);
        Assert.That(() => SpmLibrary.Init(_dir), Throws.InstanceOf<SpmException>().With.Message.Contains(SpmLibrary.IndexFileName));
    }

    [Test]
    public void OpenWithoutIndexIsNotFound()
    {
        Assert.That(() => SpmLibrary.Open(_dir), Throws.TypeOf<SpmInputNotFoundException>().With.Message.Contains("spm library init"));
    }

    [Test]
    public void BrokenIndexIsAFormatErrorNamingIt()
    {
        File.WriteAllText(Path.Combine(_dir, SpmLibrary.IndexFileName), "{ not json");
        Assert.That(() => SpmLibrary.Open(_dir), Throws.TypeOf<SpmFormatException>().With.Message.Contains(SpmLibrary.IndexFileName));
    }

    [Test]
    public void AddingAPresentConcept_ReplacesItWithTheNextVersion_AndRecordsTheOldEntry()
    {
        var lib = SpmLibrary.Init(_dir);
        var first = lib.Add(WriteSpm(_src, "cat.safetensors", ["cat"], extra: new() { [SpmMetadataKeys.Training] = "{\"iterations\":100}" }));
        Assert.That(first.Training, Is.EqualTo("{\"iterations\":100}"), "the training settings are recorded");
        var other = WriteSpm(_src, "cat2.safetensors", ["Cat"], seed: 2, extra: new() { [SpmMetadataKeys.Training] = "{\"iterations\":300}" });
        Assert.That(() => lib.Add(other, replace: false), Throws.InstanceOf<SpmException>().With.Message.Contains("already has concept 'cat'").And.Message.Contains("--no-replace"));
        var replaced = lib.Add(other);
        Assert.That(replaced.Version, Is.EqualTo(2));
        Assert.That(replaced.File, Is.EqualTo("cat2.safetensors"));
        Assert.That(File.Exists(Path.Combine(_dir, "cat.safetensors")), Is.False, "the replaced copy is deleted");
        var reopened = SpmLibrary.Open(_dir);
        Assert.That(reopened.Entries, Has.Count.EqualTo(1));
        Assert.That(reopened.Index.History!.Select(e => (e.File, e.Sha256, e.Version, e.Training)), Is.EqualTo(new[] { (first.File, first.Sha256, 1, first.Training) }),
            "the old entry, as it was, is in the history");
        Assert.That(lib.Verify(), Is.Empty);

        // The same bytes again change nothing; a third version goes on the history too.
        var again = lib.Add(other);
        Assert.That((again.Version, again.Sha256, again.File), Is.EqualTo((2, replaced.Sha256, replaced.File)));
        Assert.That(SpmLibrary.Open(_dir).Entries.Single().Version, Is.EqualTo(2));
        var third = lib.Add(WriteSpm(_src, "cat3.safetensors", ["cat"], seed: 3));
        Assert.That(third.Version, Is.EqualTo(3));
        Assert.That(SpmLibrary.Open(_dir).Index.History!.Select(e => e.Version), Is.EqualTo(new[] { 1, 2 }));
    }

    [Test]
    public void AnIndexWithoutHistoryOrTraining_IsWrittenAsBefore()
    {
        var lib = SpmLibrary.Init(_dir);
        lib.Add(WriteSpm(_src, "cat.safetensors", ["cat"]));
        var text = File.ReadAllText(Path.Combine(_dir, SpmLibrary.IndexFileName));
        Assert.That(text, Does.Not.Contain("history").And.Not.Contain("training"));
    }

    [Test]
    public void Diff_ListsAddedRemovedAndChangedConcepts()
    {
        var a = SpmLibrary.Init(Path.Combine(_dir, "a"));
        var b = SpmLibrary.Init(Path.Combine(_dir, "b"));
        var cat = WriteSpm(_src, "cat.safetensors", ["cat"]);
        var dog = WriteSpm(_src, "dog.safetensors", ["dog"], rank: 4);
        a.Add(cat); a.Add(dog); a.Add(WriteSpm(_src, "owl.safetensors", ["owl"]));
        b.Add(cat); b.Add(WriteSpm(_src, "fox.safetensors", ["fox"]));
        Assert.That(SpmLibrary.Diff(a, a), Is.Empty);
        b.Add(dog);
        b.Add(WriteSpm(_src, "dog2.safetensors", ["dog"], rank: 2, alpha: 0.5f, seed: 5, extra: new() { [SpmMetadataKeys.Training] = "{\"lr\":1}" }), concept: "dog");
        var diff = SpmLibrary.Diff(a, b);
        Assert.That(diff.Select(c => (c.Concept, c.Kind)), Is.EqualTo(new[]
        {
            ("owl", LibraryChangeKind.Removed), ("fox", LibraryChangeKind.Added), ("dog", LibraryChangeKind.Changed),
        }));
        var dogChange = diff.Single(c => c.Concept == "dog");
        Assert.That(dogChange.Fields.Select(f => f.Field), Is.EqualTo(new[] { "sha256", "version", "rank", "alpha", "training" }));
        Assert.That(dogChange.Fields.Single(f => f.Field == "version"), Is.EqualTo(new LibraryFieldChange("version", "1", "2")));
        Assert.That(dogChange.Fields.Single(f => f.Field == "rank"), Is.EqualTo(new LibraryFieldChange("rank", "4", "2")));
        Assert.That(dogChange.Fields.Single(f => f.Field == "training"), Is.EqualTo(new LibraryFieldChange("training", "-", "{\"lr\":1}")));
        Assert.That(dogChange.Fields.Single(f => f.Field == "sha256").New, Is.EqualTo(b.Find("dog")!.Sha256));
        Assert.That(SpmLibrary.Diff(b, a).Select(c => (c.Concept, c.Kind)), Is.EqualTo(new[]
        {
            ("fox", LibraryChangeKind.Removed), ("dog", LibraryChangeKind.Changed), ("owl", LibraryChangeKind.Added),
        }));
    }

    [Test]
    public void ExplicitConceptAndReferenceDoNotCopy()
    {
        var lib = SpmLibrary.Init(_dir);
        var path = WriteSpm(_src, "x.safetensors", ["a red circle"]);
        var e = lib.Add(path, concept: "circle", reference: true);
        Assert.That(e.Concept, Is.EqualTo("circle"));
        Assert.That(e.Referenced, Is.True);
        Assert.That(e.File, Is.EqualTo(Path.GetFullPath(path)));
        Assert.That(Directory.GetFiles(_dir, "*.safetensors"), Is.Empty);
        lib.Remove("circle");
        Assert.That(File.Exists(path), Is.True, "a referenced file is never deleted");
    }

    [Test]
    public void FileNameTakenByAnotherConceptIsRefused()
    {
        var lib = SpmLibrary.Init(_dir);
        lib.Add(WriteSpm(_src, "spm.safetensors", ["cat"]));
        var sub = Directory.CreateDirectory(Path.Combine(_src, "b")).FullName;
        var dog = WriteSpm(sub, "spm.safetensors", ["dog"]);
        Assert.That(() => lib.Add(dog), Throws.InstanceOf<SpmException>().With.Message.Contains("'spm.safetensors'").And.Message.Contains("cat"));
    }

    [Test]
    public void AddingABrokenFileFailsNamingItAndChangesNothing()
    {
        var lib = SpmLibrary.Init(_dir);
        var bad = Path.Combine(_src, "bad.safetensors");
        File.WriteAllText(bad, "not a safetensors file");
        Assert.That(() => lib.Add(bad), Throws.TypeOf<SpmFormatException>().With.Message.Contains("bad.safetensors"));
        Assert.That(() => lib.Add(Path.Combine(_src, "none.safetensors")), Throws.TypeOf<SpmInputNotFoundException>().With.Message.Contains("none.safetensors"));
        Assert.That(SpmLibrary.Open(_dir).Entries, Is.Empty);
        Assert.That(Directory.GetFiles(_dir, "*.safetensors"), Is.Empty);
    }

    [Test]
    public void RemoveDeletesTheCopyAndUnknownConceptFails()
    {
        var lib = SpmLibrary.Init(_dir);
        lib.Add(WriteSpm(_src, "cat.safetensors", ["cat"]));
        lib.Add(WriteSpm(_src, "dog.safetensors", ["dog"], seed: 3));
        Assert.That(() => lib.Remove("bird"), Throws.InstanceOf<SpmException>().With.Message.Contains("'bird'").And.Message.Contains("cat, dog"));
        lib.Remove("CAT");
        Assert.That(SpmLibrary.Open(_dir).Entries.Select(e => e.Concept), Is.EqualTo(new[] { "dog" }));
        Assert.That(File.Exists(Path.Combine(_dir, "cat.safetensors")), Is.False);
        lib.Remove("dog", keepFile: true);
        Assert.That(File.Exists(Path.Combine(_dir, "dog.safetensors")), Is.True);
    }

    [Test]
    public void VerifyReportsEachProblemNamingTheFile()
    {
        var lib = SpmLibrary.Init(_dir);
        lib.Add(WriteSpm(_src, "cat.safetensors", ["cat"]));
        lib.Add(WriteSpm(_src, "dog.safetensors", ["dog"], seed: 3));
        lib.Add(WriteSpm(_src, "owl.safetensors", ["owl"], seed: 4));
        File.Delete(Path.Combine(_dir, "cat.safetensors"));
        File.WriteAllText(Path.Combine(_dir, "dog.safetensors"), "garbage");
        var owl = Path.Combine(_dir, "owl.safetensors");
        WriteSpm(_src, "owl2.safetensors", ["owl"], seed: 5);
        File.Copy(Path.Combine(_src, "owl2.safetensors"), owl, overwrite: true);

        var problems = lib.Verify();
        Assert.That(problems.Single(p => p.Concept == "cat").Message, Does.Contain("cat.safetensors").And.Contain("missing"));
        var dog = problems.Where(p => p.Concept == "dog").Select(p => p.Message).ToList();
        Assert.That(dog, Has.Some.Contains("SHA-256").And.All.Contains("dog.safetensors"));
        Assert.That(dog, Has.Some.Contains("does not load"));
        Assert.That(problems.Single(p => p.Concept == "owl").Message, Does.Contain("owl.safetensors").And.Contain("SHA-256"));
    }

    [Test]
    public void LearnedGateIsRecorded()
    {
        var lib = SpmLibrary.Init(_dir);
        var e = lib.Add(WriteSpm(_src, "cat.safetensors", ["cat"], extra: new() { [SpmMetadataKeys.GateProbe] = "{}" }));
        Assert.That(e.GateCalibration, Is.EqualTo(SpmLibrary.LearnedCalibration));
    }

    [Test]
    public void ConcurrentAddsLoseNoEntry()
    {
        SpmLibrary.Init(_dir);
        var files = Enumerable.Range(0, 12).Select(i => WriteSpm(_src, $"c{i}.safetensors", [$"concept {i}"], seed: i)).ToArray();
        Parallel.ForEach(files, new ParallelOptions { MaxDegreeOfParallelism = 6 }, f => SpmLibrary.Open(_dir).Add(f));
        var lib = SpmLibrary.Open(_dir);
        Assert.That(lib.Entries.Select(e => e.Concept).Order(), Is.EqualTo(Enumerable.Range(0, 12).Select(i => $"concept {i}").Order()));
        Assert.That(lib.Verify(), Is.Empty);
    }
}
