using Spm.Core;

namespace Spm.Diffusion.Onnx.Fp16;

/// <summary>What <see cref="Fp16PipelineConverter.Convert"/> wrote.</summary>
/// <param name="Components">The component folders converted (<c>text_encoder</c>, <c>unet</c>, ...).</param>
/// <param name="WeightBytes">Bytes of fp16 initializer data written.</param>
public sealed record Fp16ConversionResult(IReadOnlyList<string> Components, long WeightBytes);

/// <summary>
/// Writes an fp16 copy of a diffusers/optimum ONNX pipeline folder: every component with a <c>model.onnx</c>
/// (text encoder, UNet, VAE decoder and encoder) converted by <see cref="Fp16Converter.ToFp16"/> and saved as
/// <c>model.onnx</c> + <c>model.onnx_data</c> (the layout optimum writes), every other file (configs, tokenizer,
/// scheduler) copied.
/// </summary>
public static class Fp16PipelineConverter
{
    /// <summary>Converts <paramref name="source"/> into <paramref name="destination"/> (which must not exist unless <paramref name="overwrite"/>).</summary>
    /// <exception cref="IOException">The destination exists and <paramref name="overwrite"/> is off.</exception>
    /// <exception cref="SpmException">The source is not a pipeline folder.</exception>
    public static Fp16ConversionResult Convert(string source, string destination, bool overwrite = false)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(destination);
        if (!Directory.Exists(source)) throw new SpmInputNotFoundException(source, "pipeline folder");
        if (Directory.Exists(destination) && Directory.EnumerateFileSystemEntries(destination).Any() && !overwrite)
            throw new IOException($"'{destination}' already exists (use --force to overwrite).");
        var components = Directory.EnumerateDirectories(source)
            .Where(d => File.Exists(Path.Combine(d, OnnxModel.DefaultFileName)))
            .Select(Path.GetFileName).OfType<string>().Order(StringComparer.Ordinal).ToList();
        if (components.Count == 0) throw new SpmException($"'{source}' has no component folder with a {OnnxModel.DefaultFileName}.");
        Directory.CreateDirectory(destination);
        long bytes = 0;
        foreach (var file in Directory.EnumerateFiles(source, "*", SearchOption.AllDirectories))
        {
            var rel = Path.GetRelativePath(source, file);
            var dir = Path.GetDirectoryName(rel) ?? "";
            if (components.Contains(dir, StringComparer.Ordinal) && !IsConfig(file)) continue; // models and their data are rewritten
            var target = Path.Combine(destination, rel);
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target, overwrite);
        }
        foreach (var c in components)
        {
            var model = OnnxModel.Load(Path.Combine(source, c, OnnxModel.DefaultFileName));
            var half = OnnxModel.FromProto(Fp16Converter.ToFp16(model), model.BaseDirectory, model.FilePath);
            bytes += half.DescribeInitializers().Where(i => i.DataType == (int)Proto.TensorProto.Types.DataType.Float16).Sum(i => i.ByteLength);
            Directory.CreateDirectory(Path.Combine(destination, c));
            half.Save(Path.Combine(destination, c, OnnxModel.DefaultFileName), new OnnxSaveOptions(
                ExternalData: ExternalDataPolicy.Embed, ExternalizeAboveBytes: 1024, NewDataFileName: OnnxModel.DefaultFileName + "_data", Overwrite: overwrite));
        }
        return new Fp16ConversionResult(components, bytes);
    }

    private static bool IsConfig(string file) => !file.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase)
        && !file.EndsWith(".onnx_data", StringComparison.OrdinalIgnoreCase) && !file.EndsWith(".pb", StringComparison.OrdinalIgnoreCase);
}
