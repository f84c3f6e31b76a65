using System.CommandLine;
using System.Globalization;
using Spm.Diffusion.Membranes;

using Spm.Cli.Rendering;

namespace Spm.Cli.Commands;

/// <summary>
/// <c>spm export-adapter --model DIR|unet.onnx --spm F[:MULT] [...] --out DIR [--force] [--allow-partial]</c>: the
/// injected UNet plus an ONNX Runtime <c>.onnx_adapter</c> holding the membranes at fixed gates, for apps that use ONNX
/// Runtime's multi-LoRA API.
/// </summary>
internal static class ExportAdapterCommand
{
    public static Command Create(CliConsole console)
    {
        var model = new Option<string>("--model") { Description = "Pipeline folder, UNet folder or UNet .onnx file (or ORG/NAME in the Hugging Face cache).", Required = true };
        var spm = new Option<string[]>("--spm")
        {
            Description = $"SPM to export, repeat for several: {SpmFileArgument.Syntax.Replace("fixes the gate", "is the gate stored in the adapter", StringComparison.Ordinal)}.",
            Required = true,
            AllowMultipleArgumentsPerToken = false,
        };
        var output = new Option<string>("--out") { Description = "Folder to write model.onnx (the injected UNet) and spm.onnx_adapter into.", Required = true };
        var force = new Option<bool>("--force") { Description = "Replace existing outputs." };
        var partial = new Option<bool>("--allow-partial") { Description = "Apply the matching layers of an SPM that does not fully fit the model (with a warning)." };
        var cmd = new Command("export-adapter", "Export SPMs as an ONNX Runtime .onnx_adapter plus the injected UNet (fixed gates; for OrtLoraAdapter / AddActiveLoraAdapter).")
        {
            model, spm, output, force, partial,
        };
        cmd.SetAction(parse =>
        {
            var modelPath = Spm.Diffusion.Pipelines.DefaultModel.Resolve(parse.GetValue(model));
            var files = SpmFileArgument.ParseAll(parse.GetValue(spm) ?? [], Directory.Exists(modelPath) ? modelPath : null);
            var paths = files.Select(f => f.Path).ToList();
            var multipliers = files.Select(f => f.Multiplier ?? 1f).ToList();
            var result = OnnxAdapterExport.Export(modelPath, paths, multipliers, parse.GetValue(output)!, parse.GetValue(force), parse.GetValue(partial));
            console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"exported {paths.Count} SPM(s) [{string.Join(", ", paths.Select((p, i) => $"{Path.GetFileName(p)} x{multipliers[i]:0.###}"))}] over {result.LayerCount} layers: " +
                $"{result.ModelFile} + {result.AdapterFile} ({result.ParameterCount} tensors)"));
            return 0;
        });
        return cmd;
    }
}
