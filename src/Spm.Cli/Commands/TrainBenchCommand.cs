using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Spm.Cli.Rendering;
using Spm.Diffusion.Pipelines;
using Spm.Diffusion.Runtime;
using Spm.Training.LatentAnchoring;

namespace Spm.Cli.Commands;

/// <summary>
/// <c>spm bench train</c>: real latent-anchoring iterations on a model, with the time per iteration split into
/// sampling x, frozen calls, trainable forward + backward and the optimizer, and it/s. The baseline measured in the
/// same run is the frozen call (one forward of the same UNet on the same latents): forward + backward is reported as
/// a ratio to it per batch row, and sampling as guided calls.
/// </summary>
internal static class TrainBenchCommand
{
    public static Command Create(CliConsole console)
    {
        var model = new Option<string?>("--model") { Description = CliGlobals.ModelHelp };
        var iterations = new Option<int>("--iterations") { Description = "Measured training iterations (after the gradient graph is built).", DefaultValueFactory = _ => 10 };
        var resolution = new Option<int>("--resolution") { Description = "Nominal resolution; sizes are drawn as in training unless --fixed-resolution.", DefaultValueFactory = _ => 256 };
        var fixedSize = new Option<bool>("--fixed-resolution") { Description = "Always train at the nominal resolution." };
        var anchors = new Option<int>("--anchors") { Description = "Anchors per iteration.", DefaultValueFactory = _ => 4 };
        var rank = new Option<int>("--rank") { Description = "Membrane rank.", DefaultValueFactory = _ => 1 };
        var seed = new Option<ulong>("--seed") { Description = "Random seed (k and sizes are drawn from it).", DefaultValueFactory = _ => 1UL };
        var threads = new Option<int>("--threads") { Description = "Intra-op threads (0 = ONNX Runtime's choice).", DefaultValueFactory = _ => 0 };
        var json = new Option<bool>("--json") { Description = "Print one JSON object." };
        var graphCache = new GraphCacheOption();
        var cmd = new Command("train", "Latent-anchoring training: time per iteration by phase (sampling x, frozen, forward+backward, optimizer) and it/s.")
        {
            model, iterations, resolution, fixedSize, anchors, rank, seed, threads, json, graphCache.Folder, graphCache.Off,
        };
        cmd.SetAction(async (parse, ct) =>
        {
            var folder = DefaultModel.Resolve(parse.GetValue(model));
            InputChecks.ImageSide(Spm.Diffusion.Pipelines.ModelFolder.Open(folder), "--resolution", parse.GetValue(resolution));
            int n = parse.GetValue(iterations);
            if (n < 1) throw new ArgumentException($"--iterations must be at least 1 (got {n}).");
            var options = new LatentAnchoringOptions
            {
                Concept = "a photo of a cat",
                Iterations = n + 1, // the first iteration builds the gradient graph and warms the sessions up: not measured
                Resolution = parse.GetValue(resolution),
                DynamicResolution = !parse.GetValue(fixedSize),
                AnchorCount = parse.GetValue(anchors),
                Rank = parse.GetValue(rank),
                Seed = parse.GetValue(seed),
                CheckpointEvery = 0,
            };
            var runtime = new OnnxRuntimeOptions { IntraOpThreads = parse.GetValue(threads), OptimizedModelCacheFolder = graphCache.Resolve(parse) };
            var dir = Directory.CreateTempSubdirectory("spm-bench-train").FullName;
            TrainingResult result;
            TimeSpan bare;
            try
            {
                using var trainer = LatentAnchoringTrainer.Create(folder, options, runtime);
                result = await ProgressBars.RunAsync(console, "bench train", n + 1, "it",
                    bar => trainer.TrainAsync(new TrainingOutput(Path.Combine(dir, "bench.safetensors")),
                        new ActionProgress<TrainingProgress>(p => bar.Report(new ProgressUpdate(p.Step))), ct));
                // The lower bound's UNet part: the measured iterations' calls again, as bare ONNX Runtime runs.
                bare = trainer.TimeBareUNetCalls(result.History.Skip(1).Select(h => h.Draw), ct);
            }
            finally
            {
                Directory.Delete(dir, recursive: true);
            }
            var r = TrainBenchReport.From(result, options, bare);
            if (parse.GetValue(json))
            {
                console.Out.WriteLine(JsonSerializer.Serialize(r, new JsonSerializerOptions { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower }));
                return 0;
            }
            var c = CultureInfo.InvariantCulture;
            console.Out.WriteLine(string.Create(c, $"latent-anchoring training on {Path.GetFileName(Path.TrimEndingDirectorySeparator(folder))}: {r.Iterations} iterations, resolution {options.Resolution}{(options.DynamicResolution ? " (sizes drawn)" : "")}, {options.AnchorCount} anchors, mean k {r.MeanK:F1}"));
            console.Out.WriteLine(string.Create(c, $"  per iteration      {r.IterationMs,9:F1} ms   {r.ItPerS:F3} it/s (steady: after a first iteration, which is not counted)"));
            console.Out.WriteLine(string.Create(c, $"  lower bound        {r.LowerBoundMs,9:F1} ms   the same UNet calls as bare ONNX Runtime runs ({r.BareUNetMs:F1} ms) + the measured forward+backward; iteration = {r.IterationToLowerBound:F2}x it"));
            var graphSource = r.GraphFromCache ? "its ONNX Runtime optimized graph read from the cache" : "optimized by ONNX Runtime now";
            console.Out.WriteLine(string.Create(c, $"  gradient graph     {r.GraphBuildMs,9:F1} ms   built once, in the first iteration (apart from the figures above); {graphSource}"));
            console.Out.WriteLine(string.Create(c, $"  sampling x         {r.SamplingMs,9:F1} ms   {Pct(r.SamplingMs, r.IterationMs)}  ({r.SamplingCallMs:F1} ms per guided call of 2 rows, {r.MeanK:F1} calls)"));
            console.Out.WriteLine(string.Create(c, $"  frozen calls       {r.FrozenMs,9:F1} ms   {Pct(r.FrozenMs, r.IterationMs)}  (baseline: one forward of {r.FrozenRows} rows)"));
            console.Out.WriteLine(string.Create(c, $"  forward+backward   {r.ForwardBackwardMs,9:F1} ms   {Pct(r.ForwardBackwardMs, r.IterationMs)}  ({r.TrainableRows} rows; {r.ForwardBackwardPerRowToFrozen:F2}x the frozen forward per row)"));
            console.Out.WriteLine(string.Create(c, $"  optimizer          {r.OptimizerMs,9:F1} ms   {Pct(r.OptimizerMs, r.IterationMs)}"));
            console.Out.WriteLine(string.Create(c, $"  other              {r.OtherMs,9:F1} ms   {Pct(r.OtherMs, r.IterationMs)}  (anchors, targets, copies)"));
            return 0;
        });
        return cmd;
    }

