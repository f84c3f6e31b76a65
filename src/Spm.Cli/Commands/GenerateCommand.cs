using System.CommandLine;
using System.Globalization;
using System.Security.Cryptography;
using Spm.Cli.Rendering;
using Spm.Core;
using Spm.Core.Gating;
using Spm.Core.SafeTensors;
using Spm.Core.Tensors;
using Spm.Diffusion.Images;
using Spm.Diffusion.Pipelines;
using Spm.Diffusion.Runtime;

namespace Spm.Cli.Commands;

/// <summary>
/// <c>spm generate --model DIR --prompt P [...]</c>: text-to-image with the ONNX pipeline, a progress bar, PNG files
/// with a <c>parameters</c> chunk, optional initial/final latents as safetensors.
/// </summary>
internal static class GenerateCommand
{
    /// <summary>The options of the verb (kept together so other features can add theirs beside them).</summary>
    internal sealed class Options
    {
        public readonly Option<string?> Model = new("--model") { Description = CliGlobals.ModelHelp };
        public readonly Option<string?> Revision = new("--revision") { Description = "With --model ORG/NAME: the branch, tag or commit in the Hugging Face cache (default: main). Never downloads." };
        public readonly Option<string> Prompt = new("--prompt", "-p") { Description = "The prompt.", Required = true };
        public readonly Option<string> Negative = new("--negative", "-n") { Description = "The negative prompt.", DefaultValueFactory = _ => "" };
        public readonly Option<int?> Steps = new Option<int?>("--steps") { Description = "Denoising steps, 1 to 1000 (default: the model's spm_generate_defaults.json, else 30)." }.InRange(1, 1000);
        public readonly Option<double?> Guidance = new Option<double?>("--guidance", "--cfg") { Description = "Classifier-free guidance scale, 0 or more; 1 = no guidance (default: the model's spm_generate_defaults.json, else 7.5)." }.InRange(0);
        public readonly Option<string?> Scheduler = new("--scheduler") { Description = "pndm, ddim, euler, euler-a, dpmpp-2m or lms (default: the model's)." };
        public readonly Option<ulong?> Seed = new("--seed") { Description = "Seed of the first image (image i uses seed+i). Default: random, printed." };
        public readonly Option<int?> Width = new Option<int?>("--width", "-W") { Description = SizeHelp("Width") }.InRange(1, ModelFolder.MaxImageSide);
        public readonly Option<int?> Height = new Option<int?>("--height", "-H") { Description = SizeHelp("Height") }.InRange(1, ModelFolder.MaxImageSide);
        public readonly Option<int?> Count = new Option<int?>("--count") { Description = "Number of images, 1 to 10000 (default 1, or the batch of --init-latents)." }.InRange(1, 10_000);
        public readonly Option<int> Batch = new Option<int>("--batch") { Description = "Images per UNet batch, 1 to 256.", DefaultValueFactory = _ => 1 }.InRange(1, 256);
        public readonly Option<string?> Out = new("--out", "-o") { Description = "Output .png file, or a folder (default: outputs/; files NNNNN-SEED.png)." };
        public readonly Option<string> Provider = new("--provider") { Description = "cpu or cuda (falls back to cpu with the reason).", DefaultValueFactory = _ => "cpu" };
        public readonly Option<int> Device = new Option<int>("--device") { Description = "CUDA device index.", DefaultValueFactory = _ => 0 }.InRange(0);
        public readonly Option<int> Threads = new Option<int>("--threads") { Description = "Intra-op threads (0 = ONNX Runtime's choice).", DefaultValueFactory = _ => 0 }.InRange(0);
        public readonly Option<bool> Deterministic = new("--deterministic") { Description = "Prefer reproducible kernels over speed (CUDA)." };
        public readonly Option<bool> Force = new("--force") { Description = "Overwrite existing output files." };
        public readonly Option<string?> InitLatents = new("--init-latents") { Description = "safetensors file with tensor 'latents' [B,4,h,w] of unit-variance noise." };
        public readonly Option<string?> SaveLatents = new("--save-latents") { Description = "Write the final latents (before the VAE) as tensor 'latents' to this safetensors file." };

