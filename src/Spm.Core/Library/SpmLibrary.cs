using System.Security.Cryptography;
using System.Text.Json;
using Spm.Core.IO;
using Spm.Core.Membranes;

namespace Spm.Core.Library;

/// <summary>
/// A concept library: a folder of SPM files with one JSON index (<see cref="IndexFileName"/>) recording each SPM's
/// concept, prompts, file, SHA-256, rank, alpha, base model, gate calibration and version. The index is written
/// atomically (<see cref="AtomicFile"/>), and every change re-reads it under a lock file, so concurrent
/// <see cref="Add"/>s (threads or processes) do not lose entries.
/// </summary>
public sealed class SpmLibrary
{
    /// <summary>The index file's name inside the library folder.</summary>
    public const string IndexFileName = "library.json";

    /// <summary>The lock file's name inside the library folder (held while the index is read, changed and written).</summary>
    public const string LockFileName = ".library.lock";

    /// <summary>The index's <c>format</c> value.</summary>
    public const string FormatName = "spm-library";

    /// <summary>The index layout's version this code writes and reads.</summary>
    public const int FormatVersion = 1;

    /// <summary>Gate calibration recorded for an SPM whose file holds a learned gate probe.</summary>
    public const string LearnedCalibration = "learned";

    /// <summary>Gate calibration recorded for an SPM without a probe (raw or empty-prompt calibrated cosine).</summary>
    public const string CosineCalibration = "cosine";

    private static readonly JsonSerializerOptions JsonOptions = new() { WriteIndented = true };
    private static readonly TimeSpan LockTimeout = TimeSpan.FromSeconds(30);

    private SpmLibrary(string directory, LibraryIndex index)
    {
        Directory = directory;
        Index = index;
    }

    /// <summary>The library folder (full path).</summary>
    public string Directory { get; }

    /// <summary>The index file's path.</summary>
    public string IndexPath => Path.Combine(Directory, IndexFileName);

    /// <summary>The index as last read or written by this instance.</summary>
    public LibraryIndex Index { get; private set; }

    /// <summary>The SPMs, in the order they were added.</summary>
    public IReadOnlyList<LibraryEntry> Entries => Index.Entries;

