namespace Spm.Diffusion.Onnx;

/// <summary>
/// Path resolution that follows symbolic links the way the operating system does, so that a file reference
/// from an untrusted model can be checked to stay inside the model's folder.
/// </summary>
internal static class SafePaths
{
    private const int MaxLinkHops = 40;

    /// <summary>
    /// The canonical path of <paramref name="path"/>: absolute, every symbolic link in every component resolved,
    /// <c>.</c> and <c>..</c> applied after resolution (as the kernel does). Components that do not exist are kept as written.
    /// </summary>
    /// <exception cref="IOException">Too many links (a loop).</exception>
    public static string RealPath(string path)
    {
        var full = Path.GetFullPath(path);
        var root = Path.GetPathRoot(full) ?? "/";
        var pending = new List<string>(Split(full[root.Length..]));
        pending.Reverse(); // used as a stack: the next component is at the end
        var current = root;
        int hops = 0;
        while (pending.Count > 0)
        {
            var part = pending[^1];
            pending.RemoveAt(pending.Count - 1);
            if (part == ".") continue;
            if (part == "..")
            {
                // current has no links left in it, so its lexical parent is its real parent.
                current = Path.GetDirectoryName(current) ?? current;
                continue;
            }
            var next = Path.Combine(current, part);
            string? target = LinkTarget(next);
            if (target is null)
            {
                current = next;
                continue;
            }
            if (++hops > MaxLinkHops) throw new IOException($"Too many symbolic links while resolving '{path}'.");
            // Resolve the link's target component by component, starting from the link's folder (or the root).
            if (Path.IsPathRooted(target))
            {
                var targetRoot = Path.GetPathRoot(target) ?? "/";
                current = targetRoot;
                target = target[targetRoot.Length..];
            }
            var parts = Split(target);
            for (int i = parts.Length - 1; i >= 0; i--) pending.Add(parts[i]);
        }
        return current;
    }

    /// <summary>True when <paramref name="candidate"/> is <paramref name="folder"/> itself or lies below it (both canonical).</summary>
    public static bool IsInside(string folder, string candidate)
    {
        var comparison = OperatingSystem.IsWindows() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal;
        var f = Path.TrimEndingDirectorySeparator(folder);
        if (string.Equals(f, candidate, comparison)) return true;
        return candidate.StartsWith(f + Path.DirectorySeparatorChar, comparison)
            || (Path.AltDirectorySeparatorChar != Path.DirectorySeparatorChar && candidate.StartsWith(f + Path.AltDirectorySeparatorChar, comparison));
    }

    // Only the platform's separators: on Unix a backslash is an ordinary file-name character.
    private static string[] Split(string relative) =>
        relative.Split([Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar], StringSplitOptions.RemoveEmptyEntries);

    private static string? LinkTarget(string path)
    {
        try
        {
            FileSystemInfo info = Directory.Exists(path) ? new DirectoryInfo(path) : new FileInfo(path);
            return info.LinkTarget;
        }
        catch (IOException) { return null; }
        catch (UnauthorizedAccessException) { return null; }
    }
}
