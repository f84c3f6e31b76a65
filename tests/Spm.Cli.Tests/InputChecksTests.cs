using Spm.Cli.Commands;
using Spm.Core;
using Spm.Diffusion.Pipelines;
using Spm.Tests.Common;

namespace Spm.Cli.Tests;

/// <summary>
/// Every command-line input is checked before any model runs, with a message in the user's words and the exit code of
/// the one convention (<see cref="ExitCodes"/>): 2 usage error, 3 missing input, 4 bad input file.
/// </summary>
[TestFixture]
[NonParallelizable] // sets the working directory and $SPM_MODEL
public class InputChecksTests
{
    private static readonly string Shapes = Path.Combine(TestPaths.RepoRoot, DefaultModel.RelativePath);
    private static readonly string Circle = Path.Combine(Shapes, "spm", "circle.safetensors");
    private const string ShapesFactor = "(model 'tiny-shapes' needs multiples of 16: the VAE scales by 4 and the UNet halves the latent 2 time(s))";
    private string _dir = "";

    [SetUp]
    public void SetUp() => _dir = TestPaths.NewTempDir("spm-inputs");

    [TearDown]
    public void TearDown()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    private static (int Code, string Out, string Err) Spm(params string[] args) => CliHarness.RunRoot(CliGlobals.CreateRoot, args);

    private string[] Generate(params string[] extra) =>
        ["generate", "--model", Shapes, "--prompt", "a red circle on a white background", "--out", Path.Combine(_dir, "x.png"),
            .. extra.Contains("--steps") ? [] : new[] { "--steps", "1" }, .. extra.Contains("--seed") ? [] : new[] { "--seed", "3" }, .. extra];

    private static void AssertUsageError((int Code, string Out, string Err) r, string message)
    {
        Assert.That(r.Code, Is.EqualTo(ExitCodes.UsageError), r.Err);
        Assert.That(r.Err, Is.EqualTo($"spm: error: {message}\n"));
        Assert.That(r.Out, Is.Empty);
    }

    [TestCase("--width", "72", "try 64 or 80")]
    [TestCase("--height", "100", "try 96 or 112")]
    [TestCase("--width", "60", "try 48 or 64")]
    public void Generate_SizeNotAMultipleOfTheModelsFactor_IsAUsageErrorNamingTheFactor(string option, string value, string suggestion)
    {
        var r = Spm(Generate(option, value));
        AssertUsageError(r, $"{option} must be a multiple of 16, got {value} {ShapesFactor}; {suggestion}.");
        Assert.That(File.Exists(Path.Combine(_dir, "x.png")), Is.False);
    }

    [Test]
    public void EvalBenchAndTrain_CheckTheirSizesAgainstTheModelToo()
    {
        AssertUsageError(Spm("eval", "--model", Shapes, "--spm", Circle, "--concepts", "circle", "--size", "72"),
            $"--size must be a multiple of 16, got 72 {ShapesFactor}; try 64 or 80.");
        AssertUsageError(Spm("bench", "pipeline", "--model", Shapes, "--size", "40"),
            $"--size must be a multiple of 16, got 40 {ShapesFactor}; try 32 or 48.");
        AssertUsageError(Spm("train", "--model", Shapes, "--concept", "circle", "--resolution", "72", "--out", Path.Combine(_dir, "t.safetensors")),
            $"--resolution must be a multiple of 16, got 72 {ShapesFactor}; try 64 or 80.");
    }

    [Test]
    public void NegativeSeed_SaysWhatASeedIs()
    {
        var r = Spm(Generate("--seed", "-1"));
        AssertUsageError(r, "--seed must be a whole number from 0 to 18446744073709551615 (got '-1'). See 'spm generate --help'.");
    }

    [TestCase("--steps", "abc", "--steps must be a whole number from 1 to 1000 (got 'abc').")]
    [TestCase("--steps", "0", "--steps must be a whole number from 1 to 1000 (got '0').")]
    [TestCase("--steps", "2.5", "--steps must be a whole number from 1 to 1000 (got '2.5').")]
    [TestCase("--guidance", "-1", "--guidance must be a number of at least 0 (got '-1').")]
    [TestCase("--guidance", "NaN", "--guidance must be a number of at least 0 (got 'NaN').")]
    [TestCase("--count", "0", "--count must be a whole number from 1 to 10000 (got '0').")]
    [TestCase("--width", "wide", "--width must be a whole number from 1 to 8192 (got 'wide').")]
    [TestCase("--threads", "-2", "--threads must be a whole number of at least 0 (got '-2').")]
    public void BadNumbers_AreUsageErrorsInTheUsersWords(string option, string value, string message)
        => AssertUsageError(Spm(Generate(option, value)), message + " See 'spm generate --help'.");