    /// <summary>Creates an empty library in <paramref name="directory"/> (created if missing).</summary>
    /// <exception cref="SpmException">The folder already holds a library index.</exception>
    public static SpmLibrary Init(string directory)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        var dir = Path.GetFullPath(directory);
        System.IO.Directory.CreateDirectory(dir);
        var lib = new SpmLibrary(dir, new LibraryIndex(FormatName, FormatVersion, []));
        using (lib.AcquireLock())
        {
            if (File.Exists(lib.IndexPath))
                throw new SpmException($"'{lib.IndexPath}' already exists: '{dir}' is already a library.");
            lib.WriteIndex(lib.Index);
        }
        return lib;
    }

    /// <summary>Opens the library in <paramref name="directory"/>.</summary>
    /// <exception cref="SpmInputNotFoundException">The folder or its index does not exist.</exception>
    /// <exception cref="SpmFormatException">The index is not a valid library index.</exception>
    public static SpmLibrary Open(string directory)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        var dir = Path.GetFullPath(directory);
        if (!System.IO.Directory.Exists(dir)) throw new SpmInputNotFoundException(dir, "library folder");
        var indexPath = Path.Combine(dir, IndexFileName);
        if (!File.Exists(indexPath))
            throw new SpmInputNotFoundException(indexPath, "library index", "create the library with 'spm library init'.");
        return new SpmLibrary(dir, ReadIndex(indexPath));
    }

    /// <summary>The entry for <paramref name="concept"/> (case-insensitive), or null.</summary>
    public LibraryEntry? Find(string concept) =>
        Entries.FirstOrDefault(e => string.Equals(e.Concept, concept, StringComparison.OrdinalIgnoreCase));

    /// <summary>
    /// Merges every SPM of the library into one (<see cref="SpmMerge"/>): exactly when <paramref name="rankBudget"/> is
    /// null (ranks concatenated, gates kept per concept), else compressed per layer by truncated SVD to that rank.
    /// Each file is checked against its recorded SHA-256 first.
    /// </summary>
    /// <exception cref="SpmException">The library is empty, or a file is missing, changed since it was added, or does not load.</exception>
    public MergeResult Merge(int? rankBudget = null, CancellationToken cancellationToken = default)
    {
        Index = ReadIndex(IndexPath);
        if (Entries.Count == 0) throw new SpmException($"Library '{Directory}' is empty: nothing to merge.");
        var components = new List<MergeComponent>();
        foreach (var e in Entries)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var path = PathOf(e);
            if (!File.Exists(path)) throw new SpmInputNotFoundException(path, $"SPM file of library concept '{e.Concept}'");
            var bytes = File.ReadAllBytes(path);
            var sha = Convert.ToHexStringLower(SHA256.HashData(bytes));
            if (!string.Equals(sha, e.Sha256, StringComparison.OrdinalIgnoreCase))
                throw new SpmFormatException(path, null, $"SHA-256 {sha} does not match the library index ({e.Sha256}) for concept '{e.Concept}': the file changed since it was added (add it again, or run 'spm library verify').");
            components.Add(new MergeComponent(e.Concept, SpmFile.Load(path), e.Sha256));
        }
        return rankBudget is { } r ? SpmMerge.Compressed(components, r, cancellationToken) : SpmMerge.Exact(components);
    }

    /// <summary>
    /// How library <paramref name="to"/> differs from <paramref name="from"/>, by concept (case-insensitive): concepts
    /// added, removed, and changed in any recorded field but the file's name (SHA-256, version, rank, alpha, prompts,
    /// base model, gate calibration, training settings, referenced). Added and changed concepts follow
    /// <paramref name="to"/>'s order, removed ones <paramref name="from"/>'s.
    /// </summary>
    public static IReadOnlyList<LibraryChange> Diff(SpmLibrary from, SpmLibrary to)
    {
        ArgumentNullException.ThrowIfNull(from);
        ArgumentNullException.ThrowIfNull(to);
        var changes = new List<LibraryChange>();
        foreach (var e in from.Entries)
            if (to.Find(e.Concept) is null) changes.Add(new LibraryChange(e.Concept, LibraryChangeKind.Removed, e, null, []));
        foreach (var e in to.Entries)
        {
            var old = from.Find(e.Concept);
            if (old is null) { changes.Add(new LibraryChange(e.Concept, LibraryChangeKind.Added, null, e, [])); continue; }
            var fields = new List<LibraryFieldChange>();
            void Compare(string field, string? a, string? b)
            {
                if (!string.Equals(a, b, StringComparison.Ordinal)) fields.Add(new LibraryFieldChange(field, a ?? "-", b ?? "-"));
            }
            string I(int v) => v.ToString(System.Globalization.CultureInfo.InvariantCulture);
            string F(float v) => v.ToString("R", System.Globalization.CultureInfo.InvariantCulture);
            Compare("sha256", old.Sha256.ToLowerInvariant(), e.Sha256.ToLowerInvariant());
            Compare("version", I(old.Version), I(e.Version));
            Compare("rank", I(old.Rank), I(e.Rank));
            Compare("alpha", F(old.Alpha), F(e.Alpha));
            Compare("prompts", string.Join(", ", old.Prompts), string.Join(", ", e.Prompts));
            Compare("base_model", old.BaseModel, e.BaseModel);
            Compare("model_family", old.ModelFamily, e.ModelFamily);
            Compare("gate_calibration", old.GateCalibration, e.GateCalibration);
            Compare("training", old.Training, e.Training);
            Compare("referenced", old.Referenced ? "true" : "false", e.Referenced ? "true" : "false");
            if (fields.Count > 0) changes.Add(new LibraryChange(e.Concept, LibraryChangeKind.Changed, old, e, fields));
        }
        return changes;
    }

    /// <summary>The full path of an entry's file.</summary>
    public string PathOf(LibraryEntry entry)
    {
        ArgumentNullException.ThrowIfNull(entry);
        return Path.GetFullPath(Path.Combine(Directory, entry.File));
    }

    /// <summary>
    /// Adds the SPM file <paramref name="spmPath"/>: loads it (it must be a valid SPM), hashes it, and copies it into
    /// the folder (or, with <paramref name="reference"/>, records its full path without copying).
    /// </summary>
    /// <param name="spmPath">The SPM file.</param>
    /// <param name="concept">The concept it erases; default its first prompt.</param>
    /// <param name="replace">
    /// Replace an entry of the same concept (its version goes up by one and the old entry goes to
    /// <see cref="LibraryIndex.History"/>); false refuses instead. A file with the same SHA-256 as the entry changes nothing.
    /// </param>
    /// <param name="reference">Record the file where it is instead of copying it into the folder.</param>
    /// <returns>The new entry.</returns>
    /// <exception cref="SpmInputNotFoundException"><paramref name="spmPath"/> does not exist.</exception>
    /// <exception cref="SpmFormatException">The file is not a valid SPM file, or the index is broken.</exception>
    /// <exception cref="SpmException">The concept is already in the library (without <paramref name="replace"/>), or the file name is taken.</exception>
    public LibraryEntry Add(string spmPath, string? concept = null, bool replace = true, bool reference = false)
    {
        ArgumentException.ThrowIfNullOrEmpty(spmPath);
        var source = Path.GetFullPath(spmPath);
        if (!File.Exists(source)) throw new SpmInputNotFoundException(source, "SPM file");
        var adapter = SpmFile.Load(source);
        var extra = adapter.Config.Extra;
        concept ??= adapter.Config.Prompts.FirstOrDefault(p => !string.IsNullOrWhiteSpace(p));
        if (string.IsNullOrWhiteSpace(concept))
            throw new SpmException($"'{source}' has no prompt to name its concept: give the concept explicitly (--concept).");
        concept = concept.Trim();
        var bytes = File.ReadAllBytes(source);
        var sha = Convert.ToHexStringLower(SHA256.HashData(bytes));

        using var _ = AcquireLock();
        var index = ReadIndex(IndexPath);
        var entries = index.Entries.ToList();
        int at = entries.FindIndex(e => string.Equals(e.Concept, concept, StringComparison.OrdinalIgnoreCase));
        if (at >= 0 && !replace)
            throw new SpmException($"Library '{Directory}' already has concept '{entries[at].Concept}' (file '{entries[at].File}', v{entries[at].Version}) and replacing was refused (--no-replace).");
        var old = at >= 0 ? entries[at] : null;
        // The same bytes again (and recorded the same way) change nothing: no new version.
        if (old is not null && string.Equals(old.Sha256, sha, StringComparison.OrdinalIgnoreCase) && old.Referenced == reference
            && (!reference || string.Equals(old.File, source, StringComparison.Ordinal)))
        {
            Index = index;
            return old;
        }

        string file;
        if (reference)
        {
            file = source;
        }
        else
        {
            file = Path.GetFileName(source);
            if (string.Equals(file, IndexFileName, StringComparison.OrdinalIgnoreCase) || string.Equals(file, LockFileName, StringComparison.OrdinalIgnoreCase))
                throw new SpmException($"'{source}': the file name '{file}' is reserved by the library; rename the file.");
            var target = Path.Combine(Directory, file);
            var owner = entries.FirstOrDefault(e => e != old && !e.Referenced && string.Equals(e.File, file, StringComparison.OrdinalIgnoreCase));
            if (owner is not null)
                throw new SpmException($"'{source}': the library already holds a file named '{file}' (concept '{owner.Concept}'); rename the file.");
            bool ownedByOld = old is { Referenced: false } && string.Equals(old.File, file, StringComparison.OrdinalIgnoreCase);
            if (!string.Equals(target, source, StringComparison.Ordinal))
            {
                if (File.Exists(target) && !ownedByOld)
                    throw new SpmException($"'{target}' already exists in the library folder and is not in its index; move it away or rename '{source}'.");
                AtomicFile.WriteAllBytes(target, bytes);
            }
        }

        var entry = new LibraryEntry(concept, adapter.Config.Prompts.ToArray(), file, sha, adapter.Config.Rank, adapter.Config.Alpha,
            extra.GetValueOrDefault(SpmMetadataKeys.BaseModel),
            extra.ContainsKey(SpmMetadataKeys.GateProbe) ? LearnedCalibration : CosineCalibration,
            (old?.Version ?? 0) + 1, reference, extra.GetValueOrDefault(SpmMetadataKeys.Training), SpmModelFamily.Of(adapter));
        if (at >= 0) entries[at] = entry; else entries.Add(entry);
        // The replaced entry is kept in the history (its file is deleted below unless referenced): what was erased, when
        // at which version, stays on record.
        var next = index with { Entries = entries, History = old is null ? index.History : [.. index.History ?? [], old] };
        WriteIndex(next);
        if (old is { Referenced: false } && !string.Equals(old.File, entry.File, StringComparison.OrdinalIgnoreCase))
            TryDelete(PathOf(old));
        Index = next;
        return entry;
    }

    /// <summary>Removes the entry of <paramref name="concept"/>; its copied file is deleted unless <paramref name="keepFile"/> (a referenced file is never deleted).</summary>
    /// <returns>The removed entry.</returns>
    /// <exception cref="SpmException">The library has no such concept.</exception>
    public LibraryEntry Remove(string concept, bool keepFile = false)
    {
        ArgumentException.ThrowIfNullOrEmpty(concept);
        using var _ = AcquireLock();
        var index = ReadIndex(IndexPath);
        var entries = index.Entries.ToList();
        int at = entries.FindIndex(e => string.Equals(e.Concept, concept.Trim(), StringComparison.OrdinalIgnoreCase));
        if (at < 0)
            throw new SpmException($"Library '{Directory}' has no concept '{concept}' (it has: {(entries.Count == 0 ? "none" : string.Join(", ", entries.Select(e => e.Concept)))}).");
        var removed = entries[at];
        entries.RemoveAt(at);
        var next = index with { Entries = entries };
        WriteIndex(next);
        if (!keepFile && !removed.Referenced) TryDelete(PathOf(removed));
        Index = next;
        return removed;
    }

    /// <summary>
    /// Checks every entry: its file exists, its SHA-256 matches the index, it loads with <see cref="SpmFile.Load"/>, and
    /// its prompts, rank and alpha are those recorded; concepts are unique. Each problem names the file.
    /// </summary>
    /// <returns>The problems found (empty when the library is sound).</returns>
    public IReadOnlyList<LibraryProblem> Verify()
    {
        Index = ReadIndex(IndexPath);
        var problems = new List<LibraryProblem>();
        var seen = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        foreach (var e in Entries)
        {
            var path = PathOf(e);
            void Problem(string what) => problems.Add(new LibraryProblem(e.Concept, e.File, $"'{path}' (concept '{e.Concept}'): {what}"));
            if (!seen.Add(e.Concept)) Problem("the concept is listed more than once in the index.");
            if (!File.Exists(path)) { Problem("file missing."); continue; }
            string actual;
            using (var s = File.OpenRead(path)) actual = Convert.ToHexStringLower(SHA256.HashData(s));
            if (!string.Equals(actual, e.Sha256, StringComparison.OrdinalIgnoreCase))
                Problem($"SHA-256 {actual} does not match the index ({e.Sha256}): the file changed since it was added (add it again with --replace).");
            SpmAdapter adapter;
            try { adapter = SpmFile.Load(path); }
            catch (SpmException ex) { Problem($"does not load: {(ex is SpmFormatException f ? f.Detail : ex.Message)}"); continue; }
            if (adapter.Config.Rank != e.Rank) Problem($"rank {adapter.Config.Rank} in the file, {e.Rank} in the index.");
            if (adapter.Config.Alpha != e.Alpha) Problem($"alpha {adapter.Config.Alpha} in the file, {e.Alpha} in the index.");
            if (!adapter.Config.Prompts.SequenceEqual(e.Prompts)) Problem("its prompts differ from the index's.");
        }
        return problems;
    }

    private static LibraryIndex ReadIndex(string indexPath)
    {
        LibraryIndex? index;
        try
        {
            using var s = new FileStream(indexPath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            index = JsonSerializer.Deserialize<LibraryIndex>(s, JsonOptions);
        }
        catch (FileNotFoundException) { throw new SpmInputNotFoundException(indexPath, "library index"); }
        catch (JsonException ex) { throw new SpmFormatException(indexPath, null, $"not a library index: {ex.Message}", ex); }
        if (index is null || index.Entries is null)
            throw new SpmFormatException(indexPath, "entries", "not a library index: no 'entries' list.");
        if (index.Format != FormatName)
            throw new SpmFormatException(indexPath, "format", $"'{index.Format}' is not '{FormatName}'.");
        if (index.FormatVersion > FormatVersion)
            throw new SpmFormatException(indexPath, "format_version", $"version {index.FormatVersion} is newer than this spm reads ({FormatVersion}); update spm.");
        foreach (var e in index.Entries)
            if (e is null || string.IsNullOrWhiteSpace(e.Concept) || string.IsNullOrWhiteSpace(e.File) || e.Sha256 is null || e.Prompts is null)
                throw new SpmFormatException(indexPath, "entries", "an entry lacks its concept, file, sha256 or prompts.");
        return index;
    }

    private void WriteIndex(LibraryIndex index) =>
        AtomicFile.WriteAllText(IndexPath, JsonSerializer.Serialize(index, JsonOptions) + "\n");

    private FileStream AcquireLock()
    {
        var path = Path.Combine(Directory, LockFileName);
        var deadline = DateTime.UtcNow + LockTimeout;
        while (true)
        {
            try { return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None); }
            catch (IOException) when (DateTime.UtcNow < deadline) { Thread.Sleep(Random.Shared.Next(5, 25)); }
            catch (IOException ex) { throw new SpmException($"Library '{Directory}' is locked by another process ('{path}' held for over {LockTimeout.TotalSeconds:0} s).", ex); }
        }
    }

    private static void TryDelete(string path)
    {
        try { File.Delete(path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