        public readonly Option<string?> OriginalSize = new("--original-size") { Description = "SDXL: the original size WIDTHxHEIGHT the model is told the picture had (time_ids; default: the image size, as diffusers)." };
        public readonly Option<string?> Crop = new("--crop") { Description = "SDXL: the crop's top-left corner TOP,LEFT in pixels (time_ids; default 0,0)." };
        public readonly Option<string?> TargetSize = new("--target-size") { Description = "SDXL: the target size WIDTHxHEIGHT (time_ids; default: the image size)." };

        public readonly Option<bool> Compare = new("--compare") { Description = "With --spm: also write the base image (every SPM off, same seed) as NAME.base.png, to compare." };

        public readonly SpmGenerateOptions Spm = new();

        /// <summary>The help of --width/--height: the real constraint is the model's, so it is named, not a number.</summary>
        internal static string SizeHelp(string what) =>
            $"{what} in pixels, a multiple of the model's factor (its VAE factor x 2^UNet down-sampling levels: 16 for the built-in model, 64 for SD 1.x). Default: the model's size.";

        public IEnumerable<Option> All() =>
            [Model, Revision, Prompt, Negative, Steps, Guidance, Scheduler, Seed, Width, Height, Count, Batch, Out, Provider, Device, Threads, Deterministic, Force, InitLatents, SaveLatents, OriginalSize, Crop, TargetSize, Compare, .. Spm.All()];
    }

    public static Command Create(CliConsole console)
    {
        var o = new Options();
        var cmd = new Command("generate", "Generate images from a prompt with an ONNX Stable Diffusion model.");
        foreach (var opt in o.All()) cmd.Options.Add(opt);
        cmd.SetAction((parse, ct) => RunAsync(console, parse, o, ct));
        return cmd;
    }