    [Test]
    public void BadNumbers_InOtherVerbs_ReadTheSame()
    {
        AssertUsageError(Spm("eval", "--model", Shapes, "--spm", Circle, "--images", "0"),
            "--images must be a whole number from 1 to 100000 (got '0'). See 'spm eval --help'.");
        AssertUsageError(Spm("bench", "pipeline", "--runs", "many"),
            "--runs must be a whole number of at least 1 (got 'many'). See 'spm bench pipeline --help'.");
    }

    [Test]
    public void SpmWithABadMultiplier_IsAUsageErrorShowingTheSyntax()
    {
        var r = Spm(Generate("--spm", Circle + ":abc"));
        AssertUsageError(r, $"--spm '{Circle}:abc': the multiplier after ':' must be a number (got 'abc'); write FILE or FILE:MULTIPLIER, e.g. circle.safetensors:0.8.");
        r = Spm("eval", "--model", Shapes, "--spm", Circle + ":0.5", "--concepts", "circle");
        AssertUsageError(r, $"--spm '{Circle}:0.5': this verb takes FILE without a multiplier.");
    }

    [Test]
    public void MissingSpm_AndMissingModel_AreTheSameKindOfMistake_Exit3()
    {
        var spm = Spm(Generate("--spm", Path.Combine(_dir, "nosuch.safetensors")));
        Assert.That(spm.Code, Is.EqualTo(ExitCodes.MissingInput), spm.Err);
        Assert.That(spm.Err, Is.EqualTo($"spm: error: --spm file '{Path.Combine(_dir, "nosuch.safetensors")}' not found.\n"));

        var model = Spm("generate", "--model", "/no/such/model", "--prompt", "x", "--spm", Circle);
        Assert.That(model.Code, Is.EqualTo(ExitCodes.MissingInput), model.Err);
        Assert.That(model.Err, Is.EqualTo("spm: error: model folder '/no/such/model' not found.\n"));

        var bare = Spm(Generate("--spm", "triangle"));
        Assert.That(bare.Code, Is.EqualTo(ExitCodes.MissingInput), bare.Err);
        Assert.That(bare.Err, Is.EqualTo("spm: error: --spm file 'triangle' not found: not in the current folder nor in the model's spm/ folder (which has: circle, circle-noanchor, red, striped).\n"));

        var evalMissing = Spm("eval", "--model", Shapes, "--spm", Path.Combine(_dir, "missing.safetensors"), "--concepts", "circle");
        Assert.That(evalMissing.Code, Is.EqualTo(ExitCodes.MissingInput), evalMissing.Err);
        Assert.That(evalMissing.Err, Does.Contain("missing.safetensors' not found."));
    }

    [Test]
    public void ModelFromAMissingSpmModelVariable_IsAMissingInput()
    {
        var old = Environment.GetEnvironmentVariable(DefaultModel.EnvironmentVariable);
        try
        {
            Environment.SetEnvironmentVariable(DefaultModel.EnvironmentVariable, "/no/such/env-model");
            var r = Spm("generate", "--prompt", "x");
            Assert.That(r.Code, Is.EqualTo(ExitCodes.MissingInput), r.Err);
            Assert.That(r.Err, Is.EqualTo("spm: error: model folder ($SPM_MODEL) '/no/such/env-model' not found.\n"));
        }
        finally
        {
            Environment.SetEnvironmentVariable(DefaultModel.EnvironmentVariable, old);
        }
    }

    [Test]
    public void DefaultModel_IsSpmModel_ThenTheWorkingFolders_ThenTheOneBesideTheProgram()
    {
        var old = Environment.GetEnvironmentVariable(DefaultModel.EnvironmentVariable);
        var cwd = Directory.GetCurrentDirectory();
        try
        {
            Environment.SetEnvironmentVariable(DefaultModel.EnvironmentVariable, null);
            // Outside any checkout: the copy beside (or above) the running program; for these tests, the repository's.
            Directory.SetCurrentDirectory(_dir);
            Assert.That(DefaultModel.Resolve(null), Is.EqualTo(Shapes));
            // ./models/tiny-shapes in the working folder comes first.
            var local = Path.Combine(_dir, DefaultModel.RelativePath);
            Directory.CreateDirectory(local);
            File.Copy(Path.Combine(Shapes, "model_index.json"), Path.Combine(local, "model_index.json"));
            Assert.That(DefaultModel.Resolve(null), Is.EqualTo(Path.Combine(Directory.GetCurrentDirectory(), DefaultModel.RelativePath)));
            // $SPM_MODEL before both, and --model before everything.
            Environment.SetEnvironmentVariable(DefaultModel.EnvironmentVariable, TestPaths.TinySd1);
            Assert.That(DefaultModel.Resolve(null), Is.EqualTo(TestPaths.TinySd1));
            Assert.That(DefaultModel.Resolve(Shapes), Is.EqualTo(Shapes));
        }
        finally
        {
            Directory.SetCurrentDirectory(cwd);
            Environment.SetEnvironmentVariable(DefaultModel.EnvironmentVariable, old);
        }
    }

