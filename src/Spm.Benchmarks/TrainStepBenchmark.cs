using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;
using Spm.Core.Randomness;
using Spm.Core.Tensors;
using Spm.Diffusion.Membranes;
using Spm.Diffusion.Onnx;
using Spm.Diffusion.Pipelines.Families;
using Spm.Diffusion.Runtime;

using Spm.Training.Autodiff;

namespace Spm.Benchmarks;

/// <summary>Settings of <see cref="TrainStepBenchmark"/>.</summary>
/// <param name="Batch">UNet batch rows per step.</param>
/// <param name="LatentSize">Latent height and width (pixels / 8).</param>
/// <param name="Rank">Membrane rank on every transformer layer.</param>
/// <param name="Runs">Measured runs of each kind (after one warm-up run each).</param>
/// <param name="Session">Threads and provider.</param>
public sealed record TrainStepBenchmarkOptions(int Batch = 2, int LatentSize = 32, int Rank = 1, int Runs = 5, GradientSessionSettings? Session = null);

/// <summary>What <see cref="TrainStepBenchmark"/> measured.</summary>
/// <param name="ForwardMs">Median time of the membrane-injected UNet forward alone.</param>
/// <param name="TrainStepMs">Median time of forward + backward (loss and every membrane gradient) in one graph.</param>
/// <param name="ForwardNodes">Nodes of the injected forward graph.</param>
/// <param name="BackwardNodes">Nodes the gradient builder added.</param>
/// <param name="BuildMs">Time to probe shapes, build the gradient graph and open its session.</param>
/// <param name="SavedActivationBytes">Bytes of forward tensors the backward pass reads (kept alive until used), at the benchmark's size.</param>
/// <param name="PeakRssBytes">Process peak resident memory (VmHWM) at the end of the run; 0 when not available.</param>
/// <param name="Layers">Membrane layers.</param>
public sealed record TrainStepBenchmarkResult(double ForwardMs, double TrainStepMs, int ForwardNodes, int BackwardNodes, double BuildMs,
    long SavedActivationBytes, long PeakRssBytes, int Layers)
{
    /// <summary>Training step time over forward time (target ≤ 3).</summary>
    public double Ratio => TrainStepMs / ForwardMs;
}

