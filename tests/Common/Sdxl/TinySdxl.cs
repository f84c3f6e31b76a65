using Spm.Diffusion.Pipelines;
using Spm.Diffusion.Runtime;
using Spm.Shapes.Building;

namespace Spm.Tests.Common;

/// <summary>
/// The tiny SDXL-structured pipeline (<see cref="PipelinePresets.TinySdxl"/>, seed 21), written by the project's own
/// builders once per test process into a temporary folder: nothing to download or commit, the same bytes on every
/// clean clone. About 20 MB, written in a second or two.
/// </summary>
internal static class TinySdxl
{
    public const ulong Seed = 21;

    private static readonly Lazy<string> FolderLazy = new(() =>
    {
        var dir = Path.Combine(TestPaths.NewTempDir("spm-tiny-sdxl"), "tiny-sdxl");
        PipelineWriter.Write(dir, PipelinePresets.TinySdxl, Seed, new PipelineWriteOptions { TokenizerFolder = Path.Combine(TestPaths.Shared, "clip-tokenizer") });
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            try { Directory.Delete(Path.GetDirectoryName(dir)!, true); } catch (IOException) { }
        };
        return dir;
    });

    private static readonly Lazy<StableDiffusionPipeline> Shared = new(() => Load());

    /// <summary>The fixture folder.</summary>
    public static string Folder => FolderLazy.Value;

    /// <summary>One pipeline on the fixture shared by the tests (thread-safe).</summary>
    public static StableDiffusionPipeline Pipeline => Shared.Value;

    public static StableDiffusionPipeline Load(int threads = 1, OnnxModelSource? unet = null)
        => StableDiffusionPipeline.Load(Folder, new PipelineOptions
        {
            Runtime = new OnnxRuntimeOptions { IntraOpThreads = threads },
            UNetSource = unet,
        });

    /// <summary>A copy of the fixture folder that a test may change.</summary>
    public static string Copy()
    {
        var dir = Path.Combine(TestPaths.NewTempDir("spm-sdxl-copy"), "model");
        foreach (var file in Directory.EnumerateFiles(Folder, "*", SearchOption.AllDirectories))
        {
            var target = Path.Combine(dir, Path.GetRelativePath(Folder, file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target);
        }
        return dir;
    }
}
