using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;
using Spm.Core.Randomness;
using Spm.Core.Tensors;
using Spm.Diffusion.Images;

using Spm.Diffusion.Pipelines;
using Spm.Diffusion.Pipelines.Families;

namespace Spm.Benchmarks;

/// <summary>Figures of one pipeline benchmark (medians over the measured runs).</summary>
/// <param name="Runs">Measured runs (after one warm-up run).</param>
/// <param name="UNetCallsPerRun">UNet calls per run.</param>
/// <param name="BatchRows">UNet batch rows per call (2 × images with guidance).</param>
/// <param name="BareUNetCall">Baseline: one UNet call with the same shapes, run directly in a loop (no tokenizer, scheduler, guidance).</param>
/// <param name="PipelineUNetCall">One UNet call inside the pipeline.</param>
/// <param name="PipelineStep">Wall time of the denoising loop per step (UNet call + scheduler + guidance + copies).</param>
/// <param name="Wall">A whole run: tokenizer, text encoder, denoising, VAE and PNG encoding.</param>
/// <param name="Models">Time inside the three models in a run.</param>
/// <param name="PngEncode">PNG encoding of the run's images (CPU time).</param>
/// <param name="OutsideWork">CPU time of the work outside the models, each piece timed on the generating thread: tokenizer, noise, input scaling, guidance, scheduler steps, pixel conversion, PNG encoding.</param>
/// <param name="ModelsCpu">CPU time of the process inside the three models (all ONNX Runtime threads).</param>
public sealed record PipelineBenchmarkResult(
    int Runs, int UNetCallsPerRun, int BatchRows,
    TimeSpan BareUNetCall, TimeSpan PipelineUNetCall, TimeSpan PipelineStep,
    TimeSpan Wall, TimeSpan Models, TimeSpan PngEncode, TimeSpan OutsideWork, TimeSpan ModelsCpu)
{
    /// <summary>
    /// Share of the run's CPU work spent outside the three models:
    /// <see cref="OutsideWork"/> / (<see cref="OutsideWork"/> + <see cref="ModelsCpu"/>). Unlike <see cref="OutsideModelsShare"/>
    /// it does not count time the process merely waited for a CPU, so it holds on a busy machine.
    /// </summary>
    public double MeasuredOutsideShare => (OutsideWork + ModelsCpu).TotalSeconds > 0 ? OutsideWork.TotalSeconds / (OutsideWork + ModelsCpu).TotalSeconds : 0;

    /// <summary>Denoising steps per second (UNet calls per second of denoising-loop wall time).</summary>
    public double IterationsPerSecond => PipelineStep.TotalSeconds > 0 ? 1 / PipelineStep.TotalSeconds : 0;

    /// <summary>Share of a run's wall time outside the three models (tokenizer, noise, scheduler, guidance, conversions, PNG encoding, and any waiting).</summary>
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
    /// Runs <paramref name="request"/> once to warm up, then <paramref name="runs"/> times timed by wall clock and
    /// <paramref name="runs"/> times timed by CPU time (each run also PNG-encodes its images), and times
    /// <paramref name="bareCalls"/> bare UNet calls with the same batch shape. Progress counts finished runs (2 × runs).
    /// </summary>
    public static async Task<PipelineBenchmarkResult> RunAsync(StableDiffusionPipeline pipeline, GenerationRequest request, int runs = 3,
        int bareCalls = 10, IProgress<int>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(pipeline);
        ArgumentNullException.ThrowIfNull(request);
        ArgumentOutOfRangeException.ThrowIfLessThan(runs, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(bareCalls, 1);
        if (request.Conditioner is not null) throw new ArgumentException("benchmark requests have no conditioner.", nameof(request));

        var warm = await pipeline.GenerateAsync(request with { Steps = Math.Min(request.Steps, 2) }, null, cancellationToken);
        foreach (var image in warm.Images) PngImage.Encode(image.Rgb, image.Width, image.Height, image.Parameters);
        var walls = new List<TimeSpan>();
        var models = new List<TimeSpan>();
        var pngs = new List<TimeSpan>();
        var unetPerCall = new List<TimeSpan>();
        var stepWall = new List<TimeSpan>();
        var outside = new List<TimeSpan>();
        var cpuModels = new List<TimeSpan>();
        int calls = 0;
        Spm.Core.Tensors.FloatTensor? latents = null;
        // Phase 1 (wall clock): speed. Phase 2 (CPU time): where the work goes, unaffected by waiting for a CPU.
        for (int r = 0; r < 2 * runs; r++)
        {
            bool cpu = r >= runs;
            var sw = Stopwatch.StartNew();
            var result = await pipeline.GenerateAsync(request with { MeasureCpu = cpu }, null, cancellationToken);
            var pngStart = cpu ? CpuClock.Thread() : sw.Elapsed;
            foreach (var image in result.Images) PngImage.Encode(image.Rgb, image.Width, image.Height, image.Parameters);
            var png = (cpu ? CpuClock.Thread() : sw.Elapsed) - pngStart;
            sw.Stop();
            var t = result.Timings;
            calls = t.UNetCalls;
            latents = result.Latents;
            if (!cpu)
            {
                walls.Add(sw.Elapsed);
                models.Add(t.Models);
                unetPerCall.Add(t.UNet / t.UNetCalls);
                // The denoising loop's wall time: the call minus the encoder and decoder stages.
                stepWall.Add((t.Total - t.TextEncoder - t.VaeDecoder - t.Tokenizer - t.ImageConversion) / t.UNetCalls);
            }
            else
            {
                pngs.Add(png);
                outside.Add(t.OutsideWork + png);
                cpuModels.Add(t.Models);
            }
            progress?.Report(r + 1);
        }

        // The pipeline's batch rows and latent size, as it ran them: guidance doubles the rows, the latents say the size.
        int rows = (request.GuidanceScale > 1.0 ? 2 : 1) * Math.Min(request.BatchSize, request.Count);
        var bare = MeasureBareUNet(pipeline, rows, latents!.Shape[2], latents.Shape[3], bareCalls, cancellationToken);
        return new PipelineBenchmarkResult(runs, calls, rows, bare, Median(unetPerCall), Median(stepWall), Median(walls), Median(models), Median(pngs), Median(outside), Median(cpuModels));
    }

    private static TimeSpan MeasureBareUNet(StableDiffusionPipeline pipeline, int rows, int h, int w, int calls, CancellationToken ct)
    {
        // The rows go through the family's conditioning, as the pipeline's do, so an SDXL UNet also gets its pooled
        // text_embeds and time_ids (the size conditioning's values do not change the call's cost, only its shapes count).
        ct.ThrowIfCancellationRequested();
        var empty = pipeline.Conditioning.Encode("");
        var text = pipeline.Conditioning.BuildRows(Enumerable.Repeat(empty, rows).ToArray(), SizeConditioning.Default(w * 8, h * 8));
        using var ro = new RunOptions();
        using var runner = pipeline.UNet.OpenRunner(text, null, rows, h, w, pipeline.UsesIoBinding, ro);
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
