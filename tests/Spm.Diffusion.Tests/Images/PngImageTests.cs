using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using Spm.Core;
using Spm.Core.Tensors;
using Spm.Diffusion.Images;
using Spm.Tests.Common;

namespace Spm.Diffusion.Tests.Images;

[TestFixture]
public class PngImageTests
{
    [Test]
    public void ToRgb24_MapsMinusOneToOneOntoBytes_Interleaved()
    {
        // [1,3,1,4]: R = -1, 0, 1, NaN ; G = 2, -2, 0.5, -0.5 ; B = 0.001, -0.001, 0.996, 0.0039
        var t = new FloatTensor([1, 3, 1, 4], [-1f, 0f, 1f, float.NaN, 2f, -2f, 0.5f, -0.5f, 0.001f, -0.001f, 0.996f, 0.0039f]);
        var rgb = ImageConversion.ToRgb24(t, 0);
        // round((x/2+0.5)*255): 0 -> 127.5 -> 128 (half to even), 0.5 -> 191.25 -> 191, -0.5 -> 63.75 -> 64,
        // 0.001 -> 127.6275 -> 128, -0.001 -> 127.3725 -> 127, 0.996 -> 254.49 -> 254, 0.0039 -> 128.
        Assert.That(rgb, Is.EqualTo(new byte[] { 0, 255, 128, 128, 0, 127, 255, 191, 254, 0, 64, 128 }));
    }

    [Test]
    public void ToRgb24_PicksTheRequestedImageOfTheBatch()
    {
        var t = new FloatTensor(2, 3, 2, 2);
        Array.Fill(t.Data, -1f, 12, 12);
        Assert.That(ImageConversion.ToRgb24(t, 0), Is.All.EqualTo(128));
        Assert.That(ImageConversion.ToRgb24(t, 1), Is.All.EqualTo(0));
        Assert.That(() => ImageConversion.ToRgb24(t, 2), Throws.TypeOf<ArgumentOutOfRangeException>());
    }

    private static byte[] Pixels(int w, int h)
    {
        var rgb = new byte[w * h * 3];
        for (int i = 0; i < rgb.Length; i++) rgb[i] = (byte)(i * 7 % 251);
        return rgb;
    }

    [TestCase("a photo of a cat\nSteps: 30, Sampler: PNDM, CFG scale: 7.5, Seed: 1, Size: 5x3, Model: tiny-sd1")]
    [TestCase("ein Kätzchen, café\nNegative prompt: unscharf\nSteps: 1")]
    [TestCase("猫の写真 🐱\nSteps: 2")]
    public void Encode_RoundTripsPixelsAndParameters_Deterministically(string parameters)
    {
        var rgb = Pixels(5, 3);
        var png = PngImage.Encode(rgb, 5, 3, parameters);
        Assert.That(PngImage.Encode(rgb, 5, 3, parameters), Is.EqualTo(png));
        var dir = TestPaths.NewTempDir("spm-png");
        var path = Path.Combine(dir, "x.png");
        PngImage.Write(path, png, overwrite: false);
        Assert.That(PngImage.ReadParameters(path), Is.EqualTo(parameters));
        using var img = Image.Load<Rgb24>(path);
        var back = new byte[rgb.Length];
        img.CopyPixelDataTo(back);
        Assert.That(back, Is.EqualTo(rgb));
        Assert.That(png.AsSpan(0, 8).ToArray(), Is.EqualTo(new byte[] { 0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A }));
    }

    [Test]
    public void LatinText_IsAnUncompressedTextChunk()
    {
        var png = PngImage.Encode(Pixels(2, 2), 2, 2, "a photo of a cat\nSteps: 3");
        var s = System.Text.Encoding.Latin1.GetString(png);
        Assert.That(s, Does.Contain("tEXtparameters\0a photo of a cat\nSteps: 3"));
    }

    [Test]
    public void Write_KeepsAnExistingFileUnlessOverwriting()
    {
        var dir = TestPaths.NewTempDir("spm-png");
        var path = Path.Combine(dir, "x.png");
        File.WriteAllText(path, "keep");
        var png = PngImage.Encode(Pixels(2, 2), 2, 2, null);
        Assert.That(() => PngImage.Write(path, png, overwrite: false), Throws.InstanceOf<IOException>());
        Assert.That(File.ReadAllText(path), Is.EqualTo("keep"));
        PngImage.Write(path, png, overwrite: true);
        Assert.That(File.ReadAllBytes(path), Is.EqualTo(png));
        Assert.That(PngImage.ReadParameters(path), Is.Null);
        Assert.That(Directory.GetFiles(dir), Has.Length.EqualTo(1));
    }

    [Test]
    public void ReadParameters_OfGarbage_IsAFormatErrorNamingTheFile()
    {
        var dir = TestPaths.NewTempDir("spm-png");
        var path = Path.Combine(dir, "bad.png");
        File.WriteAllBytes(path, [0x89, 0x50, 0x4E, 0x47, 1, 2, 3]);
        Assert.That(() => PngImage.ReadParameters(path), Throws.TypeOf<SpmFormatException>().With.Message.Contains("bad.png"));
    }

    [Test]
    public void Parameters_FollowTheUsualLayout()
    {
        Assert.That(GenerationParameters.Format("a cat", "", 30, "Euler a", 7.5, 42, 512, 512, "sd15"),
            Is.EqualTo("a cat\nSteps: 30, Sampler: Euler a, CFG scale: 7.5, Seed: 42, Size: 512x512, Model: sd15"));
        Assert.That(GenerationParameters.Format("a\ncat", "ugly\r\nblurry", 20, "DDIM", 1, 1, 64, 128, "my, model", ["SPM: cat 0.50"]),
            Is.EqualTo("a cat\nNegative prompt: ugly blurry\nSteps: 20, Sampler: DDIM, CFG scale: 1, Seed: 1, Size: 64x128, Model: \"my, model\", SPM: cat 0.50"));
    }
}
