using System.Diagnostics;
using System.Globalization;
using System.Text;
using Spm.Core;
using Spm.Core.Randomness;

namespace Spm.Tests.Common;

/// <summary>
/// Seeded mutations of text config files (JSON, YAML): byte damage (truncation, flips, insertions, deletions, copies,
/// invalid UTF-8, BOM, NUL), structural damage (a known key's value replaced by a hostile number, a wrong type, a huge
/// string or nesting tens of thousands deep; duplicated keys; anchors and aliases) — and the loop that feeds each case
/// to a loader and checks that it loads or fails with <see cref="SpmFormatException"/> naming the file (and the field,
/// when it names one) in a short message, within a CPU bound.
/// </summary>
internal sealed class TextFuzz : SeededMutator
{
    /// <summary>Cases per suite: <c>SPM_FUZZ_CASES</c> (default <paramref name="fallback"/>).</summary>
    public static int Cases(int fallback)
        => int.TryParse(Environment.GetEnvironmentVariable("SPM_FUZZ_CASES"), NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) && n > 0 ? n : fallback;

    /// <summary>Base seed: <c>SPM_FUZZ_SEED</c> (default fixed, so CI runs are reproducible).</summary>
    public static ulong Seed(ulong fallback)
        => ulong.TryParse(Environment.GetEnvironmentVariable("SPM_FUZZ_SEED"), NumberStyles.Integer, CultureInfo.InvariantCulture, out var s) ? s : fallback;

    /// <summary>A hang guard, not a performance target: no case may use more CPU than this.</summary>
    public static readonly TimeSpan CaseCpuLimit = TimeSpan.FromSeconds(5);

    /// <summary>Longest accepted error message beyond the file path: one readable line, not the file echoed back.</summary>
    public const int MaxMessageChars = 600;

    private static readonly string[] HostileValues =
    [
        "-1", "0", "1", "2", "0.5", "-0", "1e400", "-1e400", "1e-400", "NaN", "Infinity", "-Infinity", ".inf", ".nan",
        "9223372036854775807", "9223372036854775808", "18446744073709551616", "2147483648", "-2147483649", "4096", "65536",
        "99999999999999999999999999999999999999", "1.7976931348623157e308", "1_000", "0x10", "1,5", "00012",
        "true", "false", "null", "~", "\"\"", "\"x\"", "\"1\"", "\"true\"", "[]", "{}", "[1,2,3]", "[\"a\",\"b\"]", "{\"a\":1}",
        "[[1]]", "[null]", "\"\\ud800\"", "\"\\u0000\"", "\"a\\\"b\"", "'single'", "!!binary AAAA", "*undefined", "&a x",
        "\"CrossAttnDownBlock2D\"", "\"DownBlock2D\"", "\"scaled_linear\"", "\"squaredcos_cap_v2\"", "\"v_prediction\"", "erase", "erase_with_la",
    ];

    private static readonly string[] Tokens =
    [
        "{", "}", "[", "]", "\"", ":", ",", "-", "\n", " ", "\t", "&a ", "*a", "!!str ", "#", "'", "\\", "\0", "0", "9", "e", "E", "+",
        ".", "null", "true", "? ", "|", ">", "%YAML 1.2\n", "---\n", "...\n", "\r", "\u00e9", "\ufeff", "- ", "<<: *a\n",
    ];

    private readonly SeededRandom _rng;
    private readonly string[] _keys;

    /// <param name="rng">The generator of the whole run.</param>
    /// <param name="keys">Field names of the format, for value replacement and duplication.</param>
    public TextFuzz(SeededRandom rng, string[] keys) : base(rng)
    {
        _rng = rng;
        _keys = keys;
    }



    private int Pos(int length) => length == 0 ? 0 : _rng.NextInt(0, length + 1);

    private T Pick<T>(IReadOnlyList<T> items) => items[_rng.NextInt(0, items.Count)];

