using System.Text.Json;
using Spm.Cli.Commands;
using Spm.Diffusion.Images;
using Spm.Tests.Common;

namespace Spm.Cli.Tests;

/// <summary>
/// The verbs on SDXL: <c>build-model --preset tiny-sdxl</c> writes the fixture, <c>tokenize</c> shows both tokenizers,
/// <c>generate</c> runs every scheduler with the size conditioning in the PNG parameters, deterministically per seed.
/// </summary>
[TestFixture]
public class SdxlCommandTests
{
    private string _root = "";
    private string _model = "";

    [OneTimeSetUp]
    public void BuildFixture()
    {
        _root = TestPaths.NewTempDir("spm-sdxl-cli");
        _model = Path.Combine(_root, "tiny-sdxl");
        var r = Run("build-model", "--preset", "tiny-sdxl", "--seed", "21", "--out", _model,
            "--tokenizer", Path.Combine(TestPaths.Shared, "clip-tokenizer"));
        Assert.That(r.Code, Is.EqualTo(0), r.Err);
        Assert.That(r.Out, Does.Contain("tiny-sdxl"));
    }

    [OneTimeTearDown]
    public void TearDown()
    {
        try { Directory.Delete(_root, true); } catch (IOException) { }
    }

    private static (int Code, string Out, string Err) Run(params string[] args)
        => CliHarness.Run(c => [GenerateCommand.Create(c), TokenizeCommand.Create(c), BuildModelCommand.Create(c), BakeCommand.Create(c)], args);

    /// <summary>A rank-2, alpha-4 SPM on every transformer layer of the model's UNet, seeded random weights.</summary>
    private string WriteSpm(string name, string concept)
    {
        var layers = Spm.Diffusion.Onnx.AdaptableLayerFinder.FindAll(Spm.Diffusion.Onnx.OnnxModel.Load(Path.Combine(_model, "unet", "model.onnx")))
            .Where(l => l.InTransformer).OrderBy(l => l.ModulePath, StringComparer.Ordinal);
        var rng = new Spm.Core.Randomness.SeededRandom(9);
        var membranes = new List<Spm.Core.Membranes.Membrane>();
        foreach (var l in layers)
        {
            var down = new Spm.Core.Tensors.FloatTensor(2, l.InFeatures);
            var up = new Spm.Core.Tensors.FloatTensor(l.OutFeatures, 2);
            rng.FillGaussian(down.Data);
            rng.FillGaussian(up.Data);
            for (int i = 0; i < up.Data.Length; i++) up.Data[i] *= 0.05f;
            membranes.Add(new Spm.Core.Membranes.Membrane(Spm.Core.Membranes.SpmKeys.KeyFor(l.ModulePath), down, up, 4f, l.ModulePath));
        }
        var path = Path.Combine(_root, name);
        Spm.Core.Membranes.SpmFile.Save(path, new Spm.Core.Membranes.SpmAdapter(new Spm.Core.Membranes.SpmConfig([concept], 2, 4f), membranes), overwrite: true);
        return path;
    }

    [Test]
    public void GenerateWithSpm_AndBake_OnSdxl()
    {
        var spm = WriteSpm("circle.safetensors", "circle");
        var png = Path.Combine(_root, "spm", "circle.png");
        var r = Run("generate", "--model", _model, "--prompt", "a circle", "--steps", "2", "--seed", "1", "--width", "64", "--height", "64",
            "--spm", spm, "--compare", "--out", png);
        Assert.That(r.Code, Is.EqualTo(0), r.Err);
        Assert.That(PngImage.ReadParameters(png), Does.Contain("SPM: circle.safetensors gate 1 (gamma 1"));
        Assert.That(File.ReadAllBytes(png), Is.Not.EqualTo(File.ReadAllBytes(Path.Combine(_root, "spm", "circle.base.png"))));

        var baked = Path.Combine(_root, "baked");
        var b = Run("bake", "--model", _model, "--spm", spm, "--out", baked);
        Assert.That(b.Code, Is.EqualTo(0), b.Err);
        var g = Run("generate", "--model", baked, "--prompt", "a circle", "--steps", "2", "--seed", "1", "--width", "64", "--height", "64",
            "--out", Path.Combine(_root, "spm", "baked.png"));
        Assert.That(g.Code, Is.EqualTo(0), g.Err);
        // The gate is 1 for "a circle": the baked model (multiplier 1) draws what the gated one drew, to a level of rounding.
        var x = Pixels(png);
        var y = Pixels(Path.Combine(_root, "spm", "baked.png"));
        Assert.That(x.Zip(y, (p, q) => Math.Abs(p - q)).Max(), Is.LessThanOrEqualTo(1));
    }

    [Test]
    public void Tokenize_PrintsBothTokenizersIds()
    {
        var (code, stdout, stderr) = Run("tokenize", "--model", _model, "a photo of a cat");
        Assert.That(code, Is.EqualTo(0), stderr);
        var lines = stdout.Trim().Split('\n');
        Assert.That(lines, Has.Length.EqualTo(2));
        var first = lines[0].Trim().Split(' ').Select(int.Parse).ToArray();
        var second = lines[1].Trim().Split(' ').Select(int.Parse).ToArray();
        int[] framed = [49406, 320, 1125, 539, 320, 2368, 49407];
        Assert.That(first.Take(7), Is.EqualTo(framed));
        Assert.That(second.Take(7), Is.EqualTo(framed));
        Assert.That((first.Length, second.Length), Is.EqualTo((77, 77)));
        Assert.That(first.Skip(7), Is.All.EqualTo(49407));
        Assert.That(second.Skip(7), Is.All.EqualTo(0));
        Assert.That(stderr, Does.Contain("tokenizer_2").And.Contain("pads with id 0"));

        var json = Run("tokenize", "--model", _model, "--json", "a photo of a cat");
        Assert.That(json.Code, Is.EqualTo(0), json.Err);
        using var doc = JsonDocument.Parse(json.Out);
        Assert.That(doc.RootElement.GetProperty("tokenizer").EnumerateArray().Select(e => e.GetInt32()), Is.EqualTo(first));
        Assert.That(doc.RootElement.GetProperty("tokenizer_2").EnumerateArray().Select(e => e.GetInt32()), Is.EqualTo(second));
    }

