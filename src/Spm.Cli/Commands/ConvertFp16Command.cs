using System.CommandLine;
using System.Globalization;
using Spm.Diffusion.Onnx.Fp16;

using Spm.Cli.Rendering;

namespace Spm.Cli.Commands;

/// <summary>
/// <c>spm convert-fp16 --model DIR --out DIR [--force]</c>: an fp16 copy of a whole pipeline folder (text encoder, UNet,
/// VAE), laid out as optimum's <c>--fp16</c> exports are (<c>model.onnx</c> + <c>model.onnx_data</c>).
/// </summary>
internal static class ConvertFp16Command
{
    public static Command Create(CliConsole console)
    {
        var model = new Option<string>("--model") { Description = "Pipeline folder (or ORG/NAME in the local Hugging Face cache) to convert.", Required = true };
        var output = new Option<string>("--out") { Description = "Folder to write the fp16 pipeline into.", Required = true };
        var force = new Option<bool>("--force") { Description = "Write into an existing, non-empty folder." };
        var cmd = new Command("convert-fp16", "Write an fp16 copy of a pipeline folder (every component; configs and tokenizer copied).") { model, output, force };
        cmd.SetAction(parse =>
        {
            var source = Spm.Diffusion.Pipelines.DefaultModel.Resolve(parse.GetValue(model)!);
            var result = Fp16PipelineConverter.Convert(source, parse.GetValue(output)!, parse.GetValue(force));
            console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"converted {string.Join(", ", result.Components)} to fp16 ({result.WeightBytes / 1048576.0:0.#} MB of weights) -> {Path.GetFullPath(parse.GetValue(output)!)}"));
            return 0;
        });
        return cmd;
    }
}
