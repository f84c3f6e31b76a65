using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Spectre.Console;
using Spm.Cli.Rendering;
using Spm.Core;
using Spm.Core.Atlas;

namespace Spm.Cli.Commands;

/// <summary>
/// <c>spm atlas</c>: hierarchical community detection on graphs (cluster), generated hierarchical SBMs (hsbm), the
/// bottom-up versus top-down benchmark (sweep, bench), and concept atlases of a model's prompts (build, show; in
/// <see cref="AtlasConceptCommands"/>).
/// </summary>
internal static class AtlasCommand
{
    public static Command Create(CliConsole console)
    {
        var cmd = new Command("atlas", "Concept atlas: bottom-up hierarchical community detection on graphs and on a model's concepts.");
        cmd.Subcommands.Add(Cluster(console));
        cmd.Subcommands.Add(Hsbm(console));
        cmd.Subcommands.Add(Sweep(console));
        cmd.Subcommands.Add(Bench(console));
        cmd.Subcommands.Add(AtlasConceptCommands.Build(console));
        cmd.Subcommands.Add(AtlasConceptCommands.Show(console));
        return cmd;
    }

    private static Command Cluster(CliConsole cli)
    {
        var graph = new Option<string>("--graph") { Description = "Edge list CSV with the header source,target,weight (weight optional); nodes are integers from 0.", Required = true };
        var depth = new Option<int>("--depth") { Description = "Levels to write: level1 the coarsest split, levelD the finest communities.", Required = true }.InRange(1, 32);
        var method = MethodOption();
        var linkage = LinkageOption();
        var communities = new Option<int?>("--communities") { Description = "Number of finest communities (bottom-up). Default: estimated (see --count-method)." }.InRange(1, int.MaxValue);
        var countMethod = CountMethodOption();
        var noStop = new Option<bool>("--split-to-depth") { Description = "Top-down: split every group down to --depth, without the Bethe-Hessian 'no structure left' stopping rule." };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the eigensolver and k-means (same seed, same labels).", DefaultValueFactory = _ => 0 };
        var output = new Option<string>("--out") { Description = "Labels CSV to write: node,level1,...,levelD.", Required = true };
        var force = new Option<bool>("--force") { Description = "Overwrite --out." };
        var cmd = new Command("cluster", "Find a hierarchy of communities in a graph and write each node's community at every level.")
        {
            graph, depth, method, linkage, communities, countMethod, noStop, seed, output, force,
        };
        cmd.SetAction(async (parse, ct) =>
        {
            var outPath = parse.GetValue(output)!;
            if (File.Exists(outPath) && !parse.GetValue(force)) throw new IOException($"'{outPath}' already exists (use --force to overwrite).");
            var g = AtlasCsv.ReadEdges(parse.GetValue(graph)!);
            int d = parse.GetValue(depth);
            var spectral = new SpectralOptions(Seed: parse.GetValue(seed));
            var m = ParseMethod(parse.GetValue(method)!);
            var sw = Stopwatch.StartNew();
            var result = await Task.Run(() => m == HierarchyMethod.BottomUp
                ? BottomUpClustering.Run(g, new BottomUpOptions(parse.GetValue(communities), ParseCountMethod(parse.GetValue(countMethod)!), Linkage: ParseLinkage(parse.GetValue(linkage)!), Spectral: spectral), Log(cli), ct)
                : TopDownClustering.Run(g, new TopDownOptions(d, StopWhenNoStructure: !parse.GetValue(noStop), Spectral: spectral), Log(cli), ct), ct);
            var levels = result.Levels(d);
            AtlasCsv.WriteLabels(outPath, levels);
            var console = cli.Output;
            console.WriteLine(FormattableString.Invariant($"{g.NodeCount} nodes, {g.EdgeCount} edges: {result.CommunityCount} finest communities by {parse.GetValue(method)} in {sw.Elapsed.TotalSeconds:0.00} s; dendrogram inversions: {result.Tree.CountInversions()}"));
            for (int l = 0; l < d; l++)
                console.WriteLine($"level{l + 1}: {levels[l].Max() + 1} communities, sizes {string.Join(' ', levels[l].GroupBy(x => x).Select(x => x.Count()).OrderByDescending(x => x))}");
            console.WriteLine($"wrote {outPath}");
            return ExitCodes.Ok;
        });
        return cmd;
    }

