using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Spm.Core;
using Spm.Core.SafeTensors;
using Spm.Training.Autodiff;

using Spm.Cli.Rendering;

namespace Spm.Cli.Commands;

/// <summary>
/// <c>spm grad --model DIR|unet.onnx --spm S.safetensors --multiplier M --inputs I.safetensors --out G.safetensors</c>:
/// gradients of <c>L = sum(out_sample * R)</c> with respect to every membrane tensor of S, written under
/// <c>grad.&lt;key in S&gt;</c> (for checking an export or the training engine against a reference framework).
/// </summary>
internal static class GradCommand
{
    public static Command Create(CliConsole console)
    {
        var model = new Option<string>("--model") { Description = "Pipeline folder, UNet folder or UNet .onnx file.", Required = true };
        var spm = new Option<string>("--spm") { Description = "The SPM file whose membranes are differentiated (a bare name such as 'circle' means MODEL/spm/circle.safetensors when no such file is in the current folder).", Required = true };
        var multiplier = new Option<float>("--multiplier") { Description = "Membrane multiplier (gate) for every batch row.", DefaultValueFactory = _ => 1f };
        var inputs = new Option<string>("--inputs") { Description = "safetensors with sample, timestep, encoder_hidden_states and R (an SDXL UNet also needs text_embeds and time_ids).", Required = true };
        var output = new Option<string>("--out") { Description = "Output safetensors file (grad.<key> for every down/up tensor).", Required = true };
        var threads = new Option<int>("--threads") { Description = "ONNX Runtime intra-op threads (0 = ORT default).", DefaultValueFactory = _ => 0 }.InRange(0);
        var force = new Option<bool>("--force") { Description = "Overwrite the output file if it exists." };
        var cmd = new Command("grad", "Gradients of sum(out_sample * R) with respect to every membrane tensor of an SPM file.")
        {
            model, spm, multiplier, inputs, output, threads, force,
        };
        cmd.SetAction(parse =>
        {
            // Inputs first, before any model loads: a missing file is exit 3, whichever it is.
            var modelPath = parse.GetValue(model)!;
            if (!File.Exists(modelPath) && !Directory.Exists(modelPath)) throw new SpmInputNotFoundException(modelPath, "--model");
            var spmPath = SpmFileArgument.Parse(parse.GetValue(spm)!, Directory.Exists(modelPath) ? modelPath : null, allowMultiplier: false).Path;
            var inputsPath = parse.GetValue(inputs)!;
            if (!File.Exists(inputsPath)) throw new SpmInputNotFoundException(inputsPath, "--inputs file");
            var outPath = parse.GetValue(output)!;
            if (File.Exists(outPath) && !parse.GetValue(force))
                throw new IOException($"'{outPath}' already exists (use --force to overwrite).");
            float m = parse.GetValue(multiplier);
            var watch = Stopwatch.StartNew();
            var (grads, loss) = SpmGradients.Compute(modelPath, spmPath, m, inputsPath,
                new GradientSessionSettings(IntraOpThreads: parse.GetValue(threads)));
            var metadata = new Dictionary<string, string>
            {
                ["loss"] = "sum(out_sample * R)",
                ["loss_value"] = loss.ToString("R", CultureInfo.InvariantCulture),
                ["multiplier"] = m.ToString("R", CultureInfo.InvariantCulture),
                ["spm"] = Path.GetFileName(spmPath),
            };
            SafeTensorsWriter.WriteFloat(outPath, grads, metadata, overwrite: true);
            console.Out.WriteLine($"{grads.Count} gradient tensors, loss {loss.ToString("G9", CultureInfo.InvariantCulture)}, {watch.Elapsed.TotalSeconds:F1} s -> {outPath}");
            return 0;
        });
        return cmd;
    }
}