    private static async Task<int> RunAsync(CliConsole console, ParseResult parse, Options o, CancellationToken ct)
    {
        // Everything the command line says is checked here, before any model loads: the model folder, the SPM files,
        // the sizes against the model's real constraint, the input and output files.
        var folder = DefaultModel.Resolve(parse.GetValue(o.Model), parse.GetValue(o.Revision));
        var spmFiles = o.Spm.Parse(parse, folder);
        var library = o.Spm.OpenLibrary(parse);
        var model = ModelFolder.Open(folder);
        InputChecks.ImageSide(model, "--width", parse.GetValue(o.Width));
        InputChecks.ImageSide(model, "--height", parse.GetValue(o.Height));
        var originalSize = ParseSize("--original-size", parse.GetValue(o.OriginalSize));
        var targetSize = ParseSize("--target-size", parse.GetValue(o.TargetSize));
        var crop = ParseCrop(parse.GetValue(o.Crop));
        if (model.Family != Spm.Diffusion.Pipelines.Families.ModelFamily.StableDiffusionXL && (originalSize ?? targetSize ?? (crop is null ? null : (0, 0))) is not null)
            console.Error.WriteLine($"spm generate: warning: --original-size, --crop and --target-size are SDXL's size conditioning; '{model.Name}' is {Spm.Diffusion.Pipelines.Families.ModelFamilies.DisplayName(model.Family)} and ignores them.");
        var provider = ProviderOption.Parse(parse.GetValue(o.Provider));
        bool force = parse.GetValue(o.Force);
        var seed = parse.GetValue(o.Seed) ?? RandomSeed();
        FloatTensor? init = null;
        if (parse.GetValue(o.InitLatents) is { } initPath) init = ReadLatents(initPath);
        int count = parse.GetValue(o.Count) ?? init?.Shape[0] ?? 1;
        var saveLatents = parse.GetValue(o.SaveLatents);
        if (saveLatents is not null && !force && File.Exists(saveLatents))
            throw new IOException($"'{saveLatents}' already exists (use --force to overwrite).");

        // Output names are fixed (and checked) before any work, so a long run never ends in a refused write.
        var targets = OutputPaths(parse.GetValue(o.Out), count, seed, force);
        bool compare = parse.GetValue(o.Compare);
        if (compare && spmFiles.Count == 0 && library is null) throw new SpmException("--compare needs at least one --spm or a --library (it writes the image without them beside the one with them).");
        var baseTargets = compare ? targets.Select(BasePath).ToArray() : [];
        if (!force)
            foreach (var p in baseTargets)
                if (File.Exists(p)) throw new IOException($"'{p}' already exists (use --force to overwrite).");

        var spms = o.Spm.Load(console, parse, folder, spmFiles, library);
        using var pipeline = StableDiffusionPipeline.Load(folder, new PipelineOptions
        {
            UNetSource = spms?.UNetSource,
            Runtime = new OnnxRuntimeOptions
            {
                Provider = provider,
                DeviceId = parse.GetValue(o.Device),
                IntraOpThreads = parse.GetValue(o.Threads),
                Deterministic = parse.GetValue(o.Deterministic),
            },
        });
        if (pipeline.ProviderFallbackReason is { } why) console.Error.WriteLine($"spm: warning: {why}; running on the CPU.");
        InputChecks.WarnIfTruncated(console, pipeline.Tokenizer, parse.GetValue(o.Prompt) ?? "", "the prompt");
        InputChecks.WarnIfTruncated(console, pipeline.Tokenizer, parse.GetValue(o.Negative) ?? "", "the negative prompt");

        var sampling = ModelGenerationDefaults.Load(folder);
        if (sampling is not null && (parse.GetValue(o.Steps) is null || parse.GetValue(o.Guidance) is null))
            console.Error.WriteLine($"spm generate: sampling options not given come from the model's {ModelGenerationDefaults.FileName} ({sampling}).");
        var request = new GenerationRequest
        {
            Prompt = parse.GetValue(o.Prompt) ?? "",
            NegativePrompt = parse.GetValue(o.Negative) ?? "",
            Steps = parse.GetValue(o.Steps) ?? sampling?.Steps ?? 30,
            GuidanceScale = parse.GetValue(o.Guidance) ?? sampling?.GuidanceScale ?? 7.5,
            Scheduler = parse.GetValue(o.Scheduler),
            Seed = seed,
            Width = parse.GetValue(o.Width),
            Height = parse.GetValue(o.Height),
            Count = count,
            BatchSize = Math.Min(parse.GetValue(o.Batch), count),
            InitLatents = init,
            OriginalSize = originalSize,
            CropTopLeft = crop ?? default,
            TargetSize = targetSize,
            Conditioner = o.Spm.CreateConditioner(console, spmFiles, parse, spms, pipeline, parse.GetValue(o.Prompt) ?? ""),
        };

        var result = await ProgressBars.RunAsync(console, "generating", request.Count, "step", async bar =>
        {
            var progress = new ActionProgress<GenerationProgress>(p => bar.Report(new ProgressUpdate(p.Step, p.TotalSteps, Describe(p))));
            return await pipeline.GenerateAsync(request, progress, ct);
        });

        foreach (var image in result.Images)
        {
            var png = PngImage.Encode(image.Rgb, image.Width, image.Height, image.Parameters);
            PngImage.Write(targets[image.Index], png, force);
            console.Out.WriteLine($"wrote {targets[image.Index]} ({image.Width}x{image.Height}, seed {image.Seed})");
        }
        if (compare)
        {
            // The same request with every membrane's multiplier fixed at 0: bit-identical to the original model.
            var off = spms!.CreateConditioner(pipeline, spms.Layout.Sets.Select(_ => new GateSettings(FixedMultiplier: 0f)).ToList());
            var baseResult = await pipeline.GenerateAsync(request with { Conditioner = off }, null, ct);
            foreach (var image in baseResult.Images)
            {
                PngImage.Write(baseTargets[image.Index], PngImage.Encode(image.Rgb, image.Width, image.Height, image.Parameters), force);
                console.Out.WriteLine($"wrote {baseTargets[image.Index]} ({image.Width}x{image.Height}, seed {image.Seed}, without SPMs)");
            }
        }
        if (saveLatents is not null)
        {
            SafeTensorsWriter.WriteFloat(saveLatents, new Dictionary<string, FloatTensor> { ["latents"] = result.Latents },
                new Dictionary<string, string> { ["seed"] = seed.ToString(CultureInfo.InvariantCulture), ["scheduler"] = result.SchedulerName }, overwrite: force);
            console.Out.WriteLine($"wrote {saveLatents} (latents {result.Latents.ShapeString})");
        }
        var t = result.Timings;
        console.Error.WriteLine(FormattableString.Invariant(
            $"{result.SchedulerName}: {t.UNetCalls} UNet calls in {t.UNet.TotalSeconds:0.00}s ({(t.UNet.TotalSeconds > 0 ? t.UNetCalls / t.UNet.TotalSeconds : 0):0.00} it/s), total {t.Total.TotalSeconds:0.00}s on {pipeline.Provider.ToString().ToLowerInvariant()}"));
        return 0;
    }

