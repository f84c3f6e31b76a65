using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;
using Spm.Core.Randomness;
using Spm.Core.Tensors;
using Spm.Diffusion.Images;

namespace Spm.Diffusion.Pipelines;

/// <summary>Figures of one pipeline benchmark (medians over the measured runs).</summary>
/// <param name="Runs">Measured runs (after one warm-up run).</param>
/// <param name="UNetCallsPerRun">UNet calls per run.</param>
/// <param name="BatchRows">UNet batch rows per call (2 × images with guidance).</param>
/// <param name="BareUNetCall">Baseline: one UNet call with the same shapes, run directly in a loop (no tokenizer, scheduler, guidance).</param>
/// <param name="PipelineUNetCall">One UNet call inside the pipeline.</param>
/// <param name="PipelineStep">Wall time of the denoising loop per step (UNet call + scheduler + guidance + copies).</param>
/// <param name="Wall">A whole run: tokenizer, text encoder, denoising, VAE and PNG encoding.</param>
/// <param name="Models">Time inside the three models in a run.</param>
/// <param name="PngEncode">PNG encoding of the run's images.</param>
public sealed record PipelineBenchmarkResult(
    int Runs, int UNetCallsPerRun, int BatchRows,
    TimeSpan BareUNetCall, TimeSpan PipelineUNetCall, TimeSpan PipelineStep,
    TimeSpan Wall, TimeSpan Models, TimeSpan PngEncode)
{
    /// <summary>Denoising steps per second (UNet calls per second of denoising-loop wall time).</summary>
    public double IterationsPerSecond => PipelineStep.TotalSeconds > 0 ? 1 / PipelineStep.TotalSeconds : 0;

    /// <summary>Share of a run spent outside the three models (tokenizer, noise, scheduler, guidance, conversions, PNG encoding).</summary>
    public double OutsideModelsShare => Wall.TotalSeconds > 0 ? Math.Max(0, (Wall - Models).TotalSeconds / Wall.TotalSeconds) : 0;

    /// <summary>Share of a denoising step spent outside the UNet call (scheduler, guidance, copies).</summary>
    public double StepOverheadShare => PipelineStep.TotalSeconds > 0 ? Math.Max(0, (PipelineStep - PipelineUNetCall).TotalSeconds / PipelineStep.TotalSeconds) : 0;

    /// <summary>A pipeline step relative to the bare UNet call of the same run (1.00 = no overhead).</summary>
    public double StepToBareRatio => BareUNetCall.TotalSeconds > 0 ? PipelineStep.TotalSeconds / BareUNetCall.TotalSeconds : 0;
}

/// <summary>
/// Measures the pipeline against a baseline taken in the same process: bare UNet calls with the request's shapes.
/// Reports ratios and shares, not absolute thresholds (absolute times depend on the machine).
/// </summary>
public static class PipelineBenchmark
{
    /// <summary>
    /// Runs <paramref name="request"/> once to warm up, then <paramref name="runs"/> times measured (each run also
    /// PNG-encodes its images), and times <paramref name="bareCalls"/> bare UNet calls with the same batch shape.
    /// </summary>
    public static async Task<PipelineBenchmarkResult> RunAsync(StableDiffusionPipeline pipeline, GenerationRequest request, int runs = 3,
        int bareCalls = 10, IProgress<int>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(pipeline);
        ArgumentNullException.ThrowIfNull(request);
        ArgumentOutOfRangeException.ThrowIfLessThan(runs, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(bareCalls, 1);
        if (request.Conditioner is not null) throw new ArgumentException("benchmark requests have no conditioner.", nameof(request));

        await pipeline.GenerateAsync(request with { Steps = Math.Min(request.Steps, 2) }, null, cancellationToken);
        var walls = new List<TimeSpan>();
        var models = new List<TimeSpan>();
        var pngs = new List<TimeSpan>();
        var unetPerCall = new List<TimeSpan>();
        var stepWall = new List<TimeSpan>();
        int calls = 0;
        for (int r = 0; r < runs; r++)
        {
            var sw = Stopwatch.StartNew();
            var result = await pipeline.GenerateAsync(request, null, cancellationToken);
            var png = Stopwatch.StartNew();
            foreach (var image in result.Images) PngImage.Encode(image.Rgb, image.Width, image.Height, image.Parameters);
            png.Stop();
            sw.Stop();
            var t = result.Timings;
            calls = t.UNetCalls;
            walls.Add(sw.Elapsed);
            models.Add(t.Models);
            pngs.Add(png.Elapsed);
            unetPerCall.Add(t.UNet / t.UNetCalls);
            // The denoising loop's wall time: the call minus the encoder and decoder stages (whose overhead is tiny next to them).
            stepWall.Add((t.Total - t.TextEncoder - t.VaeDecoder) / t.UNetCalls);
            progress?.Report(r + 1);
        }

        var plan = GenerationPlan.Create(pipeline, request);
        int rows = (plan.Guidance ? 2 : 1) * Math.Min(request.BatchSize, request.Count);
        var bare = MeasureBareUNet(pipeline, rows, plan.LatentHeight, plan.LatentWidth, bareCalls, cancellationToken);
        return new PipelineBenchmarkResult(runs, calls, rows, bare, Median(unetPerCall), Median(stepWall), Median(walls), Median(models), Median(pngs));
    }

    private static TimeSpan MeasureBareUNet(StableDiffusionPipeline pipeline, int rows, int h, int w, int calls, CancellationToken ct)
    {
        var (_, e) = pipeline.EncodePrompt("", ct);
        int per = e.Length;
        var hidden = new FloatTensor(rows, e.Shape[1], e.Shape[2]);
        for (int r = 0; r < rows; r++) e.Span.CopyTo(hidden.Span.Slice(r * per, per));
        using var ro = new RunOptions();
        using var runner = pipeline.UNet.OpenRunner(hidden, null, rows, h, w, pipeline.UsesIoBinding, ro);
        new SeededRandom(0).FillGaussian(runner.Input);
        runner.Run(500);
        var times = new List<TimeSpan>();
        for (int i = 0; i < calls; i++)
        {
            ct.ThrowIfCancellationRequested();
            var sw = Stopwatch.StartNew();
            runner.Run(999 - i * 37);
            times.Add(sw.Elapsed);
        }
        return Median(times);
    }

    private static TimeSpan Median(List<TimeSpan> values)
    {
        var s = values.OrderBy(v => v).ToList();
        return s.Count % 2 == 1 ? s[s.Count / 2] : (s[s.Count / 2 - 1] + s[s.Count / 2]) / 2;
    }
}
