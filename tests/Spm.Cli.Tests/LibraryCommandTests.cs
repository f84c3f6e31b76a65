using System.Text.Json.Nodes;
using Spm.Cli.Commands;
using Spm.Core.Library;
using Spm.Core.Membranes;
using Spm.Core.Tensors;
using Spm.Tests.Common;

namespace Spm.Cli.Tests;

[TestFixture]
public class LibraryCommandTests
{
    private string _root = null!;
    private string _lib = null!;

    [SetUp]
    public void SetUp()
    {
        _root = TestPaths.NewTempDir("spm-libcli");
        _lib = Path.Combine(_root, "lib");
    }

    [TearDown] public void TearDown() => Directory.Delete(_root, true);

    private static (int Code, string Out, string Err) Run(params string[] args)
        => CliHarness.Run(c => [LibraryCommand.Create(c)], args);

    private string WriteSpm(string name, string prompt, int seed = 1)
    {
        var rng = new Random(seed);
        var down = new FloatTensor(new[] { 1, 8 }, Enumerable.Range(0, 8).Select(_ => (float)rng.NextDouble()).ToArray());
        var up = new FloatTensor(new[] { 8, 1 }, Enumerable.Range(0, 8).Select(_ => (float)rng.NextDouble()).ToArray());
        var adapter = new SpmAdapter(new SpmConfig([prompt], 1, 1f, new Dictionary<string, string> { [SpmMetadataKeys.BaseModel] = "tiny-shapes" }),
            [new Membrane(SpmKeys.KeyFor("down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k"), down, up, 1f)]);
        var path = Path.Combine(_root, name);
        SpmFile.Save(path, adapter);
        return path;
    }

    [Test]
    public void InitAddListRemoveVerify()
    {
        var (code, stdout, stderr) = Run("library", "init", _lib);
        Assert.That(code, Is.EqualTo(ExitCodes.Ok), stderr);
        Assert.That(stdout, Does.Contain("Created library"));
        Assert.That(File.Exists(Path.Combine(_lib, SpmLibrary.IndexFileName)));

        (code, stdout, stderr) = Run("library", "add", _lib, WriteSpm("circle.safetensors", "circle"), WriteSpm("red.safetensors", "red", 2));
        Assert.That(code, Is.EqualTo(ExitCodes.Ok), stderr);
        Assert.That(stdout, Does.Contain("Added 'circle' v1").And.Contain("Added 'red' v1"));

        (code, stdout, stderr) = Run("library", "list", _lib);
        Assert.That(code, Is.EqualTo(ExitCodes.Ok), stderr);
        Assert.That(stdout, Does.Contain("circle").And.Contain("red.safetensors").And.Contain("tiny-shapes").And.Contain("2 SPM(s)."));

        (code, stdout, stderr) = Run("library", "list", _lib, "--json");
        Assert.That(code, Is.EqualTo(ExitCodes.Ok), stderr);
        var entries = JsonNode.Parse(stdout)!.AsArray();
        Assert.That(entries.Select(e => (string?)e!["concept"]), Is.EqualTo(new[] { "circle", "red" }));
        Assert.That((string?)entries[0]!["gate_calibration"], Is.EqualTo("cosine"));

        (code, stdout, stderr) = Run("library", "verify", _lib);
        Assert.That(code, Is.EqualTo(ExitCodes.Ok), stderr);
        Assert.That(stdout, Does.Contain("OK: 2 SPM(s) verified"));

        (code, stdout, stderr) = Run("library", "show", _lib, "RED");
        Assert.That(code, Is.EqualTo(ExitCodes.Ok), stderr);
        var red = JsonNode.Parse(stdout)!;
        Assert.That((string?)red["concept"], Is.EqualTo("red"));
        Assert.That((string?)red["path"], Is.EqualTo(Path.Combine(_lib, "red.safetensors")));
        Assert.That((int?)red["version"], Is.EqualTo(1));
        (code, _, stderr) = Run("library", "show", _lib, "blue");
        Assert.That(code, Is.EqualTo(ExitCodes.UsageError));
        Assert.That(stderr, Does.Contain("'blue'").And.Contain("circle, red"));

        (code, stdout, stderr) = Run("library", "remove", _lib, "circle");
        Assert.That(code, Is.EqualTo(ExitCodes.Ok), stderr);
        Assert.That(stdout, Does.Contain("Removed 'circle'"));
        Assert.That(SpmLibrary.Open(_lib).Entries.Select(e => e.Concept), Is.EqualTo(new[] { "red" }));
    }

