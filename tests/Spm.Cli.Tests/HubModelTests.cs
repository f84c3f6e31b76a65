using Spm.Cli.Commands;
using Spm.Tests.Common;

namespace Spm.Cli.Tests;

/// <summary><c>spm generate --model ORG/NAME [--revision R]</c> from a hub cache laid out like a real one ($HF_HUB_CACHE).</summary>
[TestFixture]
[NonParallelizable] // sets HF_HUB_CACHE, which every model lookup in the process reads
public class HubModelTests
{
    private string _cache = null!;
    private string? _oldCache;

    [OneTimeSetUp]
    public void SetUp()
    {
        _cache = TestPaths.NewTempDir("spm-cli-hub");
        HubCacheBuilder.AddSnapshot(_cache, "test-org/tiny-sd1", "main", TestPaths.TinySd1);
        _oldCache = Environment.GetEnvironmentVariable("HF_HUB_CACHE");
        Environment.SetEnvironmentVariable("HF_HUB_CACHE", _cache);
    }

    [OneTimeTearDown]
    public void TearDown()
    {
        Environment.SetEnvironmentVariable("HF_HUB_CACHE", _oldCache);
        try { Directory.Delete(_cache, true); } catch (IOException) { }
    }

    private static (int Code, string Out, string Err) Run(params string[] args) => CliHarness.Run(c => [GenerateCommand.Create(c)], args);

    [Test]
    [Category(TestCategories.Slow)]
    public void Generate_FromAHubId_GivesTheFoldersImage()
    {
        var a = Path.Combine(_cache, "hub.png");
        var b = Path.Combine(_cache, "folder.png");
        string[] common = ["--prompt", "a photo of a cat", "--seed", "2", "--steps", "2", "-W", "64", "-H", "64", "--threads", "1"];
        var r = Run(["generate", "--model", "test-org/tiny-sd1", .. common, "--out", a]);
        Assert.That(r.Code, Is.EqualTo(0), r.Err);
        r = Run(["generate", "--model", TestPaths.TinySd1, .. common, "--out", b]);
        Assert.That(r.Code, Is.EqualTo(0), r.Err);
        using var ia = SixLabors.ImageSharp.Image.Load<SixLabors.ImageSharp.PixelFormats.Rgb24>(a);
        using var ib = SixLabors.ImageSharp.Image.Load<SixLabors.ImageSharp.PixelFormats.Rgb24>(b);
        var pa = new byte[64 * 64 * 3]; ia.CopyPixelDataTo(pa);
        var pb = new byte[64 * 64 * 3]; ib.CopyPixelDataTo(pb);
        Assert.That(pa, Is.EqualTo(pb));
    }

    [Test]
    public void Generate_UnknownRevisionOrRepo_FailsWithoutDownloading()
    {
        var r = Run("generate", "--model", "test-org/tiny-sd1", "--revision", "fp16", "--prompt", "x", "--out", Path.Combine(_cache, "x.png"));
        Assert.That(r.Code, Is.Not.EqualTo(0));
        Assert.That(r.Err, Does.Contain("revision 'fp16'").And.Contain("cached refs: main").And.Contain("never downloads"));
        r = Run("generate", "--model", "nobody/nothing", "--prompt", "x", "--out", Path.Combine(_cache, "x.png"));
        Assert.That(r.Code, Is.Not.EqualTo(0));
        Assert.That(r.Err, Does.Contain("'nobody/nothing' is not in the Hugging Face cache"));
    }
}
