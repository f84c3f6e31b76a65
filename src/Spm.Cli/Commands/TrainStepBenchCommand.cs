using Spm.Benchmarks;
using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Spm.Cli.Rendering;
using Spm.Diffusion.Pipelines;
using Spm.Training.Autodiff;

namespace Spm.Cli.Commands;

/// <summary>
/// <c>spm bench train-step</c>: a membrane training step (forward + backward in one ORT graph) as a ratio to the
/// forward alone of the same membrane-injected UNet, measured in the same run, plus build time and peak memory.
/// </summary>
internal static class TrainStepBenchCommand
{
    public static Command Create(CliConsole console)
    {
        var model = new Option<string?>("--model") { Description = $"Model folder or UNet .onnx. Default: ${DefaultModel.EnvironmentVariable}, else {DefaultModel.RelativePath}." };
        var batch = new Option<int>("--batch") { Description = "UNet batch rows.", DefaultValueFactory = _ => 2 };
        var size = new Option<int>("--latent-size") { Description = "Latent height and width (image size / 8).", DefaultValueFactory = _ => 32 };
        var rank = new Option<int>("--rank") { Description = "Membrane rank on every transformer layer.", DefaultValueFactory = _ => 1 };
        var runs = new Option<int>("--runs") { Description = "Measured runs of each (after one warm-up).", DefaultValueFactory = _ => 5 };
        var threads = new Option<int>("--threads") { Description = "Intra-op threads (0 = ONNX Runtime's choice).", DefaultValueFactory = _ => 0 };
        var json = new Option<bool>("--json") { Description = "Print one JSON object." };
        var cmd = new Command("train-step", "Membrane training step (forward + backward) as a ratio to the forward alone, and peak memory.")
        {
            model, batch, size, rank, runs, threads, json,
        };
        cmd.SetAction(async (parse, ct) =>
        {
            var folder = DefaultModel.Resolve(parse.GetValue(model));
            var options = new TrainStepBenchmarkOptions(parse.GetValue(batch), parse.GetValue(size), parse.GetValue(rank), parse.GetValue(runs),
                new GradientSessionSettings(IntraOpThreads: parse.GetValue(threads)));
            var r = await ProgressBars.RunAsync(console, "bench train-step", options.Runs + 1, "run",
                bar => Task.Run(() => TrainStepBenchmark.Run(folder, options, new ActionProgress<int>(i => bar.Report(new ProgressUpdate(i + 1))), ct), ct));
            if (parse.GetValue(json))
            {
                console.Out.WriteLine(JsonSerializer.Serialize(new
                {
                    batch = options.Batch,
                    latent_size = options.LatentSize,
                    rank = options.Rank,
                    layers = r.Layers,
                    forward_ms = r.ForwardMs,
                    train_step_ms = r.TrainStepMs,
                    ratio = r.Ratio,
                    forward_nodes = r.ForwardNodes,
                    backward_nodes = r.BackwardNodes,
                    build_ms = r.BuildMs,
                    saved_activation_bytes = r.SavedActivationBytes,
                    peak_rss_bytes = r.PeakRssBytes,
                }));
                return 0;
            }
            var c = CultureInfo.InvariantCulture;
            console.Out.WriteLine(string.Create(c, $"train step (forward + backward), batch {options.Batch}, latent {options.LatentSize}x{options.LatentSize}, rank {options.Rank} on {r.Layers} layers"));
            console.Out.WriteLine(string.Create(c, $"  forward alone      {r.ForwardMs,10:F1} ms"));
            console.Out.WriteLine(string.Create(c, $"  forward + backward {r.TrainStepMs,10:F1} ms   ratio {r.Ratio:F2}x (target <= 3x)"));
            console.Out.WriteLine(string.Create(c, $"  graph: {r.ForwardNodes} forward + {r.BackwardNodes} backward nodes, built and opened in {r.BuildMs / 1000:F1} s"));
            console.Out.WriteLine(string.Create(c, $"  saved activations {r.SavedActivationBytes / 1048576.0:F1} MiB, process peak RSS {r.PeakRssBytes / 1048576.0:F0} MiB"));
            return 0;
        });
        return cmd;
    }
}