/// <summary>
/// Measures a membrane training step (forward + backward of an MSE loss, rank-r membranes on every transformer
/// layer) against the forward alone of the same injected UNet, in the same process and run.
/// </summary>
public static class TrainStepBenchmark
{
    /// <summary>Runs the benchmark on the UNet at <paramref name="modelPath"/> (pipeline folder, UNet folder or .onnx).</summary>
    public static TrainStepBenchmarkResult Run(string modelPath, TrainStepBenchmarkOptions options, IProgress<int>? progress = null, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        var unet = OnnxModel.Load(modelPath);
        var settings = (options.Session ?? new GradientSessionSettings()) with { ExternalDataFolder = unet.BaseDirectory };
        var layers = AdaptableLayerFinder.FindTransformerLayers(unet);
        var rng = new SeededRandom(1);
        var membranes = layers.Select(l =>
        {
            var down = new FloatTensor(MembraneShapes.Down(l, options.Rank));
            var up = new FloatTensor(MembraneShapes.Up(l, options.Rank));
            rng.FillGaussian(down.Span);
            rng.FillGaussian(up.Span);
            return new LayerMembrane(l.ModulePath, down, up, 1f / options.Rank);
        }).ToList();
        var layout = MembraneLayout.Create(layers, [new MembraneSet("bench", ["bench"], membranes)]);
        var tensors = MembraneTensors.Build(layout);
        var gates = tensors.Gates(options.Batch, [1f]);

        int b = options.Batch, s = options.LatentSize;
        var ehsWidth = unet.Graph.Input.First(i => i.Name == "encoder_hidden_states").Type.TensorType.Shape.Dim[2].DimValue;
        var channels = unet.Graph.Input.First(i => i.Name == "sample").Type.TensorType.Shape.Dim[1].DimValue;
        float[] G(long n) { var a = new float[n]; rng.FillGaussian(a); return a; }
        var sample = G(b * channels * s * s);
        var target = G(b * channels * s * s);
        using var sampleV = OrtValue.CreateTensorValueFromMemory(sample, [b, channels, s, s]);
        using var targetV = OrtValue.CreateTensorValueFromMemory(target, [b, channels, s, s]);
        using var timestepV = OrtValue.CreateTensorValueFromMemory(Enumerable.Repeat(500f, b).ToArray(), [b]);
        using var ehsV = OrtValue.CreateTensorValueFromMemory(G(b * 77 * ehsWidth), [b, 77, ehsWidth]);
        var modelInputs = new Dictionary<string, OrtValue> { ["sample"] = sampleV, ["timestep"] = timestepV, ["encoder_hidden_states"] = ehsV };

        // Forward alone: the injected UNet.
        var injected = MembraneInjector.Inject(unet.Proto, layout);
        using var forward = OnnxSessionFactory.Create(OnnxModelSource.FromModel(injected, settings.ExternalDataFolder), settings.ToRuntimeOptions()).Session;
        var fNames = new List<string>(modelInputs.Keys);
        var fValues = new List<OrtValue>(modelInputs.Values);
        var owned = new List<OrtValue>();
        // An SDXL UNet also takes the pooled embedding and the size ids: random pooled rows, and diffusers' default ids
        // for the image size of the latents.
        foreach (var input in unet.Graph.Input.Where(i => ModelFamilies.SdxlUNetInputs.Contains(i.Name)).ToList())
        {
            float[] data = input.Name == "time_ids"
                ? Enumerable.Range(0, b).SelectMany(_ => SizeConditioning.Default(8 * s, 8 * s).ToTimeIds()).ToArray()
                : G(b * input.Type.TensorType.Shape.Dim[1].DimValue);
            var v = OrtValue.CreateTensorValueFromMemory(data, [b, data.Length / b]);
            owned.Add(v);
            modelInputs[input.Name] = v;
            fNames.Add(input.Name);
            fValues.Add(v);
        }
        foreach (var (n, t) in tensors.Inputs) { var v = ToOrt(t); owned.Add(v); fNames.Add(n); fValues.Add(v); }
        var gv = ToOrt(gates);
        owned.Add(gv);
        fNames.Add(MembraneNames.Gates);
        fValues.Add(gv);
        try
        {
            var buildWatch = Stopwatch.StartNew();
            using var train = MembraneGradientSession.Create(unet, layout, [LossTerm.MeanSquaredError("out_sample", "target")], modelInputs, settings);
            double buildMs = buildWatch.Elapsed.TotalMilliseconds;
            var trainInputs = new Dictionary<string, OrtValue>(modelInputs) { ["target"] = targetV };

            var forwardTimes = new List<double>();
            var trainTimes = new List<double>();
            using var ro = new RunOptions();
            // Interleaved so that load changes on a shared machine hit both alike; the first pair is a warm-up.
            for (int i = 0; i <= options.Runs; i++)
            {
                cancellation.ThrowIfCancellationRequested();
                var w = Stopwatch.StartNew();
                using (forward.Run(ro, fNames, fValues, ["out_sample"])) { }
                if (i > 0) forwardTimes.Add(w.Elapsed.TotalMilliseconds);
                w.Restart();
                train.Run(trainInputs, tensors.Inputs, gates);
                if (i > 0) trainTimes.Add(w.Elapsed.TotalMilliseconds);
                progress?.Report(i);
            }
            return new TrainStepBenchmarkResult(Median(forwardTimes), Median(trainTimes), injected.Graph.Node.Count,
                train.Graph.BackwardNodeCount, buildMs, train.Graph.SavedActivationBytes, PeakRss(), layers.Count);
        }
        finally
        {
            foreach (var v in owned) v.Dispose();
        }
    }

    private static double Median(List<double> values)
    {
        values.Sort();
        int n = values.Count;
        return n == 0 ? double.NaN : n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
    }

    /// <summary>Peak resident set size of this process (Linux VmHWM), 0 elsewhere.</summary>
    public static long PeakRss()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/self/status"))
                if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                    return long.Parse(line[6..].Trim().Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture) * 1024;
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return 0;
    }

    private static OrtValue ToOrt(FloatTensor t) => OrtValue.CreateTensorValueFromMemory(t.Data, t.Shape.Select(d => (long)d).ToArray());
}
