using System.CommandLine;
using System.Text.Json;
using Spm.Cli.Commands;
using Spm.Core.SafeTensors;
using Spm.Core.Tensors;
using Spm.Diffusion.Images;
using Spm.Tests.Common;

namespace Spm.Cli.Tests;

[TestFixture]
public class GenerateCommandTests
{
    private string _dir = "";

    [SetUp]
    public void SetUp() => _dir = TestPaths.NewTempDir("spm-generate");

    [TearDown]
    public void TearDown()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    private static (int Code, string Out, string Err) Run(params string[] args)
        => CliHarness.Run(c => [GenerateCommand.Create(c), BenchCommand.Create(c)], args);

    private static string[] Generate(params string[] extra)
        => ["generate", "--model", TestPaths.TinySd1, "--prompt", "a photo of a cat", .. (extra.Contains("--steps") ? extra : ["--steps", "3", .. extra])];

    [Test]
    public void AModelsSamplingDefaults_FillTheOptionsNotGiven_AndBadFilesNameTheKey()
    {
        var builtIn = Path.Combine(TestPaths.RepoRoot, Spm.Diffusion.Pipelines.DefaultModel.RelativePath);
        Assert.That(Spm.Diffusion.Pipelines.ModelGenerationDefaults.Load(builtIn), Is.EqualTo(new Spm.Diffusion.Pipelines.ModelGenerationDefaults(3, 30)));
        Assert.That(Spm.Diffusion.Pipelines.ModelGenerationDefaults.Load(TestPaths.TinySd1), Is.Null, "no file: SD's defaults");

        var a = Path.Combine(_dir, "a.png");
        var r = Run("generate", "--model", builtIn, "--prompt", "a red circle", "--seed", "1", "--out", a);
        Assert.That(r.Code, Is.EqualTo(0), r.Err);
        Assert.That(r.Err, Does.Contain("spm_generate_defaults.json (guidance 3, 30 steps)"));
        Assert.That(PngImage.ReadParameters(a), Does.Contain("Steps: 30,").And.Contain("CFG scale: 3,").And.Contain("Sampler: DPM++ 2M,"));
        r = Run("generate", "--model", builtIn, "--prompt", "a red circle", "--seed", "1", "--out", a, "--force", "--steps", "4", "--guidance", "4.5");
        Assert.That(r.Code, Is.EqualTo(0), r.Err);
        Assert.That(r.Err, Does.Not.Contain("spm_generate_defaults.json"), "both given: the file is not used");
        Assert.That(PngImage.ReadParameters(a), Does.Contain("Steps: 4,").And.Contain("CFG scale: 4.5,"));

        var model = Path.Combine(_dir, "model");
        Directory.CreateDirectory(model);
        var file = Path.Combine(model, Spm.Diffusion.Pipelines.ModelGenerationDefaults.FileName);
        foreach (var (json, key) in new[] { ("{\"steps\": 0}", "steps"), ("{\"steps\": 2.5}", "steps"), ("{\"cfg\": 1}", "cfg"), ("{\"guidance_scale\": \"x\"}", "guidance_scale"), ("[1]", "") })
        {
            File.WriteAllText(file, json);
            var ex = Assert.Throws<Spm.Core.SpmFormatException>(() => Spm.Diffusion.Pipelines.ModelGenerationDefaults.Load(model), json);
            Assert.That(ex!.Message, Does.Contain(file).And.Contain(key), json);
        }
    }

