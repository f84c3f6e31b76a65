using System.Globalization;
using System.Text;
using Spm.Core.IO;

namespace Spm.Core.Atlas;

/// <summary>
/// The atlas's two CSV formats. Edge lists: header <c>source,target,weight</c> (or <c>source,target</c>, weight 1),
/// one undirected edge per line, nodes integers from 0. Labels: header <c>node,level1,...,levelD</c>, one row per
/// node, level1 the coarsest partition and levelD the finest, integer labels (only the partition matters).
/// Every parse error names the file and the line.
/// </summary>
public static class AtlasCsv
{
    /// <summary>Reads an edge list; the node count is the largest id + 1.</summary>
    /// <exception cref="SpmInputNotFoundException">The file does not exist.</exception>
    /// <exception cref="SpmFormatException">Bad header, a non-integer or negative node, a bad or non-positive weight, a wrong column count.</exception>
    public static WeightedGraph ReadEdges(string path)
    {
        var lines = ReadLines(path, "edge list");
        if (lines.Length == 0 || lines[0].Trim().Length == 0)
            throw new SpmFormatException(path, "line 1", "empty file; expected the header 'source,target,weight' (weight optional).");
        var header = SplitTrim(lines[0]);
        bool weighted = header.SequenceEqual(["source", "target", "weight"]);
        if (!weighted && !header.SequenceEqual(["source", "target"]))
            throw new SpmFormatException(path, "line 1", $"bad header '{lines[0].Trim()}'; expected 'source,target,weight' or 'source,target'.");
        var edges = new List<WeightedEdge>();
        int max = -1;
        for (int i = 1; i < lines.Length; i++)
        {
            if (lines[i].Trim().Length == 0) continue;
            var f = SplitTrim(lines[i]);
            string where = $"line {i + 1}";
            if (f.Length != header.Length)
                throw new SpmFormatException(path, where, $"expected {header.Length} fields ({string.Join(',', header)}), got {f.Length}.");
            int s = ParseNode(path, where, "source", f[0]), t = ParseNode(path, where, "target", f[1]);
            double w = 1;
            if (weighted)
            {
                if (!double.TryParse(f[2], NumberStyles.Float, CultureInfo.InvariantCulture, out w) || !double.IsFinite(w))
                    throw new SpmFormatException(path, where, $"weight '{f[2]}' is not a number.");
                if (w < 0) throw new SpmFormatException(path, where, $"weight {f[2]} is negative; weights must be positive.");
                if (w == 0) continue; // a zero weight is no edge
            }
            max = Math.Max(max, Math.Max(s, t));
            edges.Add(new WeightedEdge(s, t, w));
        }
        if (max < 0) throw new SpmFormatException(path, null, "no edges.");
        return WeightedGraph.FromEdges(max + 1, edges);
    }

    /// <summary>Writes <paramref name="graph"/> as <c>source,target,weight</c> (each edge once, source &lt; target), atomically.</summary>
    public static void WriteEdges(string path, WeightedGraph graph, bool overwrite = true)
    {
        ArgumentNullException.ThrowIfNull(graph);
        var sb = new StringBuilder("source,target,weight\n");
        foreach (var e in graph.Edges())
            sb.Append(e.Source).Append(',').Append(e.Target).Append(',').Append(e.Weight.ToString("R", CultureInfo.InvariantCulture)).Append('\n');
        AtomicFile.WriteAllText(path, sb.ToString(), overwrite);
    }

    /// <summary>Writes labels: <c>node,level1,...,levelD</c>, one row per node.</summary>
    /// <param name="path">The output file.</param>
    /// <param name="levels">levels[l][node] is the label of node at level l+1 (level 1 coarsest); all of one length.</param>
    /// <param name="overwrite">Replace an existing file.</param>
    public static void WriteLabels(string path, IReadOnlyList<int[]> levels, bool overwrite = true)
    {
        ArgumentNullException.ThrowIfNull(levels);
        if (levels.Count == 0) throw new ArgumentException("At least one level is needed.", nameof(levels));
        int n = levels[0].Length;
        if (levels.Any(l => l.Length != n)) throw new ArgumentException("Every level must label every node.", nameof(levels));
        AtomicFile.WriteAllText(path, FormatLabels(levels), overwrite);
    }

