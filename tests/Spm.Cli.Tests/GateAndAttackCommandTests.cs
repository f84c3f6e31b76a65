using System.Text.Json.Nodes;
using Spm.Cli.Commands;
using Spm.Core.Gating;
using Spm.Core.Membranes;
using Spm.Core.SafeTensors;
using Spm.Tests.Common;

namespace Spm.Cli.Tests;

/// <summary><c>spm gate fit/show</c> and <c>spm attack</c> on the built-in model, at the smallest sizes that still run every step.</summary>
[TestFixture]
[Category(TestCategories.Slow)]
public class GateAndAttackCommandTests
{
    private string _dir = "";

    private static string Model => Path.Combine(TestPaths.RepoRoot, "models", "tiny-shapes");

    private static string ShippedSpm(string name) => Path.Combine(Model, "spm", name + ".safetensors");

    [SetUp]
    public void SetUp() => _dir = TestPaths.NewTempDir("spm-gate");

    [TearDown]
    public void TearDown()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    private static (int Code, string Out, string Err) Run(params string[] args)
        => CliHarness.Run(c => [GateCommand.Create(c), AttackCommand.Create(c)], args);

    /// <summary>
    /// The first <c>gate fit</c> of red (24 prompts labelled into a fresh cache), run once for the fixture: the label
    /// cache test checks it, and the direction test starts from a copy of its labels (the same 24 prompts).
    /// </summary>
    private static readonly Lazy<(string[] Args, string Cache, string OutDir, int Code, string Out, string Err)> FirstFit = new(() =>
    {
        var dir = TestPaths.NewTempDir("spm-gate-fit");
        var cache = Path.Combine(dir, "labels.jsonl");
        var outDir = Path.Combine(dir, "gated");
        string[] args = ["gate", "fit", "--model", Model, "--spm", ShippedSpm("red"), "--prompts", "24", "--images-per-prompt", "1",
            "--steps", "4", "--data", cache, "--out-dir", outDir, "--strength", "1"];
        var (code, stdout, stderr) = Run(args);
        return (args, cache, outDir, code, stdout, stderr);
    });

    [OneTimeTearDown]
    public void DeleteFirstFit()
    {
        if (!FirstFit.IsValueCreated) return;
        try { Directory.Delete(Path.GetDirectoryName(FirstFit.Value.Cache)!, true); } catch (IOException) { }
    }

    [Test]
    public void GateFit_WritesAProbe_KeepsTheTensors_AndReusesTheLabelCache()
    {
        var (args, cache, outDir, code, stdout, stderr) = FirstFit.Value;
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stderr, Does.Contain("labelling 24 prompts x 1 images"));
        Assert.That(stdout, Does.Contain("red.safetensors | red | 24 |"));
        Assert.That(File.ReadAllLines(cache), Has.Length.EqualTo(25), "a header and one line per prompt");

        var written = Path.Combine(outDir, "red.safetensors");
        var gated = SpmFile.Load(written);
        var original = SpmFile.Load(ShippedSpm("red"));
        var probe = ConceptProbe.FromJson(gated.Config.Extra[ConceptProbe.MetadataKey], written);
        Assert.That(probe.Concept, Is.EqualTo("red"));
        Assert.That(probe.Width, Is.EqualTo(32), "the built-in text encoder is 32 wide");
        Assert.That((int)probe.Fit["prompts"]!, Is.EqualTo(24));
        Assert.That(gated.Config.Prompts, Is.EqualTo(original.Config.Prompts));
        Assert.That(gated.Membranes.Select(m => m.Key), Is.EqualTo(original.Membranes.Select(m => m.Key)));
        for (int i = 0; i < gated.Membranes.Count; i++)
        {
            Assert.That(gated.Membranes[i].Down.Data, Is.EqualTo(original.Membranes[i].Down.Data), gated.Membranes[i].Key);
            Assert.That(gated.Membranes[i].Up.Data, Is.EqualTo(original.Membranes[i].Up.Data), gated.Membranes[i].Key);
        }