    [Test]
    public void AddWithConceptAndReplace()
    {
        Run("library", "init", _lib);
        var a = WriteSpm("a.safetensors", "a red circle");
        Assert.That(Run("library", "add", _lib, a, "--concept", "circle").Code, Is.EqualTo(ExitCodes.Ok));
        var (code, stdout, stderr) = Run("library", "add", _lib, WriteSpm("b.safetensors", "circle", 3), "--no-replace");
        Assert.That(code, Is.EqualTo(ExitCodes.UsageError));
        Assert.That(stderr, Does.Contain("already has concept 'circle'").And.Contain("--no-replace"));
        (code, stdout, stderr) = Run("library", "add", _lib, Path.Combine(_root, "b.safetensors"));
        Assert.That(code, Is.EqualTo(ExitCodes.Ok), stderr);
        Assert.That(stdout, Does.Contain("Replaced 'circle' v1 -> v2"));
        (code, stdout, stderr) = Run("library", "add", _lib, Path.Combine(_root, "b.safetensors"), "--replace");
        Assert.That(code, Is.EqualTo(ExitCodes.Ok), stderr);
        Assert.That(stdout, Does.Contain("Unchanged 'circle' v2"));
        (code, _, stderr) = Run("library", "add", _lib, a, WriteSpm("c.safetensors", "c", 4), "--concept", "x");
        Assert.That(code, Is.EqualTo(ExitCodes.UsageError));
        Assert.That(stderr, Does.Contain("--concept"));
    }

    [Test]
    public void Diff_PrintsAddedRemovedAndChanged_AndJson()
    {
        var b = Path.Combine(_root, "lib-b");
        Run("library", "init", _lib);
        Run("library", "init", b);
        var circle = WriteSpm("circle.safetensors", "circle");
        Assert.That(Run("library", "add", _lib, circle, WriteSpm("red.safetensors", "red", 2)).Code, Is.EqualTo(ExitCodes.Ok));
        Assert.That(Run("library", "add", b, circle, WriteSpm("star.safetensors", "star", 5)).Code, Is.EqualTo(ExitCodes.Ok));
        Assert.That(Run("library", "add", b, WriteSpm("circle2.safetensors", "circle", 7)).Code, Is.EqualTo(ExitCodes.Ok));
        var (code, stdout, stderr) = Run("library", "diff", _lib, b);
        Assert.That(code, Is.EqualTo(ExitCodes.Ok), stderr);
        var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.That(lines[0], Does.StartWith("- red (v1, rank 1, sha256 "));
        Assert.That(lines[1], Does.StartWith("~ circle: sha256 ").And.Contain("; version 1 -> 2"));
        Assert.That(lines[2], Does.StartWith("+ star (v1, rank 1, sha256 "));
        Assert.That(lines[3], Is.EqualTo("1 added, 1 removed, 1 changed."));
        (code, stdout, _) = Run("library", "diff", _lib, b, "--json");
        var array = JsonNode.Parse(stdout)!.AsArray();
        Assert.That(array.Select(n => ((string)n!["concept"]!, (string)n["change"]!)), Is.EqualTo(new[] { ("red", "removed"), ("circle", "changed"), ("star", "added") }));
        Assert.That(array[1]!["fields"]!.AsArray().Select(f => (string)f!["field"]!), Is.EqualTo(new[] { "sha256", "version" }));
        (_, stdout, _) = Run("library", "diff", b, b);
        Assert.That(stdout, Does.Contain("No differences (2 concept(s))."));
        (code, _, stderr) = Run("library", "diff", _lib, Path.Combine(_root, "missing"));
        Assert.That(code, Is.EqualTo(ExitCodes.MissingInput));
    }

