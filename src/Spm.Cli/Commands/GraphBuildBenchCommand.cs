using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Spm.Benchmarks;
using Spm.Cli.Rendering;
using Spm.Diffusion.Pipelines;

namespace Spm.Cli.Commands;

/// <summary>
/// <c>spm bench graph-build</c>: the one-time gradient-graph build (probe, builder, session) three ways in alternating
/// rounds: the baseline (no per-model tuning, no cache), cold (tuned, optimized graph stored) and warm (loaded from the
/// cache); medians of wall and process CPU time, as ratios to the baseline.
/// </summary>
internal static class GraphBuildBenchCommand
{
    public static Command Create(CliConsole console)
    {
        var model = new Option<string?>("--model") { Description = CliGlobals.ModelHelp };
        var rounds = new Option<int>("--rounds") { Description = "Measured rounds (each builds the graph once per variant).", DefaultValueFactory = _ => 5 }.InRange(1, 1000);
        var rank = new Option<int>("--rank") { Description = "Membrane rank on every transformer layer.", DefaultValueFactory = _ => 1 }.InRange(1);
        var threads = new Option<int>("--threads") { Description = "Intra-op threads (0 = ONNX Runtime's choice).", DefaultValueFactory = _ => 2 }.InRange(0);
        var json = new Option<bool>("--json") { Description = "Print one JSON object." };
        var cmd = new Command("graph-build", "The gradient graph's one-time build: baseline vs tuned (cold cache) vs cached (warm), CPU and wall.")
        {
            model, rounds, rank, threads, json,
        };
        cmd.SetAction(async (parse, ct) =>
        {
            var folder = DefaultModel.Resolve(parse.GetValue(model));
            var options = new GraphBuildBenchmarkOptions(Rounds: parse.GetValue(rounds), Rank: parse.GetValue(rank), Threads: parse.GetValue(threads));
            var r = await ProgressBars.RunAsync(console, "bench graph-build", options.Rounds + 1, "round",
                bar => Task.Run(() => GraphBuildBenchmark.Run(folder, options, new ActionProgress<int>(i => bar.Report(new ProgressUpdate(i + 1))), ct), ct));
            if (parse.GetValue(json))
            {
                console.Out.WriteLine(JsonSerializer.Serialize(r, new JsonSerializerOptions { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower }));
                return 0;
            }
            var c = CultureInfo.InvariantCulture;
            var baseline = r.Variants[0];
            console.Out.WriteLine(string.Create(c, $"gradient-graph build ({r.Nodes} nodes), medians of {options.Rounds} alternating rounds, {options.Threads} threads, load average {r.LoadBefore:F1} -> {r.LoadAfter:F1}"));
            foreach (var v in r.Variants)
                console.Out.WriteLine(string.Create(c,
                    $"  {v.Name,-9} wall {v.WallMs,8:F0} ms ({v.WallMs / baseline.WallMs:F2}x)   cpu {v.CpuMs,8:F0} ms ({v.CpuMs / baseline.CpuMs:F2}x)   cpu per round: {string.Join(' ', v.CpuRunsMs.Select(x => x.ToString("F0", c)))}"));
            return 0;
        });
        return cmd;
    }
}
