using System.CommandLine;
using Spm.Diffusion.Pipelines;
using Spm.Diffusion.Runtime;
using Spm.Training.Evaluation;

namespace Spm.Cli.Commands;

/// <summary>
/// How the verbs that draw many images for a judge (<c>spm gate fit</c>, <c>spm attack</c>) sample and run: steps,
/// guidance, batch, threads, provider. One set of options, read in one place.
/// </summary>
internal sealed class SamplingOptions
{
    public readonly Option<int?> Steps = new("--steps") { Description = "Denoising steps (default: the model's spm_generate_defaults.json, else 20)." };
    public readonly Option<double?> Guidance = new("--guidance") { Description = "Guidance scale (default: the model's spm_generate_defaults.json, else 5)." };
    public readonly Option<int> Batch = new("--batch") { Description = "Images per UNet batch.", DefaultValueFactory = _ => 16 };
    public readonly Option<int> Threads = new("--threads") { Description = "Intra-op threads (0 = ONNX Runtime's choice).", DefaultValueFactory = _ => 0 };
    public readonly Option<string> Provider = new("--provider") { Description = "cpu or cuda.", DefaultValueFactory = _ => "cpu" };

    public SamplingOptions() => Provider.AcceptOnlyFromAmong("cpu", "cuda");

    public IEnumerable<Option> All() => [Steps, Guidance, Batch, Threads, Provider];

    /// <summary>--steps and --guidance, else the model's spm_generate_defaults.json, else 20 steps and guidance 5 (as spm eval).</summary>
    public EvalGenerationSettings Settings(ParseResult parse, string modelFolder)
    {
        var sampling = ModelGenerationDefaults.Load(modelFolder);
        var settings = new EvalGenerationSettings
        {
            Steps = parse.GetValue(Steps) ?? sampling?.Steps ?? 20,
            GuidanceScale = parse.GetValue(Guidance) ?? sampling?.GuidanceScale ?? 5.0,
            BatchSize = parse.GetValue(Batch),
        };
        settings.Validate();
        return settings;
    }

    /// <summary>The provider and threads.</summary>
    public OnnxRuntimeOptions Runtime(ParseResult parse) =>
        new() { Provider = ProviderOption.Parse(parse.GetValue(Provider)), IntraOpThreads = parse.GetValue(Threads) };
}
