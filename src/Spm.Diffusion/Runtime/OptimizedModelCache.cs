using System.Globalization;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using System.Security.Cryptography;
using System.Text;
using Microsoft.ML.OnnxRuntime;
using Spm.Diffusion.Onnx.Proto;

namespace Spm.Diffusion.Runtime;

/// <summary>Whether a session's optimized graph came from, or went to, an <see cref="OptimizedModelCache"/>.</summary>
public enum OptimizedModelUse
{
    /// <summary>No cache was involved (none configured, not asked for, not on the CPU, or it could not be written).</summary>
    None,

    /// <summary>The optimized graph was read from the cache: ONNX Runtime skipped graph optimization.</summary>
    Loaded,

    /// <summary>The graph was optimized now and the result stored in the cache for the next process.</summary>
    Stored,
}

/// <summary>
/// A folder of ONNX Runtime optimized graphs, so that opening the same in-memory model again (the next training run's
/// gradient graph) skips graph optimization, a third to a half of opening a gradient graph. The first session is
/// opened as usual with ONNX Runtime writing its optimized graph (<c>model.onnx</c>, weights in <c>weights.bin</c>)
/// into a staging folder, which is renamed into place only once complete; later sessions load that graph with graph
/// optimization off, which runs the same kernels on the same graph, so the results are identical.
/// </summary>
/// <remarks>
/// An entry is keyed by a SHA-256 of everything the optimized graph depends on: the serialized model, the identity
/// (full path, length, modification time) of each external-data file it reads, the ONNX Runtime version, the
/// optimization level and skipped passes, and the CPU's instruction sets (the blocked-layout passes pick a block size
/// per CPU). An entry that ONNX Runtime cannot load is deleted and rebuilt. Each entry holds a copy of the model's
/// weights (about 6 MB for the test fixture; the size of the UNet's weights for a real model); delete the folder to
/// reclaim the space. Only CPU sessions use the cache.
/// </remarks>
public static class OptimizedModelCache
{
    internal const string ModelFileName = "model.onnx";
    internal const string WeightsFileName = "weights.bin";
    private const string KeyVersion = "spm-ort-optimized-1";