    protected override (byte[] Bytes, string Description) MutateOnce(byte[] f)
    {
        switch (_rng.NextInt(0, 13))
        {
            case 0:
            {
                int at = Pos(f.Length);
                return (f[..at], $"truncate at {at}");
            }
            case 1:
            {
                if (f.Length == 0) goto case 2;
                var c = (byte[])f.Clone();
                int at = _rng.NextInt(0, f.Length);
                c[at] = (byte)_rng.NextInt(0, 256);
                return (c, $"byte {at} = {c[at]}");
            }
            case 2:
            {
                var t = Pick(Tokens);
                int at = Pos(f.Length);
                return (Insert(f, at, Encoding.UTF8.GetBytes(t)), $"insert {Show(t)} at {at}");
            }
            case 3:
            {
                int at = Pos(f.Length), len = Math.Min(f.Length - at, 1 + _rng.NextInt(0, 40));
                return ([.. f[..at], .. f[(at + len)..]], $"delete {len} at {at}");
            }
            case 4:
            {
                if (f.Length < 2) goto case 2;
                int from = _rng.NextInt(0, f.Length - 1), len = Math.Min(f.Length - from, 1 + _rng.NextInt(0, 80));
                int at = Pos(f.Length);
                return (Insert(f, at, f[from..(from + len)]), $"copy {len} from {from} to {at}");
            }
            case 5:
            case 6:
            case 7:
                return ReplaceValue(f, Pick(HostileValues));
            case 8:
            {
                int depth = Pick(new[] { 64, 65, 200, 5_000, 100_000 });
                bool yamlBlock = _rng.NextInt(0, 4) == 0;
                bool array = _rng.NextInt(0, 2) == 0;
                string nest = yamlBlock
                    ? string.Concat(Enumerable.Range(0, Math.Min(depth, 3000)).Select(i => "\n" + new string(' ', i + 1) + "- "))
                    : array ? new string('[', depth) : string.Concat(Enumerable.Repeat("{\"a\":", depth));
                if (!yamlBlock && _rng.NextInt(0, 2) == 0) nest += new string(array ? ']' : '}', depth);
                return ReplaceValue(f, nest, $"nesting {depth}{(yamlBlock ? " (block)" : "")}");
            }
            case 9:
            {
                int len = Pick(new[] { 1_000, 100_000, 900_000 });
                var s = "\"" + new string(Pick(new[] { 'a', '9', ' ' }), len) + "\"";
                return ReplaceValue(f, s, $"string of {len}");
            }
            case 10:
            {
                var key = Pick(_keys);
                var line = Encoding.UTF8.GetBytes($"\"{key}\": {Pick(HostileValues)},\n");
                int brace = Array.IndexOf(f, (byte)'{');
                int at = brace >= 0 ? brace + 1 : 0;
                if (brace < 0) line = Encoding.UTF8.GetBytes($"{key}: {Pick(HostileValues)}\n");
                return (Insert(f, at, line), $"duplicate key {key}");
            }
            case 11:
            {
                byte[][] junk = [[0xFF], [0xC3], [0xED, 0xA0, 0x80], [0xEF, 0xBB, 0xBF], [0], [0xF4, 0x90, 0x80, 0x80]];
                var j = Pick(junk);
                int at = Pos(f.Length);
                return (Insert(f, at, j), $"bytes {Convert.ToHexString(j)} at {at}");
            }
            default:
            {
                // YAML anchors and aliases (a "billion laughs" in miniature), harmless text for JSON readers.
                var bomb = "&a [x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c]";
                return ReplaceValue(f, bomb, "alias bomb");
            }
        }
    }

