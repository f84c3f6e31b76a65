using Spm.Core.IO;

namespace Spm.Core.Tests;

public class AtomicFileTests
{
    [Test]
    public void FailedWriteKeepsOldFileAndLeavesNoTemp()
    {
        var dir = Directory.CreateTempSubdirectory("spm-atomic").FullName;
        var path = Path.Combine(dir, "a.bin");
        File.WriteAllText(path, "old");
        Assert.That(() => AtomicFile.Write(path, s => { s.WriteByte(1); throw new InvalidOperationException("boom"); }),
            Throws.InvalidOperationException);
        Assert.That(File.ReadAllText(path), Is.EqualTo("old"));
        Assert.That(Directory.GetFiles(dir), Has.Length.EqualTo(1));
    }

    [Test]
    public void NoOverwriteRefusesExistingFile()
    {
        var dir = Directory.CreateTempSubdirectory("spm-atomic").FullName;
        var path = Path.Combine(dir, "a.txt");
        AtomicFile.WriteAllText(path, "one");
        Assert.That(() => AtomicFile.WriteAllText(path, "two", overwrite: false), Throws.TypeOf<IOException>().With.Message.Contains("--force"));
        AtomicFile.WriteAllText(path, "two");
        Assert.That(File.ReadAllText(path), Is.EqualTo("two"));
    }
}