    [Test]
    public void ErrorsHaveExitCodesAndNameTheFile()
    {
        var (code, _, stderr) = Run("library", "list", _lib);
        Assert.That(code, Is.EqualTo(ExitCodes.MissingInput));
        Assert.That(stderr, Does.Contain("lib"));

        Run("library", "init", _lib);
        (code, _, stderr) = Run("library", "init", _lib);
        Assert.That(code, Is.EqualTo(ExitCodes.UsageError));
        Assert.That(stderr, Does.Contain(SpmLibrary.IndexFileName));

        (code, _, stderr) = Run("library", "add", _lib, Path.Combine(_root, "nope.safetensors"));
        Assert.That(code, Is.EqualTo(ExitCodes.MissingInput));
        Assert.That(stderr, Does.Contain("nope.safetensors"));

        var bad = Path.Combine(_root, "bad.safetensors");
        File.WriteAllText(bad, "garbage");
        (code, _, stderr) = Run("library", "add", _lib, bad);
        Assert.That(code, Is.EqualTo(ExitCodes.BadInput));
        Assert.That(stderr, Does.Contain("bad.safetensors"));

        (code, _, stderr) = Run("library", "remove", _lib, "nothing");
        Assert.That(code, Is.EqualTo(ExitCodes.UsageError));
        Assert.That(stderr, Does.Contain("'nothing'"));

        File.WriteAllText(Path.Combine(_lib, SpmLibrary.IndexFileName), "[1,2");
        (code, _, stderr) = Run("library", "list", _lib);
        Assert.That(code, Is.EqualTo(ExitCodes.BadInput));
        Assert.That(stderr, Does.Contain(SpmLibrary.IndexFileName));
    }

    [Test]
    public void VerifyReportsEachBrokenFileAndExits4()
    {
        Run("library", "init", _lib);
        Run("library", "add", _lib, WriteSpm("circle.safetensors", "circle"), WriteSpm("red.safetensors", "red", 2), WriteSpm("dots.safetensors", "dots", 5));
        File.Delete(Path.Combine(_lib, "circle.safetensors"));
        File.WriteAllText(Path.Combine(_lib, "red.safetensors"), "garbage");
        var (code, stdout, stderr) = Run("library", "verify", _lib);
        Assert.That(code, Is.EqualTo(ExitCodes.BadInput));
        Assert.That(stdout, Is.Empty);
        Assert.That(stderr, Does.Contain("circle.safetensors").And.Contain("missing"));
        Assert.That(stderr, Does.Contain("red.safetensors").And.Contain("SHA-256").And.Contain("does not load"));
        Assert.That(stderr, Does.Not.Contain("dots.safetensors"));
        Assert.That(stderr, Does.Contain("3 problem(s)"));
    }

    [Test]
    public void VerifyWithModel_ChecksEverySpmFitsItsLayers_NamingTheFileAndLayer()
    {
        var builtIn = Path.Combine(TestPaths.RepoRoot, "models", "tiny-shapes");
        Run("library", "init", _lib);
        // The shipped circle file fits the built-in model; the hand-made one names a real layer with the wrong width.
        Run("library", "add", _lib, Path.Combine(builtIn, "spm", "circle.safetensors"));
        var (code, stdout, stderr) = Run("library", "verify", _lib, "--model", builtIn);
        Assert.That(code, Is.EqualTo(ExitCodes.Ok), stderr);
        Assert.That(stdout, Does.Contain($"OK: 1 SPM(s) verified in '{_lib}' and fit '{builtIn}'.").And.Contain("circle: fits; trained on"));

        Run("library", "add", _lib, WriteSpm("narrow.safetensors", "narrow"));
        (code, stdout, stderr) = Run("library", "verify", _lib, "--model", builtIn);
        Assert.That(code, Is.EqualTo(ExitCodes.BadInput));
        Assert.That(stdout, Is.Empty);
        Assert.That(stderr, Does.Contain("narrow.safetensors' (concept 'narrow'): does not fit the model")
            .And.Contain("down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k").And.Contain("1 problem(s)"));
        Assert.That(stderr, Does.Not.Contain("circle"));

        // Another model family's layers: every file is named.
        (code, _, stderr) = Run("library", "verify", _lib, "--model", TestPaths.TinySd1);
        Assert.That(code, Is.EqualTo(ExitCodes.BadInput));
        Assert.That(stderr, Does.Contain("circle.safetensors' (concept 'circle'): does not fit").And.Contain("2 problem(s)"));
    }
}
