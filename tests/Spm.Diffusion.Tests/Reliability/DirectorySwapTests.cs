using Spm.Diffusion.Membranes;
using Spm.Tests.Common;

namespace Spm.Diffusion.Tests.Reliability;

/// <summary>The folder replacement behind <c>spm bake</c>: on Linux one atomic exchange, so the destination never goes missing.</summary>
[TestFixture]
public class DirectorySwapTests
{
    private string _dir = "";

    [SetUp]
    public void SetUp() => _dir = TestPaths.NewTempDir("spm-swap");

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, true);

    private string Folder(string name, string content)
    {
        var d = Path.Combine(_dir, name);
        Directory.CreateDirectory(d);
        File.WriteAllText(Path.Combine(d, "f.txt"), content);
        return d;
    }

    [Test]
    public void Replace_PutsTheNewFolderInPlace_AndTheOldOneAside()
    {
        var staging = Folder("staging", "new");
        var dest = Folder("dest", "old");
        var aside = Path.Combine(_dir, "aside");
        Assert.That(DirectorySwap.Replace(staging, dest, aside), Is.True);
        Assert.That(File.ReadAllText(Path.Combine(dest, "f.txt")), Is.EqualTo("new"));
        Assert.That(File.ReadAllText(Path.Combine(aside, "f.txt")), Is.EqualTo("old"));
        Assert.That(Directory.Exists(staging), Is.False);

        // No old folder: a plain move.
        var fresh = Folder("fresh", "x");
        Assert.That(DirectorySwap.Replace(fresh, Path.Combine(_dir, "new-dest"), Path.Combine(_dir, "unused")), Is.False);
        Assert.That(File.ReadAllText(Path.Combine(_dir, "new-dest", "f.txt")), Is.EqualTo("x"));
    }

    [Test]
    public void OnLinux_TheExchangeIsOneSystemCall()
    {
        if (!OperatingSystem.IsLinux()) Assert.Ignore("renameat2 is Linux-only; elsewhere the two-rename fallback is used.");
        var a = Folder("a", "A");
        var b = Folder("b", "B");
        Assert.That(DirectorySwap.TryExchange(a, b), Is.True, "renameat2(RENAME_EXCHANGE) must be available on Linux file systems like this one");
        Assert.That(File.ReadAllText(Path.Combine(a, "f.txt")), Is.EqualTo("B"));
        Assert.That(File.ReadAllText(Path.Combine(b, "f.txt")), Is.EqualTo("A"));
    }
}
