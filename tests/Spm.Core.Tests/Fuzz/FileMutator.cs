using System.Buffers.Binary;
using System.Text;
using System.Text.RegularExpressions;
using Spm.Core.Randomness;
using Spm.Tests.Common;

namespace Spm.Core.Tests.Fuzz;

/// <summary>
/// Seeded mutations of safetensors files: byte-level damage (truncation, bit flips, insertions, deletions, hostile
/// length prefixes) and header-level damage (hostile numbers, shapes, dtypes, strings, deep nesting, duplicate keys)
/// after which the length prefix is rewritten so the damage reaches the JSON parser and the layout checks.
/// </summary>
internal sealed partial class FileMutator : SeededMutator
{
    private readonly SeededRandom _rng;

    public FileMutator(SeededRandom rng) : base(rng) => _rng = rng;

    private static readonly string[] HostileNumbers =
    {
        "-1", "0", "1", "7", "-9223372036854775808", "9223372036854775807", "9223372036854775808", "18446744073709551615",
        "18446744073709551616", "4294967296", "4294967295", "2147483648", "1e400", "1.5", "-0", "1E2", "00", "99999999999999999999999999999",
        "NaN", "null", "true", "\"3\"", "[]", "{}",
    };

    private static readonly string[] HostileShapes =
    {
        "[4294967296,4294967296]", "[9223372036854775807,2]", "[3037000500,3037000500]", "[0,9223372036854775807]",
        "[9223372036854775807,9223372036854775807,0]", "[-1]", "[]", "[0]", "[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]",
        "[2305843009213693952]", "[1152921504606846976,8]", "[1,2,3", "[[1]]", "{}", "\"[1]\"",
    };

    private static readonly string[] HostileStrings =
    {
        "F16", "BF16", "F64", "I64", "BOOL", "U8", "F8_E4M3", "f32", "F128", "", "__metadata__", "dtype", "shape", "data_offsets",
        "\\ud800", "\\u0000", "\\\"", "x\\ny", "é", "lora_down.weight", ".alpha", "prompts", "rank", "alpha",
    };



    protected override (byte[] Bytes, string Description) MutateOnce(byte[] f)
    {
        int kind = _rng.NextInt(0, 12);
        switch (kind)
        {
            case 0: { int at = Pos(f, headerBias: true); return (f[..at], $"truncate@{at}"); }
            case 1:
            {
                var c = (byte[])f.Clone();
                int flips = 1 + _rng.NextInt(0, 8);
                for (int i = 0; i < flips && c.Length > 0; i++) { int at = Pos(c, true) % c.Length; c[at] ^= (byte)(1 << _rng.NextInt(0, 8)); }
                return (c, $"flip x{flips}");
            }
            case 2:
            {
                int at = Pos(f, true);
                var ins = new byte[1 + _rng.NextInt(0, 16)];
                for (int i = 0; i < ins.Length; i++) ins[i] = (byte)_rng.NextInt(0, 256);
                return ([.. f[..at], .. ins, .. f[at..]], $"insert {ins.Length}@{at}");
            }
            case 3:
            {
                if (f.Length == 0) return (f, "noop");
                int at = Pos(f, true) % f.Length;
                int len = Math.Min(f.Length - at, 1 + _rng.NextInt(0, 32));
                return ([.. f[..at], .. f[(at + len)..]], $"delete {len}@{at}");
            }
            case 4:
            {
                if (f.Length < 8) return (f, "noop");
                var c = (byte[])f.Clone();
                ulong[] lengths = { ulong.MaxValue, ulong.MaxValue - 7, 1UL << 63, (1UL << 63) - 1, 1UL << 32, (ulong)f.Length, (ulong)f.Length - 8, (ulong)f.Length - 7, 0, 1, 2, 100L << 20 };
                ulong v = _rng.NextInt(0, 3) == 0 ? _rng.NextUInt64() : lengths[_rng.NextInt(0, lengths.Length)];
                BinaryPrimitives.WriteUInt64LittleEndian(c, v);
                return (c, $"length={v}");
            }
            default: return MutateHeader(f, kind);
        }
    }

    /// <summary>A position, biased 80% towards the header and the first bytes of data, where parsers live.</summary>
    private int Pos(byte[] f, bool headerBias)
    {
        if (f.Length == 0) return 0;
        int headerEnd = HeaderEnd(f);
        if (headerBias && headerEnd > 0 && _rng.NextDouble() < 0.8) return _rng.NextInt(0, Math.Min(f.Length, headerEnd + 16) + 1) % (f.Length + 1);
        return _rng.NextInt(0, f.Length + 1);
    }

    private static int HeaderEnd(byte[] f)
    {
        if (f.Length < 8) return 0;
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(f);
        return n <= (ulong)(f.Length - 8) ? (int)n + 8 : 0;
    }

