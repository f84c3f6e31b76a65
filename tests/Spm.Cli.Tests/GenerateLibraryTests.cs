using System.Text.RegularExpressions;
using Spm.Cli.Commands;
using Spm.Core.SafeTensors;
using Spm.Core.Tensors;
using Spm.Tests.Common;

namespace Spm.Cli.Tests;

/// <summary>
/// <c>spm generate --library</c>: the SPMs routed for the prompt, injected into the library's one session, give the
/// same images as generating with exactly those SPMs loaded by hand (--spm), and an empty route gives the plain model's.
/// </summary>
[TestFixture]
[Category(TestCategories.Slow)]
public class GenerateLibraryTests
{
    private string _dir = "";
    private string _lib = "";
    private static string Model => Path.Combine(TestPaths.RepoRoot, "models", "tiny-shapes");
    private static string Shipped(string name) => Path.Combine(Model, "spm", name + ".safetensors");
    private static readonly string[] Concepts = ["circle", "red", "striped"];

    [OneTimeSetUp]
    public void SetUp()
    {
        _dir = TestPaths.NewTempDir("spm-generate-library");
        _lib = Path.Combine(_dir, "lib");
        Assert.That(CliHarness.Run(c => [LibraryCommand.Create(c)], "library", "init", _lib).Code, Is.EqualTo(0));
        foreach (var c in Concepts)
        {
            var (code, _, err) = CliHarness.Run(c2 => [LibraryCommand.Create(c2)], "library", "add", _lib, Shipped(c), "--concept", c);
            Assert.That(code, Is.EqualTo(0), err);
        }
    }

    [OneTimeTearDown]
    public void TearDown()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    private static (int Code, string Out, string Err) Run(params string[] args) => CliHarness.Run(c => [GenerateCommand.Create(c)], args);

    private static string[] Generate(string prompt, string name, string dir, params string[] extra) =>
        ["generate", "--model", Model, "--prompt", prompt, "--steps", "4", "--seed", "5", "--count", "2", "--batch", "2",
         "--out", Path.Combine(dir, name + ".png"), "--save-latents", Path.Combine(dir, name + ".safetensors"), .. extra];

    private static FloatTensor Latents(string dir, string name)
    {
        using var f = SafeTensorsFile.Open(Path.Combine(dir, name + ".safetensors"));
        return f.ReadFloat("latents");
    }

    // Generations depend only on their arguments (the seed and sizes are fixed), so each distinct one runs once for the
    // fixture and every test that needs it reads the same latents: the routed run of a prompt and route, and the run
    // with exactly some SPMs loaded by hand (none: the plain model).
    private readonly Dictionary<string, (string Out, FloatTensor Latents)> _generated = [];

    private (string Out, FloatTensor Latents) GenerateOnce(string prompt, string[] extra)
    {
        var key = prompt + "\n" + string.Join("\n", extra);
        if (_generated.TryGetValue(key, out var done)) return done;
        var dir = Path.Combine(_dir, "generated-" + _generated.Count);
        Directory.CreateDirectory(dir);
        var (code, stdout, stderr) = Run(Generate(prompt, "g", dir, extra));
        Assert.That(code, Is.EqualTo(0), stderr);
        return _generated[key] = (stdout, Latents(dir, "g"));
    }

    private (string Out, FloatTensor Latents) Routed(string prompt, params string[] routeArgs) => GenerateOnce(prompt, ["--library", _lib, .. routeArgs]);

    /// <summary>The prompt with exactly these shipped SPMs loaded, in this order; none: the plain model.</summary>
    private FloatTensor ByHand(string prompt, IEnumerable<string> concepts) => GenerateOnce(prompt, concepts.SelectMany(c => new[] { "--spm", Shipped(c) }).ToArray()).Latents;

    [TestCase("a red circle on a white background", "")]
    [TestCase("a red circle on a white background", "--route-top-k 1")]
    [TestCase("a blue striped triangle on a black background", "")]
    [TestCase("a green star on a yellow background", "")]
    [TestCase("a green star on a yellow background", "--route-threshold 0.5")]
    public void RoutedGeneration_EqualsTheSelectedSpmsLoadedByHand(string prompt, string route)
    {
        var routeArgs = route.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        string? topK = routeArgs.Length == 2 && routeArgs[0] == "--route-top-k" ? routeArgs[1] : null;
        var (stdout, routed) = Routed(prompt, routeArgs);
        var chosen = Regex.Matches(stdout, @"^gate: (\w+) gate", RegexOptions.Multiline).Select(m => m.Groups[1].Value).ToList();
        Assert.That(stdout, Does.Contain($"route: {chosen.Count} of 3 SPMs"));
        if (topK is not null) Assert.That(chosen, Has.Count.LessThanOrEqualTo(int.Parse(topK)));

        // By hand: exactly the chosen SPMs, in library order, gated the same way (none chosen: the plain model).
        Assert.That(routed.Data, Is.EqualTo(ByHand(prompt, Concepts.Where(chosen.Contains)).Data), $"routed {string.Join(",", chosen)}: the same latents, image for image");
        if (chosen.Count > 0)
            Assert.That(routed.Data, Is.Not.EqualTo(ByHand(prompt, []).Data), "the routed SPMs change the images");
        if (route.Contains("threshold")) Assert.That(chosen, Is.Empty, "this prompt's weak striped gate stays below 0.5: the empty route is the plain model");
        TestContext.Out.WriteLine($"{prompt} ({route}): routed {string.Join(", ", chosen)}");
    }

