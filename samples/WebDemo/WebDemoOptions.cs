using System.Globalization;
using Spm.Core;
using Spm.Diffusion.Pipelines;

namespace Spm.Samples.WebDemo;

/// <summary>How the demo runs: which model and SPMs it loads, where it listens, the defaults the page starts with.</summary>
/// <param name="ModelFolder">The pipeline folder (diffusers/optimum ONNX layout).</param>
/// <param name="SpmFiles">SPM files to load; empty means none (the page then shows only base images).</param>
/// <param name="Port">TCP port on 127.0.0.1; 0 picks a free one (tests).</param>
/// <param name="Steps">Default denoising steps shown on the page.</param>
/// <param name="Size">Default image side in pixels; null = the model's own size.</param>
/// <param name="MaxConcurrentGenerations">Generations running at once; more requests wait their turn (ONNX Runtime already uses every core).</param>
/// <param name="Quiet">Log warnings only (tests).</param>
public sealed record WebDemoOptions(
    string ModelFolder,
    IReadOnlyList<string> SpmFiles,
    int Port = WebDemoOptions.DefaultPort,
    int Steps = 20,
    int? Size = null,
    int MaxConcurrentGenerations = 1,
    bool Quiet = false)
{
    /// <summary>The port used when none is given.</summary>
    public const int DefaultPort = 5080;

    /// <summary>Upper bound on steps a request may ask for, so one request cannot hold the machine for long.</summary>
    public const int MaxSteps = 100;

    /// <summary>Upper bound on the image side a request may ask for.</summary>
    public const int MaxSize = 1024;

    /// <summary>The usage line printed by <c>--help</c> and after a bad argument.</summary>
    public const string Usage =
        "usage: Spm.WebDemo [--model DIR] [--spm FILE.safetensors ...] [--port 5080] [--steps 20] [--size PX] [--concurrency 1]\n" +
        "  --model  default: $SPM_MODEL, else models/tiny-shapes\n" +
        "  --spm    repeatable; default: every MODEL/spm/*.safetensors";

    /// <summary>
    /// Parses command-line arguments. The model falls back to <see cref="DefaultModel.Resolve"/>; with no <c>--spm</c>,
    /// every <c>*.safetensors</c> in the model's <c>spm/</c> folder is loaded (sorted by name).
    /// </summary>
    /// <exception cref="SpmException">An unknown option, a missing or malformed value, or no model to be found.</exception>
    public static WebDemoOptions Parse(IReadOnlyList<string> args)
    {
        ArgumentNullException.ThrowIfNull(args);
        string? model = null;
        var spms = new List<string>();
        int port = DefaultPort, steps = 20, concurrency = 1;
        int? size = null;
        for (int i = 0; i < args.Count; i++)
        {
            string Value() => i + 1 < args.Count ? args[++i] : throw new SpmException($"{args[i]} needs a value.\n{Usage}");
            int Int(int min, int max)
            {
                var name = args[i];
                var text = Value();
                if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var v) || v < min || v > max)
                    throw new SpmException($"{name} must be an integer in {min}..{max}, got '{text}'.");
                return v;
            }
            switch (args[i])
            {
                case "--model": model = Value(); break;
                case "--spm": spms.Add(Value()); break;
                case "--port": port = Int(0, 65535); break;
                case "--steps": steps = Int(1, MaxSteps); break;
                case "--size": size = Int(8, MaxSize); break;
                case "--concurrency": concurrency = Int(1, 64); break;
                default: throw new SpmException($"unknown argument '{args[i]}'.\n{Usage}");
            }
        }
        var folder = DefaultModel.Resolve(model);
        if (spms.Count == 0)
        {
            var dir = Path.Combine(folder, "spm");
            if (Directory.Exists(dir))
                spms.AddRange(Directory.GetFiles(dir, "*.safetensors").Order(StringComparer.Ordinal));
        }
        return new WebDemoOptions(folder, spms, port, steps, size, concurrency);
    }
}