    /// <summary>WIDTHxHEIGHT (as --width/--height and the PNG's Size field) → (height, width), diffusers' order.</summary>
    internal static (int Height, int Width)? ParseSize(string option, string? text)
    {
        if (text is null) return null;
        var parts = text.Split('x', 'X');
        if (parts.Length == 2
            && int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var w)
            && int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var h)
            && w is > 0 and <= 1 << 16 && h is > 0 and <= 1 << 16)
            return (h, w);
        throw new SpmException($"{option} must be WIDTHxHEIGHT in pixels, each 1 to 65536 (e.g. 1024x1024), got '{text}'.");
    }

    /// <summary>TOP,LEFT → (top, left).</summary>
    internal static (int Top, int Left)? ParseCrop(string? text)
    {
        if (text is null) return null;
        var parts = text.Split(',');
        if (parts.Length == 2
            && int.TryParse(parts[0].Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var top)
            && int.TryParse(parts[1].Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var left)
            && top <= 1 << 16 && left <= 1 << 16)
            return (top, left);
        throw new SpmException($"--crop must be TOP,LEFT in pixels, each 0 to 65536 (e.g. 0,0), got '{text}'.");
    }

    private static string BasePath(string path) => Path.Combine(Path.GetDirectoryName(path) ?? "", Path.GetFileNameWithoutExtension(path) + ".base.png");

    private static string Describe(GenerationProgress p) => p.Stage switch
    {
        GenerationStage.Encoding => "encoding prompt",
        GenerationStage.Decoding => "decoding",
        GenerationStage.Done => "done",
        _ => p.ImageCount > 1 ? $"image {Math.Min(p.ImagesDone + 1, p.ImageCount)}/{p.ImageCount}" : "denoising",
    };

    private static ulong RandomSeed()
    {
        // Seeds shown to people stay short enough to retype: 0..2^32-1, like other image tools.
        Span<byte> b = stackalloc byte[4];
        RandomNumberGenerator.Fill(b);
        return BitConverter.ToUInt32(b);
    }

    private static FloatTensor ReadLatents(string path)
    {
        using var file = SafeTensorsFile.Open(path);
        if (!file.Contains("latents")) throw new SpmFormatException(path, "latents", "the file has no tensor 'latents'.");
        var t = file.ReadFloat("latents");
        if (t.Rank != 4) throw new SpmFormatException(path, "latents", $"expected [B,4,h,w], got {t.ShapeString}.");
        return t;
    }

    /// <summary>
    /// The file of each image: <c>--out x.png</c> names the single image (x-0.png, x-1.png, ... for several);
    /// a folder gets <c>NNNNN-SEED.png</c> numbered after the highest number already there.
    /// </summary>
    internal static string[] OutputPaths(string? output, int count, ulong seed, bool force)
    {
        output ??= "outputs";
        string[] paths;
        if (output.EndsWith(".png", StringComparison.OrdinalIgnoreCase))
        {
            if (count == 1) paths = [output];
            else
            {
                var stem = output[..^4];
                paths = Enumerable.Range(0, count).Select(i => $"{stem}-{i}.png").ToArray();
            }
        }
        else
        {
            int next = 0;
            if (Directory.Exists(output))
                foreach (var f in Directory.EnumerateFiles(output, "*.png"))
                {
                    var name = Path.GetFileName(f);
                    int dash = name.IndexOf('-');
                    if (dash > 0 && int.TryParse(name.AsSpan(0, dash), NumberStyles.None, CultureInfo.InvariantCulture, out var n)) next = Math.Max(next, n + 1);
                }
            paths = Enumerable.Range(0, count).Select(i => Path.Combine(output, $"{next + i:D5}-{unchecked(seed + (ulong)i)}.png")).ToArray();
        }
        if (!force)
            foreach (var p in paths)
                if (File.Exists(p)) throw new IOException($"'{p}' already exists (use --force to overwrite).");
        return paths;
    }

}
