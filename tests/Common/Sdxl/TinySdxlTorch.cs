using System.Text.Json;
using Spm.Core.SafeTensors;
using Spm.Core.Tensors;

namespace Spm.Tests.Common;

/// <summary>
/// The PyTorch-exported tiny SDXL fixture (<c>tests/fixtures/tiny-sdxl-torch</c>, written by
/// <c>scripts/reference/sdxl/make_fixture.py</c>): a UNet exported by <c>torch.onnx.export</c> from a re-implementation
/// of diffusers' UNet2DConditionModel, and PyTorch's results on it. The runnable pipeline is <see cref="TinySdxl"/>'s
/// folder (its tokenizers, text encoders, VAE and scheduler, which the script read) with that UNet in <c>unet/</c>.
/// </summary>
internal static class TinySdxlTorch
{
    /// <summary>The committed fixture folder.</summary>
    public static string Fixture => Path.Combine(TestPaths.RepoRoot, "tests", "fixtures", "tiny-sdxl-torch");

    private static readonly Lazy<string> FolderLazy = new(() =>
    {
        var dir = TinySdxl.Copy();
        var unet = Path.Combine(dir, "unet");
        Directory.Delete(unet, true);
        Directory.CreateDirectory(unet);
        foreach (var file in Directory.EnumerateFiles(Path.Combine(Fixture, "unet")))
            File.Copy(file, Path.Combine(unet, Path.GetFileName(file)));
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            try { Directory.Delete(Path.GetDirectoryName(dir)!, true); } catch (IOException) { }
        };
        return dir;
    });

    /// <summary>The pipeline folder: the tiny SDXL pipeline with the PyTorch-exported UNet.</summary>
    public static string Folder => FolderLazy.Value;

    /// <summary>A file of the fixture, e.g. <c>FixtureFile("loop", "case.json")</c>.</summary>
    public static string FixtureFile(params string[] parts) => Path.Combine([Fixture, .. parts]);

    /// <summary>Parses one of the fixture's case.json files.</summary>
    public static JsonDocument Case(string part) => JsonDocument.Parse(File.ReadAllText(FixtureFile(part, "case.json")));

    /// <summary>Reads every tensor of a fixture safetensors file.</summary>
    public static Dictionary<string, FloatTensor> ReadAll(params string[] parts)
    {
        using var f = SafeTensorsFile.Open(FixtureFile(parts));
        return f.Tensors.ToDictionary(t => t.Name, t => f.ReadFloat(t.Name));
    }

    /// <summary>max |actual - expected| / max |expected|.</summary>
    public static double RelError(ReadOnlySpan<float> actual, ReadOnlySpan<float> expected)
    {
        if (actual.Length != expected.Length) throw new ArgumentException($"lengths differ: {actual.Length} vs {expected.Length}");
        double maxDiff = 0, maxRef = 0;
        for (int i = 0; i < actual.Length; i++)
        {
            maxDiff = Math.Max(maxDiff, Math.Abs((double)actual[i] - expected[i]));
            maxRef = Math.Max(maxRef, Math.Abs((double)expected[i]));
        }
        return maxRef == 0 ? maxDiff : maxDiff / maxRef;
    }
}
