using Spm.Tests.Common;

/// <summary>
/// One folder of ONNX Runtime optimized gradient graphs for every trainer of this assembly that opts in (the fixtures'
/// <c>OneThread</c> options): many tests train on the same fixture with the same layout and shapes, so the graph is
/// optimized once and later sessions load it with graph optimization off, about half the cost of opening it. The
/// cached graph gives bit-identical results (<c>TheOptimizedGraphCache_StoresOnce_ThenLoads_WithBitIdenticalResults</c>),
/// and tests that count cache entries or compare cold and warm builds use folders of their own. Removed after the
/// assembly's last test. Declared outside any namespace, so it wraps the whole assembly.
/// </summary>
[SetUpFixture]
public sealed class SuiteGraphCache
{
    /// <summary>The folder, created on first use.</summary>
    public static string Folder => FolderLazy.Value;

    private static readonly Lazy<string> FolderLazy = new(() => TestPaths.NewTempDir("spm-test-ort-optimized"));

    [OneTimeTearDown]
    public void Remove()
    {
        if (!FolderLazy.IsValueCreated) return;
        try { Directory.Delete(FolderLazy.Value, recursive: true); }
        catch (IOException) { } // a session still mapping a file on some platform: the temp folder is the OS's to clean
    }
}
