using System.Numerics.Tensors;
using Microsoft.ML.OnnxRuntime;
using Spm.Core.Tensors;
using Spm.Diffusion.Pipelines.Families;

namespace Spm.Diffusion.Pipelines;

/// <summary>Settings of <see cref="GuidanceDirections.Compute"/>.</summary>
/// <param name="Latents">Noise latents each prompt is probed on (image seeds <c>Seed</c>, <c>Seed+1</c>, ...).</param>
/// <param name="Timesteps">Timesteps each latent is probed at; null: <see cref="DefaultTimesteps"/>.</param>
/// <param name="Seed">Seed of the first latent (the documented <see cref="LatentNoise"/> of an image with that seed).</param>
public sealed record GuidanceDirectionOptions(int Latents = 4, IReadOnlyList<int>? Timesteps = null, ulong Seed = 0)
{
    /// <summary>
    /// The first part of a sampling run (999, 900, 800 of 1,000 training timesteps): where the sampler decides what the
    /// picture shows, and where a unit-variance noise latent is what the UNet sees (the signal's share
    /// <c>sqrt(alpha_bar)</c> is below 0.2 there in SD's schedule), so no image is needed to probe it.
    /// </summary>
    public static IReadOnlyList<int> DefaultTimesteps { get; } = [999, 900, 800];
}

/// <summary>
/// A prompt as the UNet reads it: the guidance direction <c>eps(x_t, E(prompt)) − eps(x_t, E(""))</c> on a fixed set
/// of noise latents and timesteps, concatenated into one vector. Two prompts whose directions point the same way make
/// the sampler draw the same thing, whatever their words: synonyms that the UNet learned to draw alike (while a
/// frozen text encoder keeps them apart) meet here. The concept atlas uses it as an edge weight
/// (<c>spm atlas build --edges guidance</c>).
/// </summary>
public static class GuidanceDirections
{
    /// <summary>
    /// Computes one direction per prompt, each of length <c>Latents × Timesteps × C × h × w</c> at the model's default
    /// latent size. One UNet call per prompt and timestep (batch = the latents), plus one per timestep for the empty prompt.
    /// </summary>
    /// <param name="pipeline">A loaded pipeline (its UNet, with whatever membranes its session holds at their inputs' defaults: pass a plain pipeline).</param>
    /// <param name="prompts">The prompts.</param>
    /// <param name="options">Latents, timesteps and seed; null: the defaults.</param>
    /// <param name="progress">Share of the prompts done, 0 to 1.</param>
    /// <param name="cancellationToken">Stops between UNet calls.</param>
    /// <exception cref="ArgumentOutOfRangeException">No latents, or a timestep outside the scheduler's 0..999.</exception>
    public static float[][] Compute(StableDiffusionPipeline pipeline, IReadOnlyList<string> prompts, GuidanceDirectionOptions? options = null,
        IProgress<double>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(pipeline);
        ArgumentNullException.ThrowIfNull(prompts);
        options ??= new GuidanceDirectionOptions();
        var timesteps = options.Timesteps ?? GuidanceDirectionOptions.DefaultTimesteps;
        ArgumentOutOfRangeException.ThrowIfLessThan(options.Latents, 1, nameof(options));
        if (timesteps.Count == 0 || timesteps.Any(t => t is < 0 or > 999))
            throw new ArgumentOutOfRangeException(nameof(options), $"timesteps must be 0..999 and at least one (got [{string.Join(", ", timesteps)}]).");

        int b = options.Latents, c = pipeline.UNet.InChannels, side = pipeline.Folder.UNetSampleSize;
        int perLatent = c * side * side, perStep = b * perLatent;
        var sample = new FloatTensor(b, c, side, side);
        for (int i = 0; i < b; i++)
            LatentNoise.Fill(LatentNoise.ImageSeed(options.Seed, i), sample.Data.AsSpan(i * perLatent, perLatent));
        var sizes = SizeConditioning.Default(side * pipeline.Folder.VaeScaleFactor, side * pipeline.Folder.VaeScaleFactor);
        using var ro = new RunOptions();
        using var reg = cancellationToken.Register(static o => ((RunOptions)o!).Terminate = true, ro);

        float[][] Predict(string prompt)
        {
            var encoded = pipeline.Encode(prompt, cancellationToken);
            var text = pipeline.Conditioning.BuildRows(Enumerable.Repeat(encoded, b).ToArray(), sizes);
            // One runner per prompt: the text rows are bound once and serve every timestep.
            using var runner = pipeline.UNet.OpenRunner(text, null, b, side, side, useIoBinding: false, ro);
            var outputs = new float[timesteps.Count][];
            for (int k = 0; k < timesteps.Count; k++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                sample.Data.CopyTo(runner.Input, 0);
                runner.Run(timesteps[k]);
                outputs[k] = (float[])runner.Output.Clone();
            }
            return outputs;
        }

        var empty = Predict("");
        var directions = new float[prompts.Count][];
        for (int p = 0; p < prompts.Count; p++)
        {
            var cond = Predict(prompts[p]);
            var d = new float[timesteps.Count * perStep];
            for (int k = 0; k < timesteps.Count; k++)
                TensorPrimitives.Subtract(cond[k], empty[k], d.AsSpan(k * perStep, perStep));
            directions[p] = d;
            progress?.Report((p + 1) / (double)prompts.Count);
        }
        return directions;
    }
}
