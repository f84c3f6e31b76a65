using System.Security.Cryptography;
using System.Text;

namespace Spm.Tests.Common;

/// <summary>
/// Lays a folder out as the Hugging Face hub cache stores a downloaded repository: every file a blob named by its
/// sha256 under <c>models--ORG--NAME/blobs/</c>, the snapshot <c>snapshots/&lt;commit&gt;/...</c> made of relative
/// symbolic links to those blobs, and <c>refs/&lt;revision&gt;</c> holding the commit hash.
/// </summary>
internal static class HubCacheBuilder
{
    /// <summary>Adds <paramref name="folder"/> as revision <paramref name="revision"/> of <paramref name="repoId"/>; returns the commit hash.</summary>
    public static string AddSnapshot(string cacheRoot, string repoId, string revision, string folder)
    {
        var parts = repoId.Split('/');
        var repo = Path.Combine(cacheRoot, $"models--{parts[0]}--{parts[1]}");
        var files = Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal).ToList();
        var hashes = files.ToDictionary(f => f, f => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(f))).ToLowerInvariant());
        // A stand-in commit: 40 hex digits derived from the content (the hub uses git commit ids).
        var commit = Convert.ToHexString(SHA1.HashData(Encoding.UTF8.GetBytes(revision + string.Join(",", hashes.Values)))).ToLowerInvariant();
        Directory.CreateDirectory(Path.Combine(repo, "blobs"));
        foreach (var f in files)
        {
            var blob = Path.Combine(repo, "blobs", hashes[f]);
            if (!File.Exists(blob)) File.Copy(f, blob);
            var rel = Path.GetRelativePath(folder, f);
            var link = Path.Combine(repo, "snapshots", commit, rel);
            Directory.CreateDirectory(Path.GetDirectoryName(link)!);
            File.CreateSymbolicLink(link, Path.GetRelativePath(Path.GetDirectoryName(link)!, blob));
        }
        var refFile = Path.Combine(repo, "refs", revision);
        Directory.CreateDirectory(Path.GetDirectoryName(refFile)!);
        File.WriteAllText(refFile, commit);
        return commit;
    }
}