    [Test]
    public void ExactMerge_GivesTheSameImagesAsTheSeparateFiles_AndTheRoutedLibrary_EachConceptGatedOnItsOwn()
    {
        var dir = TestPaths.NewTempDir("spm-merged");
        try
        {
            var merged = Path.Combine(dir, "lib-merged.safetensors");
            var (code, stdout, stderr) = CliHarness.Run(c => [LibraryCommand.Create(c)], "library", "merge", _lib, "--out", merged);
            Assert.That(code, Is.EqualTo(0), stderr);
            Assert.That(stdout, Does.Contain("Merged 3 SPM(s) (exact, rank 3"));
            const string prompt = "a red circle on a white background";
            (code, stdout, stderr) = Run(Generate(prompt, "merged", dir, "--spm", merged));
            Assert.That(code, Is.EqualTo(0), stderr);
            foreach (var c in Concepts) Assert.That(stdout, Does.Contain($"gate: lib-merged.safetensors#{c} gate"), "one gate per concept inside the merged file");
            Assert.That(Latents(dir, "merged").Data, Is.EqualTo(ByHand(prompt, Concepts).Data), "merged exactly = the three files side by side");
            Assert.That(Latents(dir, "merged").Data, Is.EqualTo(Routed(prompt).Latents.Data), "= the routed library (all three open for this prompt)");

            // A fixed multiplier on the merged file applies to each of its concepts.
            (code, stdout, stderr) = Run(Generate(prompt, "fixed", dir, "--spm", merged + ":0.5"));
            Assert.That(code, Is.EqualTo(0), stderr);
            Assert.That(stdout, Does.Contain("gate: lib-merged.safetensors#red x0.5 (fixed)"));

            // Compressed to rank 2 (of 3): every layer reports its error; the file loads like any SPM.
            var svd = Path.Combine(dir, "lib-svd.safetensors");
            (code, stdout, stderr) = CliHarness.Run(c => [LibraryCommand.Create(c)], "library", "merge", _lib, "--out", svd, "--rank-budget", "2");
            Assert.That(code, Is.EqualTo(0), stderr);
            Assert.That(stdout, Does.Contain("relative Frobenius error").And.Contain("(svd, rank 2"));
            (code, stdout, stderr) = Run(Generate(prompt, "svd", dir, "--spm", svd));
            Assert.That(code, Is.EqualTo(0), stderr);
            Assert.That(stdout, Does.Contain("gate: lib-svd.safetensors gate"), "gated as one SPM over all the concepts");
            (code, _, stderr) = CliHarness.Run(c => [LibraryCommand.Create(c)], "library", "merge", _lib, "--out", svd);
            Assert.That(code, Is.Not.EqualTo(0));
            Assert.That(stderr, Does.Contain("already exists"));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Test]
    public void BakeLibrary_EqualsBakingItsFiles()
    {
        var dir = TestPaths.NewTempDir("spm-bake-library");
        try
        {
            var unet = Path.Combine(Model, "unet", "model.onnx");
            var (code, _, stderr) = CliHarness.Run(c => [BakeCommand.Create(c)], "bake", "--model", unet, "--library", _lib, "--out", Path.Combine(dir, "lib.onnx"));
            Assert.That(code, Is.EqualTo(0), stderr);
            (code, _, stderr) = CliHarness.Run(c => [BakeCommand.Create(c)], ["bake", "--model", unet, .. Concepts.SelectMany(c => new[] { "--spm", Shipped(c) }), "--out", Path.Combine(dir, "files.onnx")]);
            Assert.That(code, Is.EqualTo(0), stderr);
            Assert.That(File.ReadAllBytes(Path.Combine(dir, "lib.onnx")), Is.EqualTo(File.ReadAllBytes(Path.Combine(dir, "files.onnx"))));
            (code, _, stderr) = CliHarness.Run(c => [BakeCommand.Create(c)], "bake", "--model", unet, "--out", Path.Combine(dir, "none.onnx"));
            Assert.That(code, Is.Not.EqualTo(0));
            Assert.That(stderr, Does.Contain("--spm FILE (repeatable) and/or --library DIR"));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Test]
    public void LibraryAndSpmTogether_AreRefused()
    {
        var (code, _, stderr) = Run(Generate("a red circle", "x", _dir, "--library", _lib, "--spm", Shipped("red")));
        Assert.That(code, Is.Not.EqualTo(0));
        Assert.That(stderr, Does.Contain("--library and --spm do not go together"));
        (code, _, stderr) = Run(Generate("a red circle", "x", _dir, "--route-top-k", "2"));
        Assert.That(code, Is.Not.EqualTo(0));
        Assert.That(stderr, Does.Contain("route the SPMs of a --library"));
    }
}
