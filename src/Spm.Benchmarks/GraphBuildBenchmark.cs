using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;
using Spm.Core.Randomness;
using Spm.Core.Tensors;
using Spm.Diffusion.Membranes;
using Spm.Diffusion.Onnx;
using Spm.Diffusion.Runtime;
using Spm.Training.Autodiff;

namespace Spm.Benchmarks;

/// <summary>Settings of <see cref="GraphBuildBenchmark"/>.</summary>
/// <param name="Rounds">Measured rounds; each builds the graph once per variant, in turn (after one untimed build that fills the warm cache).</param>
/// <param name="Batch">Batch rows of the probe inputs (the trainer's: 1 erasure row + 4 anchors).</param>
/// <param name="LatentSize">Latent height and width of the probe inputs: the trainer probes at the smallest latent that keeps the UNet's deepest level 2x2 (4 on the tiny-sd1 fixture), and the graph does not depend on it.</param>
/// <param name="Rank">Membrane rank on every transformer layer.</param>
/// <param name="Threads">ONNX Runtime intra-op threads (0 = its choice).</param>
public sealed record GraphBuildBenchmarkOptions(int Rounds = 5, int Batch = 5, int LatentSize = 4, int Rank = 1, int Threads = 2);

/// <summary>Medians of one way of building the gradient graph.</summary>
/// <param name="Name">baseline, cold or warm.</param>
/// <param name="WallMs">Median wall time of a build.</param>
/// <param name="CpuMs">Median process CPU time of a build (every thread).</param>
/// <param name="CpuRunsMs">Each round's CPU time, in order.</param>
public sealed record GraphBuildVariant(string Name, double WallMs, double CpuMs, IReadOnlyList<double> CpuRunsMs);

/// <summary>What <see cref="GraphBuildBenchmark"/> measured.</summary>
/// <param name="Variants">Baseline, cold and warm, in that order.</param>
/// <param name="Nodes">Nodes of the gradient graph.</param>
/// <param name="LoadBefore">The 1-minute load average when the run started (Linux; NaN elsewhere).</param>
/// <param name="LoadAfter">The 1-minute load average when it ended.</param>
public sealed record GraphBuildBenchmarkResult(IReadOnlyList<GraphBuildVariant> Variants, int Nodes, double LoadBefore, double LoadAfter);

/// <summary>
/// The one-time build of a membrane gradient graph (shape probe, C# builder, opening the ONNX Runtime session), three
/// ways in alternating rounds of the same process, so load changes hit all alike: the baseline (every session with the
/// run's options, as before issue 19's build work), cold (probe without graph optimization, quantization passes
/// skipped, the optimized graph stored into an empty cache folder) and warm (the optimized graph loaded from the cache).
/// </summary>
public static class GraphBuildBenchmark
{
    /// <summary>Runs the benchmark on the UNet at <paramref name="modelPath"/> (pipeline folder, UNet folder or .onnx).</summary>
    public static GraphBuildBenchmarkResult Run(string modelPath, GraphBuildBenchmarkOptions options, IProgress<int>? progress = null, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        var unet = OnnxModel.Load(modelPath);
        var layers = AdaptableLayerFinder.FindTransformerLayers(unet);
        var rng = new SeededRandom(1);
        var membranes = layers.Select(l =>
        {
            var down = new FloatTensor(MembraneShapes.Down(l, options.Rank));
            var up = new FloatTensor(MembraneShapes.Up(l, options.Rank));
            rng.FillGaussian(down.Span);
            return new LayerMembrane(l.ModulePath, down, up, 1f / options.Rank);
        }).ToList();
        var layout = MembraneLayout.Create(layers, [new MembraneSet("bench", ["bench"], membranes)]);
        int b = options.Batch, s = options.LatentSize;
        var ehsWidth = unet.Graph.Input.First(i => i.Name == "encoder_hidden_states").Type.TensorType.Shape.Dim[2].DimValue;
        var channels = unet.Graph.Input.First(i => i.Name == "sample").Type.TensorType.Shape.Dim[1].DimValue;
        var timestep = TensorSpec.FromValueInfo(unet.Graph.Input.First(i => i.Name == "timestep"), unet.FilePath);
        float[] G(long n) { var a = new float[n]; rng.FillGaussian(a); return a; }
        using var sampleV = OrtValue.CreateTensorValueFromMemory(G(b * channels * s * s), [b, channels, s, s]);
        using var ehsV = OrtValue.CreateTensorValueFromMemory(G(b * 77 * ehsWidth), [b, 77, ehsWidth]);
        using var timestepV = OrtTensors.TimestepInput(500, b, timestep, unet.FilePath);
        var inputs = new Dictionary<string, OrtValue> { ["sample"] = sampleV, ["timestep"] = timestepV, ["encoder_hidden_states"] = ehsV };
        LossTerm[] loss = [LossTerm.MeanSquaredError("out_sample", "target")];

        var root = Directory.CreateTempSubdirectory("spm-bench-graph-build").FullName;
        try
        {
            var warm = Path.Combine(root, "warm");
            var threads = new GradientSessionSettings(IntraOpThreads: options.Threads);
            var variants = new (string Name, Func<GradientSessionSettings> Settings)[]
            {
                ("baseline", () => threads with { SpeedTuning = false }),
                ("cold", () => threads with { OptimizedModelCacheFolder = Path.Combine(root, "cold-" + Guid.NewGuid().ToString("N")) }),
                ("warm", () => threads with { OptimizedModelCacheFolder = warm }),
            };
            var wall = variants.Select(_ => new List<double>()).ToArray();
            var cpu = variants.Select(_ => new List<double>()).ToArray();
            double loadBefore = LoadAverage();
            int nodes = 0;
            using var process = Process.GetCurrentProcess();
            // Round 0 is not timed: it builds only the warm variant, which pays the JIT and ONNX Runtime's first-session
            // costs (the same build path as the others) and fills the warm cache; building the other two there as well
            // would only add time.
            for (int round = 0; round <= options.Rounds; round++)
            {
                for (int v = round == 0 ? variants.Length - 1 : 0; v < variants.Length; v++)
                {
                    cancellation.ThrowIfCancellationRequested();
                    var settings = variants[v].Settings();
                    process.Refresh();
                    var cpu0 = process.TotalProcessorTime;
                    var watch = Stopwatch.StartNew();
                    using (var session = MembraneGradientSession.Create(unet, layout, loss, inputs, settings))
                    {
                        watch.Stop();
                        process.Refresh();
                        nodes = session.Graph.Model.Graph.Node.Count;
                        if (round > 0)
                        {
                            wall[v].Add(watch.Elapsed.TotalMilliseconds);
                            cpu[v].Add((process.TotalProcessorTime - cpu0).TotalMilliseconds);
                        }
                    }
                    if (settings.OptimizedModelCacheFolder is { } folder && folder != warm) Directory.Delete(folder, recursive: true);
                }
                progress?.Report(round);
            }
            var result = variants.Select((x, v) => new GraphBuildVariant(x.Name, Median(wall[v]), Median(cpu[v]), cpu[v])).ToList();
            return new GraphBuildBenchmarkResult(result, nodes, loadBefore, LoadAverage());
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToArray();
        int n = sorted.Length;
        return n == 0 ? double.NaN : n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
    }

    private static double LoadAverage()
    {
        try
        {
            var text = File.ReadAllText("/proc/loadavg").Split(' ')[0];
            return double.Parse(text, System.Globalization.CultureInfo.InvariantCulture);
        }
        catch (IOException) { return double.NaN; }
        catch (UnauthorizedAccessException) { return double.NaN; }
    }
}