    private static Command Hsbm(CliConsole cli)
    {
        var depth = new Option<int>("--depth") { Description = "Tree depth d (2^d bottom communities).", DefaultValueFactory = _ => 3 }.InRange(1, 12);
        var blockSize = new Option<int>("--block-size") { Description = "Nodes per bottom community.", DefaultValueFactory = _ => 100 }.InRange(1, 1_000_000);
        var probabilities = new Option<string?>("--probabilities") { Description = "d+1 edge probabilities, comma-separated: nodes splitting at the root first, same bottom community last." };
        var coefficients = new Option<string?>("--coefficients") { Description = "Instead of --probabilities: d+1 coefficients a_k of p_k = a_k log(n)/n." };
        var graphs = new Option<int>("--graphs") { Description = "Graphs to draw (seeds SEED, SEED+1, ...).", DefaultValueFactory = _ => 1 }.InRange(1, 10_000);
        var seed = new Option<ulong>("--seed") { Description = "Seed of the first graph.", DefaultValueFactory = _ => 0 };
        var outDir = new Option<string>("--out-dir") { Description = "Folder for NAME-i.edges.csv (source,target,weight) and NAME-i.labels.csv (node,level1,...,leveld).", Required = true };
        var name = new Option<string>("--name") { Description = "File name prefix.", DefaultValueFactory = _ => "hsbm" };
        var force = new Option<bool>("--force") { Description = "Overwrite existing files." };
        var cmd = new Command("hsbm", "Generate hierarchical stochastic block model graphs with their true labels.")
        {
            depth, blockSize, probabilities, coefficients, graphs, seed, outDir, name, force,
        };
        cmd.SetAction(parse =>
        {
            int d = parse.GetValue(depth), size = parse.GetValue(blockSize);
            int n = size << d;
            var probs = ProbabilitiesFrom(parse.GetValue(probabilities), parse.GetValue(coefficients), d, n);
            var dir = parse.GetValue(outDir)!;
            Directory.CreateDirectory(dir);
            var console = cli.Output;
            for (int i = 0; i < parse.GetValue(graphs); i++)
            {
                var cfg = new HsbmConfig(d, [size], probs, parse.GetValue(seed) + (ulong)i);
                var sample = HsbmGenerator.Generate(cfg);
                var stem = Path.Combine(dir, $"{parse.GetValue(name)}-{i}");
                bool overwrite = parse.GetValue(force);
                AtlasCsv.WriteEdges(stem + ".edges.csv", sample.Graph, overwrite);
                AtlasCsv.WriteLabels(stem + ".labels.csv", sample.Levels, overwrite);
                console.WriteLine(FormattableString.Invariant($"{stem}.edges.csv: {sample.Graph.NodeCount} nodes, {sample.Graph.EdgeCount} edges (seed {cfg.Seed}); labels in {stem}.labels.csv"));
            }
            console.WriteLine("probabilities (root split first): " + string.Join(", ", probs.Select(p => p.ToString("0.#####", CultureInfo.InvariantCulture))));
            return ExitCodes.Ok;
        });
        return cmd;
    }