    /// <summary>
    /// The per-user default folder: <c>$SPM_CACHE/ort-optimized</c>, else <c>$XDG_CACHE_HOME/spm/ort-optimized</c>,
    /// else <c>~/.cache/spm/ort-optimized</c> (on Windows, under the local application data folder).
    /// </summary>
    public static string DefaultFolder()
    {
        if (Environment.GetEnvironmentVariable("SPM_CACHE") is { Length: > 0 } spm) return Path.Combine(spm, "ort-optimized");
        if (Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } xdg) return Path.Combine(xdg, "spm", "ort-optimized");
        var root = OperatingSystem.IsWindows()
            ? Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData)
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
        return Path.Combine(root, "spm", "ort-optimized");
    }

    /// <summary>
    /// The entry folder for <paramref name="source"/> under <paramref name="folder"/>, or null when the model cannot be
    /// keyed (not in memory, or external data that cannot be found: ONNX Runtime reports that itself).
    /// </summary>
    internal static string? EntryFor(string folder, OnnxModelSource source, GraphOptimizationLevel level, IReadOnlyList<string> disabledOptimizers)
    {
        if (source.Bytes is null) return null;
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        void Add(string text)
        {
            var bytes = Encoding.UTF8.GetBytes(text);
            hash.AppendData(BitConverter.GetBytes(bytes.Length));
            hash.AppendData(bytes);
        }
        Add(KeyVersion);
        Add(OrtEnv.Instance().GetVersionString());
        Add(level.ToString());
        Add(string.Join(';', disabledOptimizers));
        Add(CpuFingerprint());
        hash.AppendData(BitConverter.GetBytes(source.Bytes.LongLength));
        hash.AppendData(source.Bytes);
        var external = ExternalFiles(source);
        if (external is null) return null;
        foreach (var file in external)
        {
            // The optimized graph carries a copy of the weights: a changed weights file must miss.
            var info = new FileInfo(file);
            if (!info.Exists) return null;
            Add(info.FullName);
            Add(info.Length.ToString(CultureInfo.InvariantCulture));
            Add(info.LastWriteTimeUtc.Ticks.ToString(CultureInfo.InvariantCulture));
        }
        return Path.Combine(Path.GetFullPath(folder), Convert.ToHexString(hash.GetHashAndReset()).ToLowerInvariant());
    }

    /// <summary>The optimized model file of an entry, when the entry is complete.</summary>
    internal static string? CompleteModel(string entry)
    {
        var model = Path.Combine(entry, ModelFileName);
        return File.Exists(model) ? model : null;
    }

    /// <summary>A new, empty staging folder beside <paramref name="entry"/>; null when the cache folder cannot be written.</summary>
    internal static string? CreateStaging(string entry)
    {
        try
        {
            // A process killed while ONNX Runtime wrote its graph leaves a staging folder that is never published.
            if (Path.GetDirectoryName(entry) is { } parent && Directory.Exists(parent))
                foreach (var stale in Directory.EnumerateDirectories(parent, Path.GetFileName(entry) + ".staging-*"))
                    if (Directory.GetLastWriteTimeUtc(stale) < DateTime.UtcNow - TimeSpan.FromHours(1)) Remove(stale);
            var staging = $"{entry}.staging-{Environment.ProcessId}-{Guid.NewGuid():N}";
            Directory.CreateDirectory(staging);
            return staging;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>
    /// Renames a staging folder into <paramref name="entry"/> (one rename, so readers never see half an entry).
    /// Returns false when it could not (another process published the same entry first, or the folder is read-only);
    /// the staging folder is removed either way.
    /// </summary>
    internal static bool Publish(string staging, string entry)
    {
        try
        {
            if (CompleteModel(staging) is null) return false;
            Directory.Move(staging, entry);
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
        finally
        {
            Remove(staging);
        }
    }

    /// <summary>Deletes a folder (a damaged entry, a staging folder), ignoring failures: the cache is only an accelerator.</summary>
    internal static void Remove(string folder)
    {
        try
        {
            if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
    }

    /// <summary>Full paths of the external-data files the model reads, in order of first use; null when it reads some but has no folder.</summary>
    private static List<string>? ExternalFiles(OnnxModelSource source)
    {
        var model = ModelProto.Parser.ParseFrom(source.Bytes);
        var locations = new List<string>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        void Visit(GraphProto? graph)
        {
            if (graph is null) return;
            foreach (var init in graph.Initializer)
                if (init.DataLocation == TensorProto.Types.DataLocation.External)
                    foreach (var entry in init.ExternalData)
                        if (entry.Key == "location" && seen.Add(entry.Value)) locations.Add(entry.Value);
            foreach (var node in graph.Node)
                foreach (var attribute in node.Attribute)
                {
                    Visit(attribute.G);
                    foreach (var g in attribute.Graphs) Visit(g);
                }
        }
        Visit(model.Graph);
        if (locations.Count == 0) return locations;
        if (source.ExternalDataFolder is null) return null;
        return locations.Select(l => Path.GetFullPath(Path.Combine(source.ExternalDataFolder, l))).ToList();
    }

    /// <summary>The process architecture and the vector instruction sets ONNX Runtime's CPU passes choose layouts by.</summary>
    private static string CpuFingerprint()
    {
        var parts = new List<string> { RuntimeInformation.ProcessArchitecture.ToString() };
        if (Avx.IsSupported) parts.Add("avx");
        if (Avx2.IsSupported) parts.Add("avx2");
        if (Fma.IsSupported) parts.Add("fma");
        if (Avx512F.IsSupported) parts.Add("avx512f");
        if (Avx512BW.IsSupported) parts.Add("avx512bw");
        if (AvxVnni.IsSupported) parts.Add("avxvnni");
        if (AdvSimd.IsSupported) parts.Add("neon");
        if (Dp.IsSupported) parts.Add("dotprod");
        return string.Join(',', parts);
    }
}