    /// <summary>The text of a labels file (see <see cref="WriteLabels"/>).</summary>
    public static string FormatLabels(IReadOnlyList<int[]> levels)
    {
        ArgumentNullException.ThrowIfNull(levels);
        var sb = new StringBuilder("node");
        for (int l = 1; l <= levels.Count; l++) sb.Append(",level").Append(l);
        sb.Append('\n');
        int n = levels.Count == 0 ? 0 : levels[0].Length;
        for (int i = 0; i < n; i++)
        {
            sb.Append(i);
            foreach (var level in levels) sb.Append(',').Append(level[i]);
            sb.Append('\n');
        }
        return sb.ToString();
    }

    /// <summary>Reads a labels file: levels[l][node], level 1 first. Rows may come in any order but must cover 0..n-1 once.</summary>
    /// <exception cref="SpmInputNotFoundException">The file does not exist.</exception>
    /// <exception cref="SpmFormatException">Bad header, non-integer values, missing or repeated nodes.</exception>
    public static int[][] ReadLabels(string path)
    {
        var lines = ReadLines(path, "labels file");
        if (lines.Length == 0) throw new SpmFormatException(path, "line 1", "empty file; expected the header 'node,level1,...,levelD'.");
        var header = SplitTrim(lines[0]);
        bool ok = header.Length >= 2 && header[0] == "node";
        for (int l = 1; ok && l < header.Length; l++) ok = header[l] == $"level{l}";
        if (!ok) throw new SpmFormatException(path, "line 1", $"bad header '{lines[0].Trim()}'; expected 'node,level1,...,levelD'.");
        int depth = header.Length - 1;
        var rows = new Dictionary<int, int[]>();
        for (int i = 1; i < lines.Length; i++)
        {
            if (lines[i].Trim().Length == 0) continue;
            var f = SplitTrim(lines[i]);
            string where = $"line {i + 1}";
            if (f.Length != header.Length) throw new SpmFormatException(path, where, $"expected {header.Length} fields, got {f.Length}.");
            int node = ParseNode(path, where, "node", f[0]);
            var labels = new int[depth];
            for (int l = 0; l < depth; l++)
                if (!int.TryParse(f[l + 1], NumberStyles.Integer, CultureInfo.InvariantCulture, out labels[l]))
                    throw new SpmFormatException(path, where, $"level{l + 1} label '{f[l + 1]}' is not an integer.");
            if (!rows.TryAdd(node, labels)) throw new SpmFormatException(path, where, $"node {node} appears twice.");
        }
        int n = rows.Count;
        for (int i = 0; i < n; i++)
            if (!rows.ContainsKey(i)) throw new SpmFormatException(path, null, $"node {i} has no row (nodes must be 0..{n - 1}).");
        var levels = new int[depth][];
        for (int l = 0; l < depth; l++)
        {
            levels[l] = new int[n];
            for (int i = 0; i < n; i++) levels[l][i] = rows[i][l];
        }
        return levels;
    }

    private static string[] ReadLines(string path, string what)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path)) throw new SpmInputNotFoundException(path, what);
        return File.ReadAllLines(path);
    }

    private static string[] SplitTrim(string line) => line.Split(',').Select(s => s.Trim()).ToArray();

    private static int ParseNode(string path, string where, string column, string text)
    {
        if (!int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int v))
            throw new SpmFormatException(path, where, $"{column} '{text}' is not an integer node id.");
        if (v < 0) throw new SpmFormatException(path, where, $"{column} {v} is negative; node ids start at 0.");
        return v;
    }
}
