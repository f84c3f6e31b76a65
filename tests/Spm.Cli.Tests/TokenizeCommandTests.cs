using System.CommandLine;
using System.Text.Json;
using Spm.Cli.Commands;
using Spm.Tests.Common;

namespace Spm.Cli.Tests;

[TestFixture]
public class TokenizeCommandTests
{
    private static (int Code, string Out, string Err) Run(params string[] args)
        => CliHarness.Run(c => [TokenizeCommand.Create(c)], args);

    [Test]
    public void Json_PrintsOneArrayOf77Ints()
    {
        var (code, stdout, stderr) = Run("tokenize", "--model", TestPaths.TinySd1, "--json", "a photo of a cat");
        Assert.That(code, Is.EqualTo(0), stderr);
        var ids = JsonSerializer.Deserialize<int[]>(stdout.Trim())!;
        Assert.That(ids, Has.Length.EqualTo(77));
        Assert.That(ids.Take(8), Is.EqualTo(new[] { 49406, 320, 1125, 539, 320, 2368, 49407, 49407 }));
        Assert.That(stderr, Does.Contain(Path.Combine("tiny-sd1", "tokenizer")));
    }

    [Test]
    public void Plain_PrintsSpaceSeparatedIdsAndNamesTheSharedVocabulary()
    {
        var (code, stdout, stderr) = Run("tokenize", "a photo of a cat");
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stdout.Trim().Split(' ').Select(int.Parse).Take(7), Is.EqualTo(new[] { 49406, 320, 1125, 539, 320, 2368, 49407 }));
        Assert.That(stdout.Trim().Split(' '), Has.Length.EqualTo(77));
        Assert.That(stderr, Does.Contain("clip-tokenizer").Or.Contain("SPM_MODEL"));
    }

    [Test]
    public void MissingModel_IsAOneLineErrorWithExitCode3()
    {
        var (code, stdout, stderr) = Run("tokenize", "--model", "/no/such/model", "x");
        Assert.That(code, Is.EqualTo(ExitCodes.MissingInput));
        Assert.That(stdout, Is.Empty);
        Assert.That(stderr.Trim(), Does.StartWith("spm: error:").And.Contain("/no/such/model"));
    }
}