    [Test]
    [Category(TestCategories.Slow)]
    public void SameCommandTwice_WritesByteIdenticalPngWithParameters()
    {
        var a = Path.Combine(_dir, "a.png");
        var b = Path.Combine(_dir, "b.png");
        var (code, stdout, stderr) = Run(Generate("--seed", "1", "--out", a));
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stdout, Does.Contain("a.png (256x256, seed 1)"));
        Assert.That(stderr, Does.Contain("it/s"), "progress with rate");
        Assert.That(Run(Generate("--seed", "1", "--out", b)).Code, Is.EqualTo(0));
        Assert.That(File.ReadAllBytes(b), Is.EqualTo(File.ReadAllBytes(a)));
        using (var img = SixLabors.ImageSharp.Image.Load(a))
            Assert.That((img.Width, img.Height), Is.EqualTo((256, 256)));
        Assert.That(PngImage.ReadParameters(a),
            Is.EqualTo("a photo of a cat\nSteps: 3, Sampler: PNDM, CFG scale: 7.5, Seed: 1, Size: 256x256, Model: tiny-sd1"));
    }

    [Test]
    public void ExistingOutput_IsKeptWithoutForce_AndReplacedWithIt()
    {
        var a = Path.Combine(_dir, "a.png");
        File.WriteAllText(a, "precious");
        var (code, _, stderr) = Run(Generate("--seed", "2", "--out", a));
        Assert.That(code, Is.Not.EqualTo(0));
        Assert.That(stderr.Trim(), Does.StartWith("spm: error:").And.Contain("already exists"));
        Assert.That(File.ReadAllText(a), Is.EqualTo("precious"));
        Assert.That(Run(Generate("--seed", "2", "--out", a, "--force", "--negative", "blurry", "--guidance", "5")).Code, Is.EqualTo(0));
        Assert.That(PngImage.ReadParameters(a), Does.StartWith("a photo of a cat\nNegative prompt: blurry\nSteps: 3, Sampler: PNDM, CFG scale: 5, Seed: 2,"));
        Assert.That(Directory.GetFiles(_dir), Has.Length.EqualTo(1), "no temporary files left");
    }

    [Test]
    [Category(TestCategories.Slow)]
    public void FolderOutput_NumbersFilesAfterExistingOnes()
    {
        var outDir = Path.Combine(_dir, "out");
        var first = Run(Generate("--seed", "5", "--count", "2", "--batch", "2", "--steps", "1", "--out", outDir, "--scheduler", "euler-a"));
        Assert.That(first.Code, Is.EqualTo(0), first.Err);
        Assert.That(Run(Generate("--seed", "9", "--steps", "1", "--out", outDir)).Code, Is.EqualTo(0));
        Assert.That(Directory.GetFiles(outDir).Select(Path.GetFileName).Order(), Is.EqualTo(new[] { "00000-5.png", "00001-6.png", "00002-9.png" }));
        Assert.That(PngImage.ReadParameters(Path.Combine(outDir, "00001-6.png")), Does.Contain("Sampler: Euler a").And.Contain("Seed: 6"));
    }

    [Test]
    [Category(TestCategories.Slow)]
    public void InitLatents_GiveTheSameFinalLatentsWithOneOrTwoThreads()
    {
        var init = new FloatTensor(1, 4, 32, 32);
        new Spm.Core.Randomness.SeededRandom(3).FillGaussian(init.Span);
        var initPath = Path.Combine(_dir, "init.safetensors");
        SafeTensorsWriter.WriteFloat(initPath, new Dictionary<string, FloatTensor> { ["latents"] = init });
        var l1 = Path.Combine(_dir, "l1.safetensors");
        var l2 = Path.Combine(_dir, "l2.safetensors");
        var r1 = Run(Generate("--init-latents", initPath, "--threads", "1", "--save-latents", l1, "--seed", "4", "--out", Path.Combine(_dir, "1.png")));
        Assert.That(r1.Code, Is.EqualTo(0), r1.Err);
        Assert.That(Run(Generate("--init-latents", initPath, "--threads", "2", "--save-latents", l2, "--seed", "4", "--out", Path.Combine(_dir, "2.png"))).Code, Is.EqualTo(0));
        using var f1 = SafeTensorsFile.Open(l1);
        using var f2 = SafeTensorsFile.Open(l2);
        var a = f1.ReadFloat("latents");
        var b = f2.ReadFloat("latents");
        Assert.That(a.Shape, Is.EqualTo(new[] { 1, 4, 32, 32 }));
        float max = 0;
        for (int i = 0; i < a.Length; i++) max = Math.Max(max, Math.Abs(a.Data[i] - b.Data[i]));
        Assert.That(max, Is.LessThanOrEqualTo(1e-5f));
        Assert.That(a.Data, Is.Not.EqualTo(init.Data));
    }

    [Test]
    public void BadInputs_AreOneLineErrors()
    {
        var missing = Run("generate", "--model", "/no/such/model", "--prompt", "x");
        Assert.That(missing.Code, Is.EqualTo(ExitCodes.MissingInput));
        Assert.That(missing.Err.Trim(), Does.StartWith("spm: error:").And.Contain("/no/such/model"));

        var noLatents = Path.Combine(_dir, "x.safetensors");
        SafeTensorsWriter.WriteFloat(noLatents, new Dictionary<string, FloatTensor> { ["other"] = new FloatTensor(1, 4, 8, 8) });
        var bad = Run(Generate("--init-latents", noLatents, "--out", Path.Combine(_dir, "y.png")));
        Assert.That(bad.Code, Is.EqualTo(ExitCodes.BadInput));
        Assert.That(bad.Err, Does.Contain("x.safetensors").And.Contain("'latents'"));

        var size = Run(Generate("--width", "100", "--out", Path.Combine(_dir, "z.png")));
        Assert.That(size.Code, Is.EqualTo(2));
        Assert.That(size.Err, Does.Contain("--width must be a multiple of 16, got 100"));
        Assert.That(File.Exists(Path.Combine(_dir, "z.png")), Is.False);
    }

    [Test]
    [Category(TestCategories.Slow)]
    public void BenchPipeline_ReportsRateAndOutsideShare()
    {
        var (code, stdout, stderr) = Run("bench", "pipeline", "--model", TestPaths.TinySd1, "--steps", "2", "--runs", "1", "--json");
        Assert.That(code, Is.EqualTo(0), stderr);
        using var doc = JsonDocument.Parse(stdout);
        var r = doc.RootElement;
        Assert.That(r.GetProperty("it_per_s").GetDouble(), Is.GreaterThan(0));
        Assert.That(r.GetProperty("unet_calls").GetInt32(), Is.EqualTo(3), "PNDM's repeated step");
        Assert.That(r.GetProperty("batch_rows").GetInt32(), Is.EqualTo(2));
        Assert.That(r.GetProperty("outside_models_share").GetDouble(), Is.InRange(0.0, 1.0));
        Assert.That(r.GetProperty("measured_outside_share").GetDouble(), Is.InRange(0.0, 1.0));
        Assert.That(r.GetProperty("models_cpu_ms").GetDouble(), Is.GreaterThan(r.GetProperty("outside_work_cpu_ms").GetDouble()));
        Assert.That(r.GetProperty("bare_unet_ms").GetDouble(), Is.GreaterThan(0));
    }

    [Test]
    public void CudaRequest_RunsOrFallsBackToCpuWithAOneLineReason()
    {
        var a = Path.Combine(_dir, "cuda.png");
        var (code, stdout, stderr) = Run(Generate("--steps", "1", "--seed", "1", "--provider", "cuda", "--out", a));
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stdout, Does.Contain("cuda.png"));
        if (stderr.Contains("on cpu"))
        {
            var warning = stderr.Split('\n').Single(l => l.StartsWith("spm: warning:"));
            Assert.That(warning, Does.Contain("CUDA").And.EndWith("running on the CPU."));
        }
        var bad = Run(Generate("--steps", "1", "--provider", "tpu", "--out", Path.Combine(_dir, "tpu.png")));
        Assert.That(bad.Code, Is.EqualTo(2));
        Assert.That(bad.Err, Does.Contain("unknown provider 'tpu'"));
    }
}