    private static Command Sweep(CliConsole cli)
    {
        var depth = new Option<int>("--depth") { Description = "Tree depth (2^depth bottom communities).", DefaultValueFactory = _ => 3 }.InRange(1, 8);
        var blockSize = new Option<int>("--block-size") { Description = "Nodes per bottom community.", DefaultValueFactory = _ => 100 }.InRange(2, 100_000);
        var shape = new Option<string>("--shape") { Description = "depth+1 coefficients c_k: p_k = SNR · c_k · log(n)/n, root split first.", DefaultValueFactory = _ => "1,1.25,1.5,10" };
        var snr = new Option<string>("--snr") { Description = "Comma-separated signal-to-noise multipliers.", DefaultValueFactory = _ => "1,1.5,2,2.5,3,4,5" };
        var graphs = new Option<int>("--graphs") { Description = "Graphs per point.", DefaultValueFactory = _ => 20 }.InRange(1, 10_000);
        var seed = new Option<ulong>("--seed") { Description = "Base seed.", DefaultValueFactory = _ => 1 };
        var linkage = LinkageOption();
        var output = new Option<string?>("--out") { Description = "Also write the table (Markdown) to this file." };
        var cmd = new Command("sweep", "Bottom-up against top-down on generated hierarchical SBMs: exact-recovery rates per SNR (both methods on the same graphs).")
        {
            depth, blockSize, shape, snr, graphs, seed, linkage, output,
        };
        cmd.SetAction(async (parse, ct) =>
        {
            int d = parse.GetValue(depth);
            var config = new HsbmSweepConfig(d, parse.GetValue(blockSize), ParseList(parse.GetValue(shape)!, "--shape", d + 1),
                ParseList(parse.GetValue(snr)!, "--snr", null), parse.GetValue(graphs), parse.GetValue(seed), ParseLinkage(parse.GetValue(linkage)!));
            int total = config.Snrs.Count * config.GraphsPerPoint;
            var points = await ProgressBars.RunAsync(cli, "sweep", total, "graph", bar =>
                Task.Run(() => HsbmSweep.Run(config, new ActionProgress<(int Done, int Total)>(p => bar.Report(new ProgressUpdate(p.Done))), ct), ct));
            var table = AtlasRendering.SweepTable(config, points);
            cli.Out.Write(table);
            if (parse.GetValue(output) is { } path) Spm.Core.IO.AtomicFile.WriteAllText(path, table);
            return ExitCodes.Ok;
        });
        return cmd;
    }

    private static Command Bench(CliConsole cli)
    {
        var nodes = new Option<string>("--nodes") { Description = "Comma-separated graph sizes.", DefaultValueFactory = _ => "1000,3000,10000" };
        var depth = new Option<int>("--depth") { Description = "Tree depth of the generated graphs.", DefaultValueFactory = _ => 3 }.InRange(1, 8);
        var shape = new Option<string>("--coefficients") { Description = "depth+1 coefficients a_k of p_k = a_k log(n)/n.", DefaultValueFactory = _ => "2,3,4,40" };
        var seed = new Option<ulong>("--seed") { DefaultValueFactory = _ => 1, Description = "Seed of the graphs and solvers." };
        var cmd = new Command("bench", "Time bottom-up and top-down on generated hierarchical SBMs of growing size.") { nodes, depth, shape, seed };
        cmd.SetAction((parse, ct) =>
        {
            int d = parse.GetValue(depth);
            var coef = ParseList(parse.GetValue(shape)!, "--coefficients", d + 1);
            var console = cli.Output;
            var table = new Table().AddColumns("nodes", "edges", "generate s", "bottom-up s", "estimate K s", "top-down s", "bottom-up levels exact", "top-down levels exact");
            foreach (var n in ParseList(parse.GetValue(nodes)!, "--nodes", null).Select(x => (int)x))
            {
                int size = Math.Max(1, n >> d);
                var sw = Stopwatch.StartNew();
                var sample = HsbmGenerator.Generate(new HsbmConfig(d, [size], HsbmConfig.LogDegree(size << d, coef), parse.GetValue(seed)));
                double gen = sw.Elapsed.TotalSeconds;
                var spectral = new SpectralOptions(Seed: parse.GetValue(seed));
                sw.Restart();
                var up = BottomUpClustering.Run(sample.Graph, new BottomUpOptions(1 << d, Spectral: spectral), null, ct.Value());
                double tUp = sw.Elapsed.TotalSeconds;
                sw.Restart();
                int k = SpectralClustering.EstimateCommunityCount(sample.Graph, CommunityCountMethod.BetheHessian, 64, parse.GetValue(seed), ct.Value());
                double tK = sw.Elapsed.TotalSeconds;
                sw.Restart();
                var down = TopDownClustering.Run(sample.Graph, new TopDownOptions(d, MinSize: 1, StopWhenNoStructure: false, Spectral: spectral), null, ct.Value());
                double tDown = sw.Elapsed.TotalSeconds;
                table.AddRow(sample.Graph.NodeCount.ToString(CultureInfo.InvariantCulture), sample.Graph.EdgeCount.ToString(CultureInfo.InvariantCulture),
                    Sec(gen), Sec(tUp), Sec(tK) + $" (K={k})", Sec(tDown), Exact(sample, up, d), Exact(sample, down, d));
            }
            console.Write(table);
            return Task.FromResult(ExitCodes.Ok);
        });
        return cmd;
    }