    private static string Pct(double part, double whole) => (whole > 0 ? part / whole : 0).ToString("P1", CultureInfo.InvariantCulture).PadLeft(7);
}

/// <summary>The figures of <c>spm bench train</c>, per iteration, graph building excluded.</summary>
internal sealed record TrainBenchReport(
    int Iterations, double MeanK, double IterationMs, double ItPerS, double SamplingMs, double SamplingCallMs, double FrozenMs,
    int FrozenRows, double ForwardBackwardMs, int TrainableRows, double ForwardBackwardPerRowToFrozen, double OptimizerMs, double OtherMs,
    double GraphBuildMs, bool GraphFromCache, double BareUNetMs, double LowerBoundMs, double IterationToLowerBound)
{
    public static TrainBenchReport From(TrainingResult result, LatentAnchoringOptions options, TimeSpan bareUNetCalls)
    {
        // Timings are cumulative: the difference between the last and the first report leaves out the first iteration,
        // which builds the gradient graph (reported apart) and pays the sessions' first-run costs.
        var first = result.History[0].Timings;
        var last = result.History[^1].Timings;
        int n = Math.Max(1, last.Iterations - first.Iterations);
        double Ms(Func<TrainingTimings, TimeSpan> f) => (f(last) - f(first)).TotalMilliseconds / n;
        double total = Ms(t => t.Total), sampling = Ms(t => t.SamplingX), frozen = Ms(t => t.Frozen);
        double fb = Ms(t => t.ForwardBackward) - Ms(t => t.GraphBuild), opt = Ms(t => t.Optimizer);
        double meanK = (double)(last.SamplingCalls - first.SamplingCalls) / n;
        int anchors = options.Action == TrainingAction.EraseWithAnchoring ? options.AnchorCount : 0;
        int frozenRows = 2 + anchors, trainRows = 1 + anchors;
        double ratio = frozen > 0 ? fb / trainRows / (frozen / frozenRows) : 0;
        double bare = bareUNetCalls.TotalMilliseconds / n, bound = bare + fb;
        return new TrainBenchReport(n, meanK, total, total > 0 ? 1000 / total : 0, sampling, meanK > 0 ? sampling / meanK : 0, frozen, frozenRows,
            fb, trainRows, ratio, opt, Math.Max(0, total - sampling - frozen - fb - opt), last.GraphBuild.TotalMilliseconds,
            last.GraphsFromCache > 0, bare, bound, bound > 0 ? total / bound : 0);
    }
}