    [TestCase("euler")]
    [TestCase("euler-a")]
    [TestCase("ddim")]
    [TestCase("dpmpp-2m")]
    [TestCase("pndm")]
    [TestCase("lms")]
    [Category(TestCategories.Slow)]
    public void Generate_EveryScheduler_SameSeedSameFile_ParametersCarrySizes(string scheduler)
    {
        var a = Path.Combine(_root, $"{scheduler}-a.png");
        var b = Path.Combine(_root, $"{scheduler}-b.png");
        string[] args = ["generate", "--model", _model, "--prompt", "a red circle", "--negative", "blurry", "--steps", "3", "--seed", "7",
            "--scheduler", scheduler, "--width", "128", "--height", "64", "--original-size", "1024x768", "--crop", "16,32", "--target-size", "512x256", "--force"];
        var r1 = Run([.. args, "--out", a]);
        Assert.That(r1.Code, Is.EqualTo(0), r1.Err);
        var r2 = Run([.. args, "--out", b]);
        Assert.That(r2.Code, Is.EqualTo(0), r2.Err);
        Assert.That(File.ReadAllBytes(b), Is.EqualTo(File.ReadAllBytes(a)), "same seed, same PNG, byte for byte");
        var text = PngImage.ReadParameters(a)!;
        Assert.That(text, Does.StartWith("a red circle\nNegative prompt: blurry\n"));
        Assert.That(text, Does.Contain("Seed: 7").And.Contain("Size: 128x64").And.Contain("Model: tiny-sdxl"));
        Assert.That(text, Does.Contain("Original size: 1024x768, Crop top: 16, Crop left: 32, Target size: 512x256"));
    }

    [Test]
    public void Generate_DefaultsToTheModelsSizeAndEuler_BatchEqualsSingle()
    {
        var dir = Path.Combine(_root, "batch");
        var r = Run("generate", "--model", _model, "--prompt", "a cat", "--steps", "2", "--seed", "3", "--count", "2", "--batch", "2", "--out", dir);
        Assert.That(r.Code, Is.EqualTo(0), r.Err);
        var files = Directory.GetFiles(dir, "*.png").Order().ToArray();
        Assert.That(files, Has.Length.EqualTo(2));
        var text = PngImage.ReadParameters(files[1])!;
        Assert.That(text, Does.Contain("Sampler: Euler,").And.Contain("Size: 256x256").And.Contain("Seed: 4"));
        Assert.That(text, Does.Contain("Original size: 256x256, Crop top: 0, Crop left: 0, Target size: 256x256"));
        Assert.That(text, Does.Not.Contain("Negative prompt"));

        var single = Path.Combine(_root, "single.png");
        var s = Run("generate", "--model", _model, "--prompt", "a cat", "--steps", "2", "--seed", "4", "--out", single, "--force");
        Assert.That(s.Code, Is.EqualTo(0), s.Err);
        Assert.That(PngImage.ReadParameters(single), Is.EqualTo(text));
        // Pixels: the batched image equals the one made alone up to one level of rounding.
        var x = Pixels(files[1]);
        var y = Pixels(single);
        Assert.That(x, Has.Length.EqualTo(256 * 256 * 3));
        Assert.That(x.Zip(y, (p, q) => Math.Abs(p - q)).Max(), Is.LessThanOrEqualTo(1));
    }

    private static byte[] Pixels(string png)
    {
        using var image = SixLabors.ImageSharp.Image.Load<SixLabors.ImageSharp.PixelFormats.Rgb24>(png);
        var bytes = new byte[image.Width * image.Height * 3];
        image.CopyPixelDataTo(bytes);
        return bytes;
    }

    [TestCase("--original-size", "1024", "WIDTHxHEIGHT")]
    [TestCase("--target-size", "0x64", "WIDTHxHEIGHT")]
    [TestCase("--crop", "1;2", "TOP,LEFT")]
    public void BadSizeOptions_AreOneLineErrorsNamingTheOption(string option, string value, string form)
    {
        var r = Run("generate", "--model", _model, "--prompt", "a cat", "--steps", "1", "--out", Path.Combine(_root, "bad.png"), option, value);
        Assert.That(r.Code, Is.Not.EqualTo(0));
        Assert.That(r.Err.Trim(), Does.StartWith("spm: error:").And.Contain(option).And.Contain(form).And.Contain(value));
        Assert.That(File.Exists(Path.Combine(_root, "bad.png")), Is.False);
    }

    [Test]
    public void SizeOptions_OnSd1Model_WarnThatTheyAreIgnored()
    {
        var png = Path.Combine(_root, "sd1.png");
        var r = Run("generate", "--model", TestPaths.TinySd1, "--prompt", "a cat", "--steps", "1", "--out", png, "--original-size", "512x512", "--force");
        Assert.That(r.Code, Is.EqualTo(0), r.Err);
        Assert.That(r.Err, Does.Contain("warning").And.Contain("Stable Diffusion 1.x").And.Contain("ignores them"));
        Assert.That(PngImage.ReadParameters(png), Does.Not.Contain("Original size"));
    }
}
