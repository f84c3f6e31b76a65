using System.Diagnostics;
using Spm.Core.Gating;
using Spm.Diffusion.Membranes;
using Spm.Diffusion.Pipelines;
using Spm.Training.Evaluation;

namespace Spm.Benchmarks;

/// <summary>Figures of one evaluation-throughput benchmark (medians over the measured rounds).</summary>
/// <param name="Baseline">Seconds per image generating one image per pipeline call.</param>
/// <param name="BatchSizes">The batch sizes measured, ascending.</param>
/// <param name="PerBatch">Seconds per image of the eval generator at each batch size.</param>
/// <param name="ImageSize">Side of the images.</param>
/// <param name="SchedulerName">The scheduler the images were drawn with.</param>
public sealed record EvalImageBenchmarkResult(double Baseline, IReadOnlyList<int> BatchSizes, IReadOnlyList<double> PerBatch, int ImageSize, string SchedulerName)
{
    /// <summary>Index of the fastest batch size.</summary>
    public int Best => PerBatch.Select((t, i) => (t, i)).MinBy(x => x.t).i;
}

/// <summary>
/// What <c>spm bench eval</c> measures: evaluation images drawn by <see cref="EvalImageGenerator"/> (mixed prompts, seeds and
/// SPM multipliers in each batch) against one image per pipeline call, both in the same run.
/// </summary>
public static class EvalImageBenchmark
{
    /// <summary>
    /// Draws <paramref name="requests"/> once per round with the pipeline (one image per call) and with an eval generator at
    /// each of <paramref name="batchSizes"/>, after a warm-up round of one call each; rounds alternate between the
    /// configurations so a change in machine load touches all of them. Progress counts finished runs
    /// ((<paramref name="rounds"/> + 1) × (batch sizes + 1)).
    /// </summary>
    public static EvalImageBenchmarkResult Run(StableDiffusionPipeline pipeline, LoadedSpms? spms, EvalGenerationSettings settings,
        IReadOnlyList<EvalImageRequest> requests, IReadOnlyList<int> batchSizes, int rounds, IProgress<int>? progress = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(pipeline);
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(requests);
        ArgumentNullException.ThrowIfNull(batchSizes);
        if (requests.Count == 0) throw new ArgumentException("No requests to draw.", nameof(requests));
        if (rounds < 1) throw new ArgumentOutOfRangeException(nameof(rounds), "At least one measured round.");
        var sizes = batchSizes.Distinct().Order().ToArray();
        if (sizes.Length == 0 || sizes.Any(b => b is < 1 or > 256)) throw new ArgumentException("Batch sizes must be 1..256.", nameof(batchSizes));
        var generators = sizes.Select(b => new EvalImageGenerator(pipeline, spms, settings with { BatchSize = b })).ToArray();
        int imageSize = generators[0].ImageSize;
        var all = requests.ToArray();

        // Warm-up (session arenas, kernels), then rounds alternating between configurations.
        var baselineTimes = new List<double>();
        var batchTimes = sizes.Select(_ => new List<double>()).ToArray();
        int done = 0;
        for (int round = 0; round <= rounds; round++)
        {
            var sw = Stopwatch.StartNew();
            foreach (var r in round == 0 ? all.Take(1) : all) OneImage(pipeline, spms, settings, imageSize, r, cancellationToken);
            if (round > 0) baselineTimes.Add(sw.Elapsed.TotalSeconds / all.Length);
            progress?.Report(++done);
            for (int i = 0; i < sizes.Length; i++)
            {
                sw.Restart();
                generators[i].Generate(round == 0 ? all.Take(sizes[i]).ToArray() : all, null, cancellationToken);
                if (round > 0) batchTimes[i].Add(sw.Elapsed.TotalSeconds / all.Length);
                progress?.Report(++done);
            }
        }
        return new EvalImageBenchmarkResult(Median(baselineTimes), sizes, batchTimes.Select(Median).ToArray(), imageSize, generators[0].SchedulerName);
    }

    /// <summary>One image through the pipeline's own call, at the request's fixed multipliers.</summary>
    private static void OneImage(StableDiffusionPipeline pipeline, LoadedSpms? spms, EvalGenerationSettings s, int size, EvalImageRequest r, CancellationToken ct)
    {
        var request = new GenerationRequest
        {
            Prompt = r.Prompt,
            NegativePrompt = s.NegativePrompt,
            Steps = s.Steps,
            GuidanceScale = s.GuidanceScale,
            Scheduler = s.Scheduler,
            Seed = r.Seed,
            Width = size,
            Height = size,
            Conditioner = spms?.CreateConditioner(pipeline, r.Multipliers.Select(m => new GateSettings(FixedMultiplier: m)).ToArray()),
        };
        pipeline.Generate(request, null, ct);
    }

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }
}
