using System.CommandLine;
using System.Diagnostics;
using Spectre.Console;
using Spm.Core;
using Spm.Diffusion.Onnx.Building;
using Spm.Diffusion.Text;

namespace Spm.Cli.Commands;

/// <summary>
/// <c>spm build-model --preset tiny-sd1|sd15|sd21 [--unet-config FILE] --seed S --out DIR</c>: writes an SD-architecture
/// ONNX pipeline with random weights, built by the project's own graph builders (benchmarks, tests, the
/// starting point of the built-in model).
/// </summary>
internal static class BuildModelCommand
{
    public static Command Create()
    {
        var preset = new Option<string>("--preset")
        {
            Description = $"Sizes: {string.Join(", ", PipelinePresets.Names)}.",
            DefaultValueFactory = _ => "tiny-sd1",
        };
        var unetConfig = new Option<string?>("--unet-config") { Description = "A diffusers unet config.json replacing the preset's UNet (custom sizes; text width follows cross_attention_dim)." };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the random weights.", DefaultValueFactory = _ => 0 };
        var output = new Option<string>("--out") { Description = "Pipeline folder to write.", Required = true };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "Folder with the CLIP vocab.json and merges.txt to copy. Default: ../shared/clip-tokenizer." };
        var unetOnly = new Option<bool>("--unet-only") { Description = "Write only unet/ (for benchmarks)." };
        var external = new Option<bool?>("--external-data") { Description = "Store the UNet weights in unet/weights.pb (default: when larger than 64 MB)." };
        var force = new Option<bool>("--force") { Description = "Replace an existing folder." };
        var cmd = new Command("build-model", "Write an SD-architecture ONNX pipeline (random weights) built by spm's own graph builders.")
        {
            preset, unetConfig, seed, output, tokenizer, unetOnly, external, force,
        };
        cmd.SetAction((parse, ct) =>
        {
            var p = PipelinePresets.Get(parse.GetValue(preset)!);
            var unetFile = parse.GetValue(unetConfig);
            if (unetFile is not null) p = WithUNet(p, UNetConfig.Load(unetFile));
            bool onlyUnet = parse.GetValue(unetOnly);
            var tok = parse.GetValue(tokenizer) ?? ClipTokenizer.FindFolder();
            if (tok is null && !onlyUnet) throw new SpmException("No CLIP tokenizer found: pass --tokenizer DIR (a folder with vocab.json and merges.txt).");
            var options = new PipelineWriteOptions
            {
                TokenizerFolder = tok ?? "",
                UNetExternalData = parse.GetValue(external),
                Overwrite = parse.GetValue(force),
                UNetOnly = onlyUnet,
            };
            var outDir = parse.GetValue(output)!;
            var sw = Stopwatch.StartNew();
            AnsiConsole.Progress()
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
                .Start(ctx =>
                {
                    var task = ctx.AddTask($"building {p.Name}", maxValue: 1.0);
                    PipelineWriter.Write(outDir, p, parse.GetValue(seed), options,
                        new Progress<PipelineWriteProgress>(r =>
                        {
                            task.Description = $"{p.Name}: {r.Component}";
                            task.Value = r.Fraction;
                        }), ct);
                    task.Value = 1.0;
                });
            long unetParams = UNetBuilder.Create(p.UNet, 0).ParameterCount;
            Console.WriteLine($"wrote {Path.GetFullPath(outDir)} ({p.Name}, seed {parse.GetValue(seed)}, UNet {unetParams:N0} parameters) in {sw.Elapsed.TotalSeconds:F1} s");
            return Task.FromResult(0);
        });
        return cmd;
    }

    /// <summary>The preset with another UNet; the text encoder's width follows its cross-attention width.</summary>
    internal static PipelinePreset WithUNet(PipelinePreset p, UNetConfig unet)
    {
        var text = p.TextEncoder;
        if (text.Width != unet.CrossAttentionDim)
        {
            int heads = new[] { 12, 8, 4, 2, 1 }.First(h => unet.CrossAttentionDim % h == 0);
            text = text with { Width = unet.CrossAttentionDim, Heads = heads, IntermediateSize = 4 * unet.CrossAttentionDim };
        }
        return p with { Name = p.Name + "+custom-unet", UNet = unet, TextEncoder = text, VaeDecoder = p.VaeDecoder with { LatentChannels = unet.OutChannels } };
    }
}
