namespace Spm.Tests.Common;

/// <summary>Locates the repository root and the shared fixtures folder beside it, from any test's working directory.</summary>
internal static class TestPaths
{
    private static readonly Lazy<string> RepoRootLazy = new(() =>
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Spm.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("Spm.sln not found above " + AppContext.BaseDirectory);
    });

    /// <summary>The folder holding Spm.sln.</summary>
    public static string RepoRoot => RepoRootLazy.Value;

    /// <summary>The shared material folder (../shared next to the repository).</summary>
    public static string Shared => Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared"));

    /// <summary>The tiny SD 1.x fixture pipeline.</summary>
    public static string TinySd1 => Path.Combine(Shared, "fixtures", "tiny-sd1");

    /// <summary>Folder of one reference case (all-layers, attn2-rank4).</summary>
    public static string Reference(string caseName) => Path.Combine(Shared, "fixtures", "tiny-sd1-reference", caseName);

    /// <summary>A fresh temporary folder for one test.</summary>
    public static string NewTempDir(string prefix = "spm-test") => Directory.CreateTempSubdirectory(prefix).FullName;
}
