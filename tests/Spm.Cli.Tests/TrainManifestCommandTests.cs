using Spm.Cli.Commands;
using Spm.Tests.Common;

namespace Spm.Cli.Tests;

/// <summary><c>spm train --manifest</c> and <c>--library</c>: what is refused before any model work, by exit code and message.</summary>
[TestFixture]
public class TrainManifestCommandTests
{
    private string _dir = null!;
    private string _manifest = null!;

    private static string Model => Path.Combine(TestPaths.RepoRoot, "models", "tiny-shapes");

    [SetUp]
    public void SetUp()
    {
        _dir = TestPaths.NewTempDir("spm-manifest-cli");
        _manifest = Path.Combine(_dir, "concepts.yaml");
        File.WriteAllText(_manifest, "concepts:\n  - concept: circle\n  - concept: red\n");
    }

    [TearDown] public void TearDown() => Directory.Delete(_dir, true);

    private static (int Code, string Out, string Err) Run(params string[] args) => CliHarness.Run(c => [TrainCommand.Create(c)], args);

    [Test]
    public void PerConceptOptionsBesideAManifestAreUsageErrors()
    {
        var (code, _, err) = Run("train", "--model", Model, "--manifest", _manifest, "--out-dir", _dir, "--concept", "x", "--iterations", "5");
        Assert.That(code, Is.EqualTo(2), err);
        Assert.That(err, Does.Contain("leave out --concept, --iterations"));
    }

    [Test]
    public void ManifestNeedsOutDir_OutDirAndShardNeedAManifest_OutIsNeededWithoutOne()
    {
        void Refused(string expected, params string[] args)
        {
            var (code, _, err) = Run(["train", "--model", Model, .. args]);
            Assert.That(code, Is.EqualTo(2), err);
            Assert.That(err, Does.Contain(expected));
        }
        Refused("--manifest needs --out-dir", "--manifest", _manifest);
        Refused("go with --manifest", "--concept", "x", "--out-dir", _dir);
        Refused("go with --manifest", "--concept", "x", "--shard", "0/2", "--out", "x.safetensors");
        Refused("the SPM file to write with --out", "--concept", "x");
    }

    [Test]
    public void BadShardsAndManifestsStopBeforeTraining()
    {
        var (code, _, err) = Run("train", "--model", Model, "--manifest", _manifest, "--out-dir", _dir, "--shard", "2/2");
        Assert.That(code, Is.EqualTo(2), err);
        Assert.That(err, Does.Contain("numbered 0 to 1"));

        File.WriteAllText(_manifest, "concepts:\n  - concept: circle\n    lr: quick\n");
        (code, _, err) = Run("train", "--model", Model, "--manifest", _manifest, "--out-dir", _dir);
        Assert.That(code, Is.EqualTo(4), err);
        Assert.That(err, Does.Contain("concepts.yaml").And.Contain("concepts[0].lr (line 3)").And.Contain("'quick' is not a number"));

        (code, _, err) = Run("train", "--model", Model, "--manifest", Path.Combine(_dir, "missing.yaml"), "--out-dir", _dir);
        Assert.That(code, Is.EqualTo(3), err);
        Assert.That(Directory.GetFiles(_dir, "*.safetensors"), Is.Empty);
    }

    [Test]
    public void AShardWithoutConceptsSaysSoAndSucceeds()
    {
        var (code, stdout, err) = Run("train", "--model", Model, "--manifest", _manifest, "--out-dir", _dir, "--shard", "2/3");
        Assert.That(code, Is.EqualTo(0), err);
        Assert.That(stdout, Does.Contain("shard 2/3: no concepts (the manifest has 2)."));
    }

    [Test]
    public void GrowingNeedsAVerifiedNonEmptyLibrary()
    {
        var lib = Path.Combine(_dir, "lib");
        var (code, _, err) = Run("train", "--model", Model, "--concept", "star", "--library", lib, "--out", Path.Combine(_dir, "s.safetensors"));
        Assert.That(code, Is.EqualTo(3), err);
        Spm.Core.Library.SpmLibrary.Init(lib);
        (code, _, err) = Run("train", "--model", Model, "--concept", "star", "--library", lib, "--out", Path.Combine(_dir, "s.safetensors"));
        Assert.That(code, Is.EqualTo(2), err);
        Assert.That(err, Does.Contain("is empty"));

        var library = Spm.Core.Library.SpmLibrary.Open(lib);
        library.Add(Path.Combine(Model, "spm", "circle.safetensors"));
        File.AppendAllText(Path.Combine(lib, "circle.safetensors"), "x"); // the copy no longer matches its hash
        (code, _, err) = Run("train", "--model", Model, "--concept", "star", "--library", lib, "--out", Path.Combine(_dir, "s.safetensors"));
        Assert.That(code, Is.EqualTo(4), err);
        Assert.That(err, Does.Contain("does not verify").And.Contain("circle.safetensors"));
        Assert.That(File.Exists(Path.Combine(_dir, "s.safetensors")), Is.False);
    }
}
