using System.Numerics.Tensors;
using Microsoft.ML.OnnxRuntime;
using Spm.Core.Randomness;
using Spm.Diffusion.Schedulers;

namespace Spm.Diffusion.Pipelines;

/// <summary>Hooks into <see cref="DenoisingLoop.Run"/> for callers that time or observe the steps.</summary>
public sealed class DenoisingHooks
{
    /// <summary>Runs the UNet for one step (e.g. to time it); null calls <see cref="UNetRunner.Run"/>.</summary>
    public Action<UNetRunner, double>? RunUNet { get; init; }

    /// <summary>Called after step <c>i</c> (0-based) has updated the latents: progress, snapshots, timing.</summary>
    public Action<int>? AfterStep { get; init; }
}

/// <summary>
/// The guided denoising loop, written once and used by the generation pipeline, the evaluation image generator and
/// the trainer (sampling x, the erasure probe, previews). For <c>n</c> images the runner's rows are laid out
/// <c>[uncond × n, cond × n]</c> with guidance and <c>[cond × n]</c> without; the conditioning (text rows, membranes,
/// per-row gates) is bound in the runner once for the whole loop. Each image has its own scheduler and noise
/// generator, so an image never depends on the others in its batch.
/// </summary>
public static class DenoisingLoop
{
    /// <summary>
    /// Runs <paramref name="steps"/> steps of the schedulers on <paramref name="latents"/> (in place): per step, scale
    /// each image's latents into the runner's input rows, one UNet call, guidance <c>u + g (c − u)</c>, scheduler step.
    /// </summary>
    /// <param name="runner">The UNet runner, opened with <c>n</c> rows (no guidance) or <c>2n</c> rows (guidance).</param>
    /// <param name="schedulers">One scheduler per image, timesteps set; the first one's timesteps are used for the calls.</param>
    /// <param name="latents">The <c>n</c> images' latents, back to back; updated in place.</param>
    /// <param name="noise">Per image, the generator of a stochastic scheduler (null entries, or a null list, for deterministic ones).</param>
    /// <param name="guidance">True when the runner holds an unconditional row per image before the conditional ones.</param>
    /// <param name="guidanceScale">The guidance scale g.</param>
    /// <param name="steps">How many of the schedulers' steps to run; null = all of them.</param>
    /// <param name="hooks">Optional timing and observation hooks.</param>
    /// <param name="cancellationToken">Checked before every step; a UNet call ended by it becomes an <see cref="OperationCanceledException"/>.</param>
    /// <exception cref="ArgumentException">The latents, schedulers and runner rows do not agree.</exception>
    public static void Run(UNetRunner runner, IReadOnlyList<IScheduler> schedulers, Span<float> latents, IReadOnlyList<SeededRandom?>? noise,
        bool guidance, double guidanceScale, int? steps = null, DenoisingHooks? hooks = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(runner);
        ArgumentNullException.ThrowIfNull(schedulers);
        int n = schedulers.Count;
        if (n == 0) throw new ArgumentException("At least one image (scheduler) is needed.", nameof(schedulers));
        if (noise is not null && noise.Count != n) throw new ArgumentException($"{noise.Count} noise generators for {n} images.", nameof(noise));
        if (latents.Length % n != 0) throw new ArgumentException($"{latents.Length} latent values do not split into {n} images.", nameof(latents));
        int perImage = latents.Length / n, rows = guidance ? 2 * n : n;
        var input = runner.Input;
        var output = runner.Output;
        if (input.Length != rows * perImage)
            throw new ArgumentException($"The runner holds {input.Length / Math.Max(1, perImage)} rows of {perImage} values; the loop needs {rows} ({n} images{(guidance ? " with guidance" : "")}).", nameof(runner));
        var timesteps = schedulers[0].Timesteps;
        int count = steps ?? timesteps.Count;
        if (count < 0 || count > timesteps.Count) throw new ArgumentOutOfRangeException(nameof(steps), count, $"The schedulers have {timesteps.Count} steps.");
        var guided = guidance ? new float[perImage] : [];
        float g = (float)guidanceScale;
        for (int i = 0; i < count; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            for (int j = 0; j < n; j++)
            {
                var dst = input.AsSpan((guidance ? n + j : j) * perImage, perImage);
                schedulers[j].ScaleModelInput(latents.Slice(j * perImage, perImage), dst, i);
                if (guidance) dst.CopyTo(input.AsSpan(j * perImage, perImage));
            }
            try
            {
                if (hooks?.RunUNet is { } run) run(runner, timesteps[i]);
                else runner.Run(timesteps[i]);
            }
            catch (OnnxRuntimeException) when (cancellationToken.IsCancellationRequested)
            {
                // ORT reports a terminated run as a generic error: it was the cancellation.
                throw new OperationCanceledException(cancellationToken);
            }
            for (int j = 0; j < n; j++)
            {
                ReadOnlySpan<float> prediction;
                if (guidance)
                {
                    // noise = u + g (c - u)
                    var u = output.AsSpan(j * perImage, perImage);
                    TensorPrimitives.Subtract(output.AsSpan((n + j) * perImage, perImage), u, guided);
                    TensorPrimitives.MultiplyAdd(guided, g, u, guided);
                    prediction = guided;
                }
                else
                {
                    prediction = output.AsSpan(j * perImage, perImage);
                }
                schedulers[j].Step(prediction, i, latents.Slice(j * perImage, perImage), noise?[j]);
            }
            hooks?.AfterStep?.Invoke(i);
        }
    }
}