    [Test]
    public void BrokenSpmFile_IsABadInput_Exit4()
    {
        var broken = Path.Combine(_dir, "broken.safetensors");
        File.WriteAllBytes(broken, [1, 2, 3]);
        var r = Spm(Generate("--spm", broken));
        Assert.That(r.Code, Is.EqualTo(ExitCodes.BadInput), r.Err);
        Assert.That(r.Err.Trim(), Does.StartWith($"spm: error: '{broken}'"));
        Assert.That(r.Err.Trim().Split('\n'), Has.Length.EqualTo(1));
    }

    [Test]
    public void BareSpmName_ResolvesInTheModelsSpmFolder_UnlessSuchAFileIsHere()
    {
        Assert.That(SpmFileArgument.Parse("circle", Shapes), Is.EqualTo(new SpmFileArgument(Circle, null)));
        Assert.That(SpmFileArgument.Parse("circle.safetensors:0.5", Shapes), Is.EqualTo(new SpmFileArgument(Circle, 0.5f)));
        var here = Path.Combine(_dir, "circle.safetensors");
        File.Copy(Circle, here);
        var cwd = Directory.GetCurrentDirectory();
        try
        {
            Directory.SetCurrentDirectory(_dir);
            Assert.That(SpmFileArgument.Parse("circle.safetensors", Shapes).Path, Is.EqualTo("circle.safetensors"), "a file in the current folder wins");
        }
        finally
        {
            Directory.SetCurrentDirectory(cwd);
        }
        var colon = Path.Combine(_dir, "a:b.safetensors");
        File.Copy(Circle, colon);
        Assert.That(SpmFileArgument.Parse(colon, Shapes), Is.EqualTo(new SpmFileArgument(colon, null)), "an existing file keeps its colon");
        Assert.That(SpmFileArgument.Parse(colon + ":-1.5", Shapes), Is.EqualTo(new SpmFileArgument(colon, -1.5f)));
    }

    [Test]
    public void TooLongPrompt_WarnsNamingTheCut_AndStillGenerates()
    {
        // 15 x 5 tokens fill the 75 the text encoder reads; the last 4 are cut.
        var prompt = string.Join(" ", Enumerable.Repeat("a photo of a cat", 15)) + " in a red hat";
        var png = Path.Combine(_dir, "long.png");
        var r = Spm("generate", "--model", Shapes, "--prompt", prompt, "--negative", "blurry", "--steps", "1", "--seed", "1", "--out", png);
        Assert.That(r.Code, Is.EqualTo(ExitCodes.Ok), r.Err);
        var warnings = r.Err.Split('\n').Where(l => l.StartsWith("spm: warning:", StringComparison.Ordinal)).ToArray();
        Assert.That(warnings, Is.EqualTo(new[]
        {
            "spm: warning: the prompt is 79 tokens but the text encoder reads 75: the last 4 token(s) are ignored, from \"in a red hat\".",
        }));
        Assert.That(File.Exists(png), Is.True);

        r = Spm("generate", "--model", Shapes, "--prompt", "a red circle", "--negative", prompt, "--steps", "1", "--seed", "1", "--out", Path.Combine(_dir, "neg.png"));
        Assert.That(r.Code, Is.EqualTo(ExitCodes.Ok), r.Err);
        Assert.That(r.Err, Does.Contain("spm: warning: the negative prompt is 79 tokens but the text encoder reads 75: the last 4 token(s) are ignored, from \"in a red hat\"."));

        r = Spm("tokenize", "--model", Shapes, prompt);
        Assert.That(r.Code, Is.EqualTo(ExitCodes.Ok), r.Err);
        Assert.That(r.Err, Does.Contain("spm: warning: the text is 79 tokens but the text encoder reads 75: the last 4 token(s) are ignored, from \"in a red hat\"."));
        Assert.That(r.Out.Trim().Split(' '), Has.Length.EqualTo(77), "the ids are still printed");
    }

    [Test]
    public void Help_DocumentsTheExitCodes_TheSizeRule_AndTheSpmSyntax()
    {
        var root = Spm("--help");
        Assert.That(root.Code, Is.EqualTo(0));
        Assert.That(root.Out, Does.Contain(ExitCodes.HelpText));
        var generate = Spm("generate", "--help");
        Assert.That(generate.Code, Is.EqualTo(0));
        var help = string.Join(' ', generate.Out.Split((char[])[' ', '\n'], StringSplitOptions.RemoveEmptyEntries));
        Assert.That(help, Does.Contain("a multiple of the model's factor").And.Not.Contain("multiple of 8"));
        Assert.That(help, Does.Contain("FILE or FILE:MULTIPLIER (the multiplier fixes the gate)"));
        Assert.That(help, Does.Contain("a bare name such as 'circle' means MODEL/spm/circle.safetensors"));
    }
}