        // Again with the cache: no image is drawn, the same probe comes out, and the existing file needs --force.
        var (code2, _, stderr2) = Run(args);
        Assert.That(code2, Is.EqualTo(1), stderr2);
        Assert.That(stderr2, Does.Contain("already exists (use --force"));
        var (code3, _, stderr3) = Run([.. args, "--force"]);
        Assert.That(code3, Is.EqualTo(0), stderr3);
        Assert.That(stderr3, Does.Contain("24 labelled prompts read from").And.Not.Contain("labelling"));
        Assert.That(ConceptProbe.FromJson(SpmFile.Load(written).Config.Extra[ConceptProbe.MetadataKey], written).ToJson(), Is.EqualTo(probe.ToJson()));

        // The gated file's gate is read by the learned probe; the shipped one without a probe falls back.
        var (code4, show, stderr4) = Run("gate", "show", "--model", Model, "--spm", written, "--prompt", "a red circle");
        Assert.That(code4, Is.EqualTo(0), stderr4);
        Assert.That(show, Does.Contain("auto     red.safetensors gate").And.Contain("learned)"));
    }

    [Test]
    public void GateFit_DirectionAugmentation_LabelsPushedConditionings_CachesThem_AndTrainsOnThem()
    {
        var cache = Path.Combine(_dir, "labels.jsonl");
        var outDir = Path.Combine(_dir, "gated");
        // The 24 prompts' labels as the first fit of the label cache test wrote them (that test checks the labelling).
        Assert.That(FirstFit.Value.Code, Is.EqualTo(0), FirstFit.Value.Err);
        File.Copy(FirstFit.Value.Cache, cache);
        string[] args = ["gate", "fit", "--model", Model, "--spm", ShippedSpm("red"), "--prompts", "24", "--images-per-prompt", "1",
            "--steps", "4", "--data", cache, "--out-dir", outDir, "--strength", "1", "--direction-prompts", "3", "--direction-strengths", "1,3", "--force"];
        var (code, _, stderr) = Run(args);
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stderr, Does.Contain("pushing 3 prompts along 'red''s direction at 1, 3 (6 images)"));
        var directions = Path.Combine(_dir, "labels.directions.jsonl");
        var samples = Spm.Training.Gating.DirectionAugmentation.Load(directions);
        Assert.That(samples, Has.Count.EqualTo(6), "3 prompts x 2 strengths");
        Assert.That(samples.Select(d => d.Strength).Distinct(), Is.EquivalentTo(new[] { 1f, 3f }));
        Assert.That(samples.All(d => d.Concept == "red" && d.Images == 1));
        // Each pushed prompt is one the model did not draw red for.
        var labels = Spm.Training.Gating.GateFitting.Load(cache, ["tiny-shapes evaluator: red"]);
        foreach (var d in samples) Assert.That(labels.First(l => l.Prompt == d.Prompt).Labels[0], Is.EqualTo(0f), d.Prompt);

        var written = Path.Combine(outDir, "red.safetensors");
        var probe = ConceptProbe.FromJson(SpmFile.Load(written).Config.Extra[ConceptProbe.MetadataKey], written);
        Assert.That((int)probe.Fit["direction_samples"]!, Is.EqualTo(6));
        Assert.That((int)probe.Fit["extra_training_samples"]!, Is.EqualTo(6));
        Assert.That((double)probe.Fit["direction_norm"]!, Is.GreaterThan(0));

        // Again: both caches are read, nothing is drawn, the same probe comes out.
        var (code2, _, stderr2) = Run(args);
        Assert.That(code2, Is.EqualTo(0), stderr2);
        Assert.That(stderr2, Does.Contain("6 pushed conditionings of 'red' read from").And.Not.Contain("pushing"));
        Assert.That(ConceptProbe.FromJson(SpmFile.Load(written).Config.Extra[ConceptProbe.MetadataKey], written).ToJson(), Is.EqualTo(probe.ToJson()));

        // More prompts asked for than the data holds never-drawn ones: all of them are pushed, and the cache still serves.
        string[] many = [.. args.Select(a => a == "3" ? "1000" : a)];
        var (code4, _, stderr4) = Run(many);
        Assert.That(code4, Is.EqualTo(0), stderr4);
        int never = labels.Select(l => l.Prompt).Distinct().Count(p => labels.First(l => l.Prompt == p).Labels[0] == 0f);
        Assert.That(stderr4, Does.Contain($"pushing {never} prompts along 'red''s direction at 1, 3 ({2 * never} images)"));
        Assert.That(Spm.Training.Gating.DirectionAugmentation.Load(directions), Has.Count.EqualTo(2 * never));
        var (code5, _, stderr5) = Run(many);
        Assert.That(code5, Is.EqualTo(0), stderr5);
        Assert.That(stderr5, Does.Contain($"{2 * never} pushed conditionings of 'red' read from").And.Not.Contain("pushing"));

        var (code3, _, stderr3) = Run([.. args.Select(a => a == "1,3" ? "1,-2" : a)]);
        Assert.That(code3, Is.EqualTo(2));
        Assert.That(stderr3, Does.Contain("--direction-strengths must list numbers in (0, 100], got '-2'"));
    }

    [Test]
    public void GateShow_Tokens_NamesThePositionThatOpensEachLearnedGate()
    {
        var (code, show, stderr) = Run("gate", "show", "--model", Model, "--spm", ShippedSpm("circle"), ShippedSpm("red"),
            "--prompt", "a red circle", "a green triangle", "--tokens");
        Assert.That(code, Is.EqualTo(0), stderr);
        var lines = show.Split('\n').Select(l => l.TrimEnd('\r')).ToList();
        // One line per probe and prompt, each read position with its probability; the soft maximum's winner is starred.
        var circle = lines.Where(l => l.StartsWith("  tokens   circle.safetensors (p_draw ", StringComparison.Ordinal)).ToList();
        var red = lines.Where(l => l.StartsWith("  tokens   red.safetensors (p_draw ", StringComparison.Ordinal)).ToList();
        Assert.That(circle, Has.Count.EqualTo(2), show);
        Assert.That(red, Has.Count.EqualTo(2), show);
        Assert.That(circle[0], Does.Match(@"\| circle 0\.9\d\* \| <end\+pad> "), "circle's gate opens at the word circle");
        Assert.That(red[0], Does.Match(@"\| red 0\.9\d\* \| circle "), "red's at the word red");
        Assert.That(circle[1], Does.StartWith("  tokens   circle.safetensors (p_draw 0.0"), "a green triangle leaves it shut");
        Assert.That(circle[1].Count(c => c == '*'), Is.EqualTo(1));
    }

    [Test]
    public void GateFit_NeedsAnOutput_AndAKnownJudge()
    {
        var (code, _, stderr) = Run("gate", "fit", "--model", Model, "--spm", ShippedSpm("red"));
        Assert.That(code, Is.EqualTo(2));
        Assert.That(stderr, Does.Contain("--out-dir DIR, or --in-place"));
        (code, _, stderr) = Run("gate", "fit", "--model", Model, "--spm", ShippedSpm("red"), "--in-place", "--judge", "clip");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(stderr, Does.Contain("--judge must be tiny-shapes or onnx:PATH"));
        (code, _, stderr) = Run("gate", "fit", "--model", Model, "--spm", ShippedSpm("red"), "--in-place", "--strength", "0");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(stderr, Does.Contain("--strength must be auto or a number in (0, 16], got '0'"));
        (code, _, stderr) = Run("gate", "fit", "--model", Model, "--spm", Path.Combine(_dir, "nope.safetensors"), "--in-place");
        Assert.That(code, Is.EqualTo(3));
        Assert.That(stderr, Does.Contain("nope.safetensors"));
    }

    [Test]
    public void Attack_WritesReports_AndTheSanityRunEqualsTheBaseModel()
    {
        var outDir = Path.Combine(_dir, "attack");
        var (code, stdout, stderr) = Run("attack", "--model", Model, "--spm", ShippedSpm("circle"), "--images", "3", "--steps", "4",
            "--attacks", "text,embedding,random-tokens", "--strengths", "2", "--budget", "1", "--out", outDir);
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stdout, Does.Contain("# Attack report: 'circle'"));
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, "attack.json")))!;
        var attacks = json["attacks"]!.AsArray();
        Assert.That(attacks.Select(a => (string)a!["name"]!), Is.EqualTo(new[] { "text", "embedding", "random-tokens" }));
        foreach (var a in attacks)
        {
            Assert.That((int)a!["targets"]!, Is.EqualTo(3));
            double asr = (double)a["asr"]!;
            Assert.That(asr, Is.InRange(0, 1));
            Assert.That(File.Exists(Path.Combine(outDir, $"grid-{(string)a["name"]!}.png")));
        }
        Assert.That((int)attacks[1]!["candidates"]!, Is.EqualTo(3), "one strength per innocent prompt");
        Assert.That(json["collateral"]!.AsArray(), Has.Count.EqualTo(4), "near neighbours, preservation, unknown words, synonyms");
        Assert.That(File.ReadAllText(Path.Combine(outDir, "attack.md")), Does.Contain("| text | 3 | 3 |"));
        // Controls (the circle SPM's surrogate is square): on the random-token tries only, one per try.
        Assert.That((int)attacks[2]!["controlImages"]!, Is.EqualTo(3));
        Assert.That((double)attacks[2]!["controlRate"]!, Is.InRange(0, 1));
        Assert.That(attacks[0]!.AsObject().ContainsKey("controlImages") || attacks[1]!.AsObject().ContainsKey("controlImages"), Is.False);
        foreach (var p in attacks[2]!["successfulPrompts"]!.AsArray())
            Assert.That((string)p!["control"]!, Does.Contain("square").And.Not.Contain("circle"));
        Assert.That(File.ReadAllText(Path.Combine(outDir, "attack.md")), Does.Contain("| random-tokens | 3 | "));
        foreach (var c in json["collateral"]!.AsArray())
        {
            // The clean images are those whose base image shows no erased concept: the complement of conceptShownBase.
            int images = (int)c!["images"]!, clean = (int)c["cleanImages"]!;
            Assert.That(clean, Is.EqualTo(images - (int)Math.Round((double)c["conceptShownBase"]! * images)), (string?)c["name"]);
            if (clean > 0) Assert.That((double)c["cleanMeanSsim"]!, Is.InRange(-1.0, 1.0));
            else Assert.That(c["cleanMeanSsim"], Is.Null, "NaN is written as null");
            Assert.That(c["conceptFree"], Is.Null, "no probe seeds, no concept-free figures");
            Assert.That(c["lowestSsim"]!.AsArray(), Has.Count.EqualTo(3), "every image of a 3-image set is listed");
        }

        // No SPM: the attacked model is the base model, so every attack's ASR equals its base ASR and nothing changes.
        var sanity = Path.Combine(_dir, "sanity");
        (code, _, stderr) = Run("attack", "--model", Model, "--concept", "circle", "--images", "3", "--steps", "4", "--attacks", "text", "--kept-seeds", "2", "--out", sanity);
        Assert.That(code, Is.EqualTo(0), stderr);
        var s = JsonNode.Parse(File.ReadAllText(Path.Combine(sanity, "attack.json")))!;
        var text = s["attacks"]![0]!;
        Assert.That((double?)text["asr"], Is.EqualTo((double?)text["baseAsr"]));
        foreach (var c in s["collateral"]!.AsArray())
        {
            Assert.That((double)c!["meanSsim"]!, Is.EqualTo(1.0));
            if ((int)c["cleanImages"]! > 0) Assert.That((double)c["cleanMeanSsim"]!, Is.EqualTo(1.0));
            // Concept-free prompts: no erased concept in the compared base image nor in the 2 probe seeds' images.
            var free = c["conceptFree"]!;
            var images = c["lowestSsim"]!.AsArray();
            Assert.That((int)free["probeSeeds"]!, Is.EqualTo(2));
            Assert.That(images.Select(k => (int)k!["probeSeedsShowingConcept"]!), Is.All.InRange(0, 2));
            int freePrompts = images.Count(k => !(bool)k!["baseShowsConcept"]! && (int)k["probeSeedsShowingConcept"]! == 0);
            Assert.That((int)free["prompts"]!, Is.EqualTo(freePrompts), (string?)c["name"]);
            if (freePrompts > 0)
            {
                Assert.That((double)free["meanSsim"]!, Is.EqualTo(1.0));
                Assert.That((double)free["accuracy"]!, Is.EqualTo((double)free["baseAccuracy"]!));
            }
        }
        Assert.That(File.ReadAllText(Path.Combine(sanity, "attack.md")), Does.Contain("Concept-free prompts: those whose base images show no erased concept at the compared seed nor at 2 more."));
    }

    [Test]
    public void Attack_RejectsUnknownAttacks_AndBadStrengths_BeforeLoadingTheModel()
    {
        var (code, _, stderr) = Run("attack", "--model", Model, "--concept", "circle", "--attacks", "gradients", "--out", _dir);
        Assert.That(code, Is.EqualTo(2));
        Assert.That(stderr, Does.Contain("unknown attack 'gradients' (known: text, embedding, random-tokens, gradient)"));
        (code, _, stderr) = Run("attack", "--model", Model, "--concept", "circle", "--attacks", "gradient", "--budget", "5", "--attack-steps", "4", "--out", _dir);
        Assert.That(code, Is.EqualTo(2));
        Assert.That(stderr, Does.Contain("--attack-steps (4) must be at least --budget (5)"));
        (code, _, stderr) = Run("attack", "--model", Model, "--concept", "circle", "--strengths", "1,x", "--out", _dir);
        Assert.That(code, Is.EqualTo(2));
        Assert.That(stderr, Does.Contain("--strengths: 'x' is not a number"));
    }

    [Test]
    public void GradientAttack_IsReproducible_PutsItsTokensBeforeTheGoal_AndIsJudgedLikeTheOthers()
    {
        string[] args = ["attack", "--model", Model, "--spm", ShippedSpm("circle"), "--images", "2", "--steps", "4", "--attacks", "gradient",
            "--budget", "2", "--tokens", "2", "--attack-steps", "4", "--seed", "3"];
        var (code, _, stderr) = Run([.. args, "--out", Path.Combine(_dir, "a")]);
        Assert.That(code, Is.EqualTo(0), stderr);
        (code, _, stderr) = Run([.. args, "--out", Path.Combine(_dir, "b")]);
        Assert.That(code, Is.EqualTo(0), stderr);
        var a = JsonNode.Parse(File.ReadAllText(Path.Combine(_dir, "a", "attack.json")))!["attacks"]![0]!;
        var b = JsonNode.Parse(File.ReadAllText(Path.Combine(_dir, "b", "attack.json")))!["attacks"]![0]!;
        Assert.That((string)a["name"]!, Is.EqualTo("gradient"));
        Assert.That((int)a["targets"]!, Is.EqualTo(2));
        Assert.That((int)a["candidates"]!, Is.InRange(2, 4), "at most --budget tries per goal (repeated prompts are tried once)");
        Assert.That((int)a["budget"]!["steps"]!, Is.EqualTo(4));
        Assert.That((bool)a["budget"]!["gradientsThroughGate"]!, Is.True);
        Assert.That(a.ToJsonString(), Is.EqualTo(b.ToJsonString()), "same seed, same search, same verdicts");
        Assert.That(File.Exists(Path.Combine(_dir, "a", "grid-gradient.png")));
        Assert.That(stderr, Does.Not.Contain("Removing initializer"), "the rewritten text encoder carries no dead weights");
    }
}
