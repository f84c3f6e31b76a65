using Spm.Core.Gating;
using Spm.Core.Tensors;
using Spm.Diffusion.Images;
using Spm.Diffusion.Membranes;
using Spm.Diffusion.Onnx;
using Spm.Diffusion.Pipelines;
using Spm.Diffusion.Runtime;

namespace Spm.Samples.QuickStart;

/// <summary>What to run: a model folder, SPM files, prompts, where to write the PNGs.</summary>
public sealed record QuickStartOptions(string ModelFolder, IReadOnlyList<string> SpmFiles, IReadOnlyList<string> Prompts,
    string OutputFolder, int Steps = 20, ulong Seed = 42, int? Size = null);

/// <summary>The whole sample: load a model, load SPMs, generate each prompt with facilitated transport, save PNGs.</summary>
public static class QuickStart
{
    /// <summary>Runs the sample; returns the PNG files written (one per prompt).</summary>
    public static async Task<IReadOnlyList<string>> RunAsync(QuickStartOptions o, TextWriter log, CancellationToken ct = default)
    {
        // 1. Load the SPM files against the model's UNet and inject their membrane branches into the graph (in memory;
        //    the UNet weights stay in the folder's external data).
        var unet = OnnxModel.Load(o.ModelFolder);
        var layers = AdaptableLayerFinder.FindAll(unet);
        var spms = o.SpmFiles.Select(path => MembraneSetLoader.Load(path, layers)).ToList();
        var layout = MembraneLayout.Create(layers, spms);
        var injected = OnnxModel.FromProto(MembraneInjector.Inject(unet.Proto, layout), unet.BaseDirectory);
        var membranes = MembraneTensors.Build(layout);

        // 2. Load the pipeline with the injected UNet.
        using var sd = StableDiffusionPipeline.Load(o.ModelFolder, new PipelineOptions
        {
            UNetSource = OnnxModelSource.FromBytes(injected.ToBytes(), unet.BaseDirectory, "unet + SPM membranes"),
        });
        var tok = sd.Tokenizer;
        var gates = new SpmGateEvaluator(text => { var (ids, e) = sd.EncodePrompt(text); return (ids, e.Data); },
            [tok.BosId, tok.EosId, tok.PadId]);
        var conditioner = new FacilitatedTransportConditioner(membranes, gates);

        // 3. Generate: each SPM acts as strongly as the prompt resembles its concepts.
        Directory.CreateDirectory(o.OutputFolder);
        var written = new List<string>();
        for (int i = 0; i < o.Prompts.Count; i++)
        {
            var request = new GenerationRequest
            {
                Prompt = o.Prompts[i], Steps = o.Steps, Seed = o.Seed, Width = o.Size, Height = o.Size, Conditioner = conditioner,
            };
            var result = await sd.GenerateAsync(request, progress: null, ct);
            var image = result.Images[0];
            var path = Path.Combine(o.OutputFolder, $"quickstart-{i}.png");
            PngImage.Write(path, PngImage.Encode(image.Rgb, image.Width, image.Height, image.Parameters), overwrite: true);
            log.WriteLine($"{path}: \"{o.Prompts[i]}\" {string.Join(", ", conditioner.GatesFor(sd, o.Prompts[i]))}");
            written.Add(path);
        }
        return written;
    }
}

/// <summary>
/// Feeds the membranes and their gates to the UNet: per request, facilitated transport on the prompt gives every SPM
/// its multiplier (spec section 3), the same on every guidance row.
/// </summary>
public sealed class FacilitatedTransportConditioner(MembraneTensors membranes, SpmGateEvaluator evaluator) : IUNetConditioner
{
    private readonly GateSettings[] _settings = membranes.Layout.Sets.Select(_ => GateSettings.Default).ToArray();

    /// <summary>The gates the SPMs get for <paramref name="prompt"/>.</summary>
    public IReadOnlyList<SpmGate> GatesFor(StableDiffusionPipeline sd, string prompt)
    {
        var (ids, e) = sd.EncodePrompt(prompt);
        return evaluator.Evaluate(evaluator.TextOf(ids, e.Data), membranes.Layout.Sets, _settings);
    }

    /// <inheritdoc />
    public UNetConditioning Prepare(UNetConditioningContext context)
    {
        var prompt = evaluator.TextOf(context.PromptTokenIds, context.PromptEmbedding.Data);
        var gates = evaluator.Evaluate(prompt, membranes.Layout.Sets, _settings);
        var inputs = new Dictionary<string, FloatTensor>(membranes.Inputs)
        {
            [MembraneNames.Gates] = membranes.Gates(context.BatchRows, gates.Select(g => g.Multiplier).ToArray()),
        };
        return new UNetConditioning(inputs, "SPM: " + string.Join(", ", gates));
    }
}
