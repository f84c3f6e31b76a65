using Spm.Tests.Common;

namespace Spm.Cli.Tests;

/// <summary>
/// Issue 23, across machines: the built <c>spm</c> tool trains one manifest as three shard processes writing into one
/// folder (standing in for shared storage), one started as <c>--shard 0/3</c>, one as a Kubernetes Indexed Job pod
/// (<c>JOB_COMPLETION_INDEX</c>) and one as a Slurm array task (<c>SLURM_ARRAY_TASK_ID</c> with <c>--array=1-3</c>);
/// <c>spm library add</c> gathers them. The gathered library must equal the single-machine run of the same manifest
/// byte for byte: every SPM file and the index.
/// </summary>
[TestFixture]
[NonParallelizable] // five training processes; beside other tests they only make everything slower
public class ScaleOutTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(15);

    private static string Model => Path.Combine(TestPaths.RepoRoot, "models", "tiny-shapes");

    // Four concepts so that the shards differ in size (shard 0 gets concepts 0 and 3); tiny iteration counts, one thread.
    private const string Manifest = """
        # scale-out test manifest
        defaults:
          iterations: 2
          warmup: 1
          checkpoint_every: 1
        concepts:
          - concept: circle
            surrogate: square
            seed: 1
          - concept: red
            surrogate: blue
            seed: 2
          - concept: a striped shape
            surrogate: a plain shape
            file: striped
            seed: 3
          - concept: triangle
            surrogate: star
            seed: 4
        """;

    // The test runner's own environment must not pick a shard for the runs that do not ask for one.
    private static readonly Dictionary<string, string?> NoShardVariables = new()
    {
        ["JOB_COMPLETION_INDEX"] = null, ["SLURM_ARRAY_TASK_ID"] = null, ["SLURM_ARRAY_TASK_MIN"] = null,
    };

    private static string[] Train(string manifest, string outDir, string shard) =>
        ["train", "--model", Model, "--manifest", manifest, "--shard", shard, "--out-dir", outDir, "--threads", "1"];

    [Test]
    [Category(TestCategories.Slow)]
    public void ThreeShardProcessesGatherIntoTheSameLibraryAsOneMachine()
    {
        var dir = TestPaths.NewTempDir("spm-scaleout");
        var manifest = Path.Combine(dir, "concepts.yaml");
        File.WriteAllText(manifest, Manifest);
        var single = Path.Combine(dir, "single");
        var shared = Path.Combine(dir, "shared");

        var shards = new[]
        {
            SpmProcess.Start(Train(manifest, shared, "0/3"), NoShardVariables),
            SpmProcess.Start(Train(manifest, shared, "auto/3"), new Dictionary<string, string?>(NoShardVariables) { ["JOB_COMPLETION_INDEX"] = "1" }),
            SpmProcess.Start(Train(manifest, shared, "auto/3"),
                new Dictionary<string, string?>(NoShardVariables) { ["SLURM_ARRAY_TASK_ID"] = "3", ["SLURM_ARRAY_TASK_MIN"] = "1" }),
        };
        foreach (var s in shards) Assert.That(s.WaitForExit(Timeout), Is.EqualTo(0), s.Output);
        // Each shard trained exactly its concepts (i mod 3).
        Assert.That(shards[0].Output, Does.Contain("trained  circle").And.Contain("trained  triangle").And.Not.Contain("trained  red"));
        Assert.That(shards[1].Output, Does.Contain("trained  red").And.Not.Contain("trained  circle").And.Not.Contain("trained  triangle"));
        Assert.That(shards[2].Output, Does.Contain("trained  a striped shape").And.Not.Contain("trained  red"));

        var one = SpmProcess.Start(Train(manifest, single, "0/1"), NoShardVariables);
        Assert.That(one.WaitForExit(Timeout), Is.EqualTo(0), one.Output);

        string[] names = ["circle.safetensors", "red.safetensors", "striped.safetensors", "triangle.safetensors"];
        Assert.That(Directory.GetFiles(shared, "*.safetensors").Select(Path.GetFileName).Order(), Is.EqualTo(names));
        Assert.That(Directory.GetFiles(shared, "*.checkpoint.safetensors"), Is.Empty, "finished runs leave no checkpoint");

        // The gather step, as docs/scale-out.md gives it (a shell's glob is sorted by name).
        var libShared = Gather(Path.Combine(dir, "lib-shared"), shared, names);
        var libSingle = Gather(Path.Combine(dir, "lib-single"), single, names);
        Assert.That(File.ReadAllBytes(Path.Combine(libShared, "library.json")), Is.EqualTo(File.ReadAllBytes(Path.Combine(libSingle, "library.json"))), "library.json");
        foreach (var name in names)
        {
            Assert.That(File.ReadAllBytes(Path.Combine(libShared, name)), Is.EqualTo(File.ReadAllBytes(Path.Combine(libSingle, name))), name);
            Assert.That(File.ReadAllBytes(Path.Combine(shared, name)), Is.EqualTo(File.ReadAllBytes(Path.Combine(single, name))), name + " (shard output)");
        }
        Assert.That(File.ReadAllText(Path.Combine(libShared, "library.json")), Does.Contain("\"concept\": \"a striped shape\""));
        Assert.That(Directory.GetFiles(libShared).Select(Path.GetFileName).Where(n => n!.EndsWith(".safetensors", StringComparison.Ordinal)).Order(), Is.EqualTo(names));

        // A rerun of a finished shard trains nothing and changes nothing.
        var before = File.ReadAllBytes(Path.Combine(shared, "circle.safetensors"));
        var again = SpmProcess.Start(Train(manifest, shared, "0/3"), NoShardVariables);
        Assert.That(again.WaitForExit(Timeout), Is.EqualTo(0), again.Output);
        Assert.That(again.Output, Does.Contain("skipped  circle").And.Contain("skipped  triangle").And.Not.Contain("trained "));
        Assert.That(File.ReadAllBytes(Path.Combine(shared, "circle.safetensors")), Is.EqualTo(before));
    }

    private static string Gather(string library, string from, IEnumerable<string> names)
    {
        var init = SpmProcess.Start(["library", "init", library]);
        Assert.That(init.WaitForExit(Timeout), Is.EqualTo(0), init.Output);
        var add = SpmProcess.Start(["library", "add", library, .. names.Select(n => Path.Combine(from, n))]);
        Assert.That(add.WaitForExit(Timeout), Is.EqualTo(0), add.Output);
        return library;
    }
}