    /// <summary>Replaces the value after a known key (JSON <c>"key": v</c> or YAML <c>key: v</c>) up to the next separator.</summary>
    private (byte[], string) ReplaceValue(byte[] f, string value, string? label = null)
    {
        var text = Encoding.UTF8.GetString(f);
        var key = Pick(_keys);
        int k = text.IndexOf(key, StringComparison.Ordinal);
        int colon = k < 0 ? -1 : text.IndexOf(':', k + key.Length);
        if (colon < 0)
        {
            int at = Pos(f.Length);
            return (Insert(f, at, Encoding.UTF8.GetBytes(value)), $"insert {label ?? Show(value)} at {at}");
        }
        int start = colon + 1, end = start;
        int depth = 0;
        while (end < text.Length)
        {
            char c = text[end];
            if (c is '[' or '{') depth++;
            else if (c is ']' or '}') { if (depth == 0) break; depth--; }
            else if ((c is ',' && depth == 0) || c == '\n') break;
            end++;
        }
        var result = text[..start] + " " + value + text[end..];
        return (Encoding.UTF8.GetBytes(result), $"{key} = {label ?? Show(value)}");
    }

    private static byte[] Insert(byte[] f, int at, byte[] what) => [.. f[..at], .. what, .. f[at..]];

    private static string Show(string s) => s.Length > 40 ? s[..40] + "..." : s.Replace("\n", "\\n").Replace("\0", "\\0");

    // ------------------------------------------------------------------ the loop

    /// <summary>Counts and failures of one suite.</summary>
    public sealed class Report(string name)
    {
        private readonly Stopwatch _total = Stopwatch.StartNew();
        private readonly TimeSpan _cpuAtStart = Process.GetCurrentProcess().TotalProcessorTime;

        public int Accepted, Rejected;
        public TimeSpan MaxCaseCpu;
        public int LongestMessage;
        public readonly List<string> Failures = [];

        public void Fail(int i, string description, string why)
        {
            if (Failures.Count < 20) Failures.Add($"case {i} [{description}]: {why}");
            else if (Failures.Count == 20) Failures.Add("...");
        }

        public string Summary(int cases)
            => $"{name}: {cases} cases in {_total.Elapsed.TotalSeconds:F1} s ({(Process.GetCurrentProcess().TotalProcessorTime - _cpuAtStart).TotalSeconds:F1} s CPU), {Accepted} accepted, {Rejected} rejected with SpmFormatException, "
             + $"longest message {LongestMessage} chars, slowest case {MaxCaseCpu.TotalMilliseconds:F1} ms CPU, failures {Failures.Count}";
    }

    /// <summary>
    /// Runs one case: <paramref name="load"/> must return or throw <see cref="SpmFormatException"/> whose message names
    /// <paramref name="file"/> (and its key when it has one) within <see cref="MaxMessageChars"/> beyond the path.
    /// </summary>
    public static void Check(Report report, int i, string description, string file, Action load)
    {
        var process = Process.GetCurrentProcess();
        var cpu = process.TotalProcessorTime;
        try
        {
            load();
            report.Accepted++;
        }
        catch (SpmFormatException ex)
        {
            report.Rejected++;
            int extra = ex.Message.Length - (ex.FilePath?.Length ?? 0);
            report.LongestMessage = Math.Max(report.LongestMessage, extra);
            if (ex.FilePath is null || !ex.Message.Contains(file, StringComparison.Ordinal))
                report.Fail(i, description, $"message does not name the file: {Trim(ex.Message)}");
            else if (ex.Key is not null && !ex.Message.Contains(ex.Key.Length > 100 ? ex.Key[..100] : ex.Key, StringComparison.Ordinal))
                report.Fail(i, description, $"message does not name the key '{ex.Key}': {Trim(ex.Message)}");
            else if (extra > MaxMessageChars)
                report.Fail(i, description, $"message of {ex.Message.Length} chars: {Trim(ex.Message)}");
        }
        catch (Exception ex)
        {
            report.Fail(i, description, $"{ex.GetType().Name}: {Trim(ex.Message)}");
        }
        process.Refresh();
        var used = process.TotalProcessorTime - cpu;
        if (used > report.MaxCaseCpu) report.MaxCaseCpu = used;
        if (used > CaseCpuLimit) report.Fail(i, description, $"took {used.TotalSeconds:F1} s of CPU");
    }

    private static string Trim(string s) => s.Length > 300 ? s[..300] + "..." : s;
}
