using System.Text.RegularExpressions;
using Spm.Core;

namespace Spm.Diffusion.Runtime;

/// <summary>
/// Finds models in the local Hugging Face hub cache, the way <c>huggingface_hub</c> lays it out, and never downloads:
/// <c>&lt;cache&gt;/models--ORG--NAME/refs/&lt;revision&gt;</c> holds a commit hash,
/// <c>snapshots/&lt;hash&gt;/</c> the files of that commit (symbolic links into <c>blobs/</c>).
/// </summary>
/// <remarks>
/// The cache is <c>$HF_HUB_CACHE</c>, else <c>$HF_HOME/hub</c>, else <c>$XDG_CACHE_HOME/huggingface/hub</c>, else
/// <c>~/.cache/huggingface/hub</c> (huggingface_hub's order). A snapshot may hold the pipeline at its root (optimum,
/// Olive, the diffusers ONNX repositories) or in an <c>onnx/</c> subfolder.
/// </remarks>
public static partial class HubCache
{
    /// <summary>The revision used when none is given.</summary>
    public const string DefaultRevision = "main";

    /// <summary>The hub cache folder from the environment (it may not exist).</summary>
    /// <param name="environment">Environment lookup; defaults to the process environment (tests pass their own).</param>
    public static string CacheRoot(Func<string, string?>? environment = null)
    {
        environment ??= Environment.GetEnvironmentVariable;
        if (environment("HF_HUB_CACHE") is { Length: > 0 } hub) return hub;
        if (environment("HF_HOME") is { Length: > 0 } home) return Path.Combine(home, "hub");
        if (environment("XDG_CACHE_HOME") is { Length: > 0 } xdg) return Path.Combine(xdg, "huggingface", "hub");
        return Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "huggingface", "hub");
    }

    /// <summary>True for text shaped like a hub repository id, <c>ORG/NAME</c> (one slash, hub name characters).</summary>
    public static bool IsRepoId(string text) => text is not null && RepoIdRegex().IsMatch(text);

    /// <summary>
    /// The snapshot folder of <paramref name="repoId"/> at <paramref name="revision"/> (a branch or tag under
    /// <c>refs/</c>, or a commit hash), holding a pipeline (<c>model_index.json</c> or <c>unet/</c>).
    /// </summary>
    /// <exception cref="SpmInputNotFoundException">The repository, revision or snapshot is not in the cache (the message says how to get it; nothing is downloaded).</exception>
    public static string Resolve(string repoId, string? revision = null, string? cacheRoot = null)
    {
        ArgumentNullException.ThrowIfNull(repoId);
        if (!IsRepoId(repoId)) throw new ArgumentException($"'{repoId}' is not a hub repository id (ORG/NAME).", nameof(repoId));
        cacheRoot ??= CacheRoot();
        revision ??= DefaultRevision;
        var parts = repoId.Split('/');
        var repo = Path.Combine(cacheRoot, $"models--{parts[0]}--{parts[1]}");
        string hint = $"spm never downloads: fetch it first (e.g. `huggingface-cli download {repoId}{(revision == DefaultRevision ? "" : $" --revision {revision}")}`), or pass a folder.";
        if (!Directory.Exists(repo))
            throw new SpmInputNotFoundException(repo, $"hub model '{repoId}'", $"'{repoId}' is not in the Hugging Face cache at '{cacheRoot}'; {hint}");

        string commit;
        var refFile = Path.Combine(repo, "refs", revision);
        if (!revision.Contains("..", StringComparison.Ordinal) && File.Exists(refFile))
        {
            commit = File.ReadAllText(refFile).Trim();
            if (!CommitRegex().IsMatch(commit))
                throw new SpmFormatException(refFile, revision, $"the ref holds '{(commit.Length > 60 ? commit[..60] + "..." : commit)}', not a commit hash.");
        }
        else if (CommitRegex().IsMatch(revision))
        {
            commit = revision;
        }
        else
        {
            var known = Directory.Exists(Path.Combine(repo, "refs"))
                ? Directory.EnumerateFiles(Path.Combine(repo, "refs"), "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(Path.Combine(repo, "refs"), f).Replace('\\', '/')).Order(StringComparer.Ordinal).ToList()
                : [];
            throw new SpmInputNotFoundException(refFile, $"revision '{revision}' of '{repoId}'",
                $"revision '{revision}' of '{repoId}' is not in the cache (cached refs: {(known.Count == 0 ? "none" : string.Join(", ", known))}); {hint}");
        }
        var snapshot = Path.Combine(repo, "snapshots", commit);
        if (!Directory.Exists(snapshot))
            throw new SpmInputNotFoundException(snapshot, $"snapshot {commit} of '{repoId}'", $"'{repoId}' revision '{revision}' points at commit {commit}, whose snapshot is not in the cache; {hint}");
        if (IsPipeline(snapshot)) return snapshot;
        var onnx = Path.Combine(snapshot, "onnx");
        if (IsPipeline(onnx)) return onnx;
        throw new SpmInputNotFoundException(snapshot, $"ONNX pipeline in '{repoId}'",
            $"the cached snapshot of '{repoId}' ({commit}) holds no ONNX pipeline (model_index.json with unet/model.onnx, at its root or in onnx/); {hint}");
    }

    /// <summary>
    /// True when <paramref name="resolvedTarget"/> (a real path) is a blob of the hub repository whose snapshot holds
    /// <paramref name="modelFolder"/>: the cache stores every snapshot file as a symbolic link to
    /// <c>models--ORG--NAME/blobs/&lt;hash&gt;</c>, so a model's external data legitimately resolves there.
    /// </summary>
    public static bool IsBlobOfSnapshot(string modelFolder, string resolvedTarget)
    {
        ArgumentNullException.ThrowIfNull(resolvedTarget);
        if (BlobsFolderOf(modelFolder) is not { } blobs) return false;
        var prefix = blobs + Path.DirectorySeparatorChar;
        return resolvedTarget.StartsWith(prefix, StringComparison.Ordinal) && resolvedTarget.IndexOf(Path.DirectorySeparatorChar, prefix.Length) < 0;
    }

    /// <summary>
    /// The real path of the <c>blobs/</c> folder of the hub repository whose snapshot holds <paramref name="modelFolder"/>,
    /// or null when the folder is not inside a hub cache snapshot.
    /// </summary>
    public static string? BlobsFolderOf(string modelFolder)
    {
        ArgumentNullException.ThrowIfNull(modelFolder);
        for (var dir = new DirectoryInfo(Path.GetFullPath(modelFolder)); dir?.Parent?.Parent is not null; dir = dir.Parent)
        {
            if (dir.Parent!.Name != "snapshots" || !dir.Parent.Parent!.Name.StartsWith("models--", StringComparison.Ordinal)) continue;
            var blobs = Path.Combine(dir.Parent.Parent.FullName, "blobs");
            return Directory.Exists(blobs) ? Path.TrimEndingDirectorySeparator(Onnx.SafePaths.RealPath(blobs)) : null;
        }
        return null;
    }

    /// <summary>
    /// For ONNX Runtime, which refuses external data whose real path leaves the model's folder (every file of a hub
    /// snapshot is a link into <c>blobs/</c>): the model with each external location replaced by its blob's name, to be
    /// loaded with <paramref name="blobs"/> as the external-data folder. Locations must resolve into that repository's
    /// blobs; anything else is left for the usual checks to refuse.
    /// </summary>
    internal static byte[] RelocateExternalData(byte[] model, string baseDirectory, string blobs, string displayName)
    {
        Onnx.Proto.ModelProto proto;
        try { proto = Onnx.Proto.ModelProto.Parser.ParseFrom(model); }
        catch (Google.Protobuf.InvalidProtocolBufferException ex) { throw new SpmFormatException(displayName, null, $"not a valid ONNX model ({ex.Message})", ex); }
        bool changed = false;
        foreach (var t in proto.Graph?.Initializer ?? [])
        {
            if (t.DataLocation != Onnx.Proto.TensorProto.Types.DataLocation.External) continue;
            var entry = t.ExternalData.FirstOrDefault(e => e.Key == "location");
            if (entry is null) continue;
            Onnx.InitializerInfo.ValidateLocation(entry.Value, displayName, t.Name);
            var real = Onnx.SafePaths.RealPath(Path.Combine(baseDirectory, entry.Value));
            if (!IsBlobOfSnapshot(baseDirectory, real)) continue;
            entry.Value = Path.GetFileName(real);
            changed = true;
        }
        return changed ? Google.Protobuf.MessageExtensions.ToByteArray(proto) : model;
    }

    private static bool IsPipeline(string folder) =>
        File.Exists(Path.Combine(folder, "model_index.json")) || File.Exists(Path.Combine(folder, "unet", "model.onnx"));

    [GeneratedRegex(@"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.\-]{0,95}$", RegexOptions.CultureInvariant)]
    private static partial Regex RepoIdRegex();

    [GeneratedRegex(@"^[0-9a-f]{40}$", RegexOptions.CultureInvariant)]
    private static partial Regex CommitRegex();
}