    private (byte[], string) MutateHeader(byte[] f, int kind)
    {
        int end = HeaderEnd(f);
        if (end == 0) return (f, "noop(no header)");
        var header = Encoding.UTF8.GetString(f, 8, end - 8);
        var data = f[end..];
        string desc;
        switch (kind)
        {
            case 5:
            {
                var nums = NumberRegex().Matches(header);
                if (nums.Count == 0) return (f, "noop");
                var m = nums[_rng.NextInt(0, nums.Count)];
                var repl = _rng.NextInt(0, 4) == 0 ? nums[_rng.NextInt(0, nums.Count)].Value : HostileNumbers[_rng.NextInt(0, HostileNumbers.Length)];
                header = header[..m.Index] + repl + header[(m.Index + m.Length)..];
                desc = $"number {m.Value}->{repl}";
                break;
            }
            case 6:
            {
                var shapes = ShapeRegex().Matches(header);
                if (shapes.Count == 0) return (f, "noop");
                var m = shapes[_rng.NextInt(0, shapes.Count)];
                var repl = HostileShapes[_rng.NextInt(0, HostileShapes.Length)];
                header = header[..m.Groups[1].Index] + repl + header[(m.Groups[1].Index + m.Groups[1].Length)..];
                desc = $"shape->{repl}";
                break;
            }
            case 7:
            {
                var strs = StringContents(header);
                if (strs.Count == 0) return (f, "noop");
                var (start, length) = strs[_rng.NextInt(0, strs.Count)];
                // Another string of the same header (duplicate keys, swapped dtypes) or a hostile one.
                string repl;
                if (_rng.NextInt(0, 3) == 0) { var (s2, l2) = strs[_rng.NextInt(0, strs.Count)]; repl = header.Substring(s2, l2); }
                else repl = HostileStrings[_rng.NextInt(0, HostileStrings.Length)];
                desc = $"string {header.Substring(start, length)}->{repl}";
                header = header[..start] + repl + header[(start + length)..];
                break;
            }
            case 8:
            {
                int colon = NthIndexOf(header, ':', _rng.NextInt(0, 1 + header.Length / 16));
                if (colon < 0) return (f, "noop");
                var nest = Nests[_rng.NextInt(0, Nests.Length)];
                header = header[..(colon + 1)] + nest + "," + header[(colon + 1)..];
                desc = $"nest of {nest.Length} chars";
                break;
            }
            case 9:
            {
                // Duplicate one tensor entry verbatim, or the metadata object.
                var entries = EntryRegex().Matches(header);
                if (entries.Count == 0) return (f, "noop");
                var m = entries[_rng.NextInt(0, entries.Count)];
                int at = header.LastIndexOf('}');
                if (at < 0) return (f, "noop");
                header = header[..at] + "," + m.Value + header[at..];
                desc = "duplicate entry";
                break;
            }
            case 10:
            {
                const string chars = ",:{}[]\" \\0-e.";
                int at = _rng.NextInt(0, header.Length + 1);
                var c = chars[_rng.NextInt(0, chars.Length)];
                header = _rng.NextInt(0, 2) == 0 || header.Length == 0 ? header.Insert(at, c.ToString()) : header.Remove(Math.Min(at, header.Length - 1), 1);
                desc = $"structural '{c}'@{at}";
                break;
            }
            default:
            {
                // Remove a tensor entry (gap or leftover bytes) or the data's last bytes while keeping the header.
                var entries = EntryRegex().Matches(header);
                if (entries.Count > 0 && _rng.NextInt(0, 2) == 0)
                {
                    var m = entries[_rng.NextInt(0, entries.Count)];
                    header = header.Remove(m.Index, m.Length);
                    header = header.Replace(",,", ",").Replace("{,", "{").Replace(",}", "}");
                    desc = "remove entry";
                }
                else
                {
                    int cut = Math.Min(data.Length, 1 + _rng.NextInt(0, 8));
                    data = data[..^cut];
                    desc = $"short data -{cut}";
                }
                break;
            }
        }
        var hb = Encoding.UTF8.GetBytes(header);
        if (_rng.NextInt(0, 2) == 0)
        {
            int pad = (8 - hb.Length % 8) % 8;
            hb = [.. hb, .. Enumerable.Repeat((byte)' ', pad)];
        }
        var result = new byte[8 + hb.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(result, (ulong)hb.Length);
        hb.CopyTo(result, 8);
        data.CopyTo(result, 8 + hb.Length);
        return (result, desc);
    }

    /// <summary>Deeply nested arrays and objects, built once.</summary>
    private static readonly string[] Nests = new[] { 2, 3, 5, 100, 20_000 }
        .SelectMany(d => new[] { new string('[', d) + "1" + new string(']', d), string.Concat(Enumerable.Repeat("{\"a\":", d)) + "1" + new string('}', d) })
        .ToArray();

    /// <summary>(start, length) of the contents of every JSON string literal, scanning escapes.</summary>
    private static List<(int Start, int Length)> StringContents(string s)
    {
        var list = new List<(int, int)>();
        for (int i = 0; i < s.Length; i++)
        {
            if (s[i] != '"') continue;
            int j = i + 1;
            while (j < s.Length && s[j] != '"') j += s[j] == '\\' ? 2 : 1;
            if (j >= s.Length) break;
            list.Add((i + 1, j - i - 1));
            i = j;
        }
        return list;
    }

    /// <summary>The position of the n-th occurrence of c (wrapping around), or -1.</summary>
    private static int NthIndexOf(string s, char c, int n)
    {
        int count = 0;
        foreach (var ch in s) if (ch == c) count++;
        if (count == 0) return -1;
        n %= count;
        for (int i = 0; i < s.Length; i++) if (s[i] == c && n-- == 0) return i;
        return -1;
    }

    [GeneratedRegex(@"-?\d+")] private static partial Regex NumberRegex();
    [GeneratedRegex(@"""shape"":(\[[^\]]*\])")] private static partial Regex ShapeRegex();
    [GeneratedRegex(@"""(?:[^""\\]|\\.)*"":\{[^{}]*\}")] private static partial Regex EntryRegex();
}
