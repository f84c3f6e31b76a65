// Usage: dotnet run --project samples/QuickStart -c Release -- [MODEL_FOLDER] [SPM_FILE ...]   (PNGs go to ./quickstart-output)
// Defaults: the built-in model models/tiny-shapes (or $SPM_MODEL) and its shipped "circle" SPM (MODEL/spm/circle.safetensors).
using Spm.Core;
using Spm.Diffusion.Pipelines;
using Spm.Samples.QuickStart;

try
{
    var model = DefaultModel.Resolve(args.Length > 0 ? args[0] : null);
    string[] spmFiles = args.Length > 1 ? args[1..] : [Path.Combine(model, "spm", "circle.safetensors")];
    if (args.Length <= 1 && !File.Exists(spmFiles[0]))
        throw new SpmException($"the model '{model}' has no spm/circle.safetensors; name the SPM files after the model folder.");

    // The circle SPM erases "circle" (towards squares). The first prompt names the concept, so facilitated transport
    // opens its gate fully and the circle becomes a square (seed 1 is the README's picture). The second names no circle:
    // the gate, calibrated against the empty prompt (docs/gate.md), stays shut, so the triangle is the base model's.
    var written = await QuickStart.RunAsync(
        new QuickStartOptions(model, spmFiles, ["a red circle on a white background", "a green triangle on a black background"],
            "quickstart-output", Seed: 1),
        Console.Out);
    Console.WriteLine($"wrote {written.Count} images");
    return 0;
}
catch (SpmException ex)
{
    Console.Error.WriteLine($"error: {ex.Message}");
    return 1;
}
