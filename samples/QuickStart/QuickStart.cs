using Spm.Core.Gating;
using Spm.Diffusion.Images;
using Spm.Diffusion.Membranes;
using Spm.Diffusion.Pipelines;

namespace Spm.Samples.QuickStart;

/// <summary>What to run: a model folder, SPM files, prompts, where to write the PNGs.</summary>
public sealed record QuickStartOptions(string ModelFolder, IReadOnlyList<string> SpmFiles, IReadOnlyList<string> Prompts,
    string OutputFolder, int? Steps = null, ulong Seed = 42, int? Size = null);

/// <summary>The whole sample: load a model, load SPMs, generate each prompt with facilitated transport, save PNGs.</summary>
public static class QuickStart
{
    /// <summary>Runs the sample; returns the PNG files written (one per prompt).</summary>
    public static async Task<IReadOnlyList<string>> RunAsync(QuickStartOptions o, TextWriter log, CancellationToken ct = default)
    {
        // 1. Match the SPM files to the model's UNet layers and inject their membrane branches into the UNet graph
        //    (in memory; the UNet's weights stay in the model folder's external data).
        var spms = LoadedSpms.Load(o.ModelFolder, o.SpmFiles);

        // 2. Load the pipeline with that UNet.
        using var sd = StableDiffusionPipeline.Load(o.ModelFolder, new PipelineOptions { UNetSource = spms.UNetSource });

        // 3. Facilitated transport: per prompt, each SPM acts as strongly as the prompt resembles its concepts
        //    (square gate curve, facilitate factor 1; GateSettings.FixedMultiplier would bypass the gate).
        var conditioner = spms.CreateConditioner(sd, spms.Layout.Sets.Select(_ => GateSettings.Default).ToList());

        // 4. Generate and save, at the guidance and steps the model recommends for itself (spm_generate_defaults.json; SD's
        //    7.5 and 20 otherwise) with the model's own scheduler (scheduler/scheduler_config.json).
        var defaults = ModelGenerationDefaults.Load(o.ModelFolder);
        double guidance = defaults?.GuidanceScale ?? 7.5;
        int steps = o.Steps ?? defaults?.Steps ?? 20;
        Directory.CreateDirectory(o.OutputFolder);
        var written = new List<string>();
        for (int i = 0; i < o.Prompts.Count; i++)
        {
            var request = new GenerationRequest
            {
                Prompt = o.Prompts[i], Steps = steps, GuidanceScale = guidance, Seed = o.Seed, Width = o.Size, Height = o.Size, Conditioner = conditioner,
            };
            var result = await sd.GenerateAsync(request, progress: null, ct);
            var image = result.Images[0];
            var path = Path.Combine(o.OutputFolder, $"quickstart-{i}.png");
            // The PNG's parameters chunk records the prompt, the settings and the SPM gates.
            PngImage.Write(path, PngImage.Encode(image.Rgb, image.Width, image.Height, image.Parameters), overwrite: true);
            log.WriteLine($"{path}: \"{o.Prompts[i]}\" {string.Join(", ", conditioner.GatesFor(o.Prompts[i]))}");
            written.Add(path);
        }
        return written;
    }
}