    private static CancellationToken Value(this CancellationToken ct) => ct;

    private static string Sec(double s) => s.ToString("0.00", CultureInfo.InvariantCulture);

    private static string Exact(HsbmSample truth, HierarchyResult found, int d)
    {
        var levels = found.Levels(d);
        return $"{Enumerable.Range(0, d).Count(l => Partitions.Same(truth.Levels[l], levels[l]))}/{d}";
    }

    private static IProgress<string> Log(CliConsole cli) => new SyncProgress(line => cli.Error.WriteLine("spm: " + line));

    /// <summary>Reports on the caller's thread (Progress&lt;T&gt; would post to the thread pool and reorder lines).</summary>
    private sealed class SyncProgress(Action<string> report) : IProgress<string>
    {
        public void Report(string value) => report(value);
    }

    internal static Option<string> MethodOption()
    {
        var o = new Option<string>("--method") { Description = "bottom-up (finest communities, then linkage) or top-down (recursive bisection).", DefaultValueFactory = _ => "bottom-up" };
        o.AcceptOnlyFromAmong("bottom-up", "top-down");
        return o;
    }

    internal static Option<string> LinkageOption()
    {
        var o = new Option<string>("--linkage") { Description = "How groups of communities are compared when merging: average (edge density between them), single (closest pair) or complete (farthest pair).", DefaultValueFactory = _ => "average" };
        o.AcceptOnlyFromAmong("average", "single", "complete");
        return o;
    }

    internal static Option<string> CountMethodOption()
    {
        var o = new Option<string>("--count-method") { Description = "How the number of finest communities is estimated without --communities: auto (bethe-hessian on unweighted graphs, eigengap on weighted), bethe-hessian or eigengap.", DefaultValueFactory = _ => "auto" };
        o.AcceptOnlyFromAmong("auto", "bethe-hessian", "eigengap");
        return o;
    }

    internal static HierarchyMethod ParseMethod(string s) => s == "top-down" ? HierarchyMethod.TopDown : HierarchyMethod.BottomUp;

    internal static Linkage ParseLinkage(string s) => s switch { "single" => Linkage.Single, "complete" => Linkage.Complete, _ => Linkage.Average };

    internal static CommunityCountMethod ParseCountMethod(string s) => s switch
    {
        "bethe-hessian" => CommunityCountMethod.BetheHessian,
        "eigengap" => CommunityCountMethod.Eigengap,
        _ => CommunityCountMethod.Auto,
    };

    internal static double[] ParseList(string text, string option, int? count)
    {
        var parts = text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        var values = new double[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!double.TryParse(parts[i], NumberStyles.Float, CultureInfo.InvariantCulture, out values[i]) || !double.IsFinite(values[i]) || values[i] < 0)
                throw new SpmException($"{option} must be comma-separated non-negative numbers, got '{parts[i]}'.");
        if (values.Length == 0) throw new SpmException($"{option} needs at least one number.");
        if (count is { } c && values.Length != c) throw new SpmException($"{option} needs {c} numbers (one per level, root split first), got {values.Length}.");
        return values;
    }

    private static double[] ProbabilitiesFrom(string? probabilities, string? coefficients, int depth, int n)
    {
        if ((probabilities is null) == (coefficients is null)) throw new SpmException("give the edge probabilities: --probabilities P0,...,Pd or --coefficients A0,...,Ad.");
        var probs = probabilities is not null
            ? ParseList(probabilities, "--probabilities", depth + 1)
            : HsbmConfig.LogDegree(n, ParseList(coefficients!, "--coefficients", depth + 1));
        if (probs.Any(p => p > 1)) throw new SpmException("--probabilities must be in [0, 1].");
        return probs;
    }
}
