using System.CommandLine;
using System.Diagnostics;
using Spectre.Console;
using System.Globalization;
using Spm.Cli.Rendering;
using Spm.Core;
using Spm.Diffusion.Text;
using Spm.Shapes.Building;
using Spm.Shapes.Model;
using Spm.Shapes.World;

namespace Spm.Cli.Commands;

/// <summary>
/// <c>spm build-model --preset tiny-sd1|sd15|sd21|tiny-sdxl|sdxl [--unet-config FILE] --seed S --out DIR</c>: writes an SD-architecture
/// ONNX pipeline with random weights, built by the project's own graph builders (benchmarks, tests, the
/// starting point of the built-in model).
/// </summary>
internal static class BuildModelCommand
{
    public static Command Create(CliConsole console)
    {
        var preset = new Option<string>("--preset")
        {
            Description = $"Sizes: {string.Join(", ", PipelinePresets.Names)}, or tiny-shapes (trains the built-in model from scratch).",
            DefaultValueFactory = _ => "tiny-sd1",
        };
        var unetConfig = new Option<string?>("--unet-config") { Description = "A diffusers unet config.json replacing the preset's UNet (custom sizes; text width follows cross_attention_dim)." };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the random weights.", DefaultValueFactory = _ => 0 };
        var output = new Option<string>("--out") { Description = "Pipeline folder to write.", Required = true };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "Folder with the CLIP vocab.json and merges.txt to copy. Default: ../shared/clip-tokenizer." };
        var unetOnly = new Option<bool>("--unet-only") { Description = "Write only unet/ (for benchmarks)." };
        var external = new Option<bool?>("--external-data") { Description = "Store the UNet weights in unet/weights.pb (default: when larger than 64 MB)." };
        var force = new Option<bool>("--force") { Description = "Replace an existing folder." };
        var aeSteps = new Option<int?>("--ae-steps") { Description = "tiny-shapes: autoencoder training steps (default 450)." };
        var aeChroma = new Option<double?>("--ae-chroma-weight") { Description = "tiny-shapes: weight of colour against lightness in the autoencoder's reconstruction loss (default 3, the shipped recipe; 0 or 1: plain RGB MSE)." };
        var aeNoise = new Option<double?>("--ae-latent-noise") { Description = "tiny-shapes: standard deviation of noise added to the latent the decoder reads while the autoencoder trains (default 0: none); keeps close colours apart in the latent." };
        var decoderSteps = new Option<int?>("--decoder-steps") { Description = "tiny-shapes: decoder refinement steps on the frozen encoder's latents (default 1500; 0 skips)." };
        var textTokenStd = new Option<double?>("--text-token-std") { Description = "tiny-shapes: standard deviation of the frozen text encoder's token embedding for stages that do not give their own (default 1; CLIP's own init is 0.02)." };
        var unetStages = new Option<string?>("--unet-stages") { Description = "tiny-shapes: UNet stages as STEPS:LR[:TOKEN_STD][:text],... (text: the stage also trains the text encoder; default 2600:2e-3:0.02,3000:1e-3:0.02,3000:1.5e-3,2000:1e-3, the shipped model's recipe)." };
        var snapshotEvery = new Option<int?>("--snapshot-every") { Description = "tiny-shapes: with --work-dir, also snapshot the UNet every N steps (default 500; 0: only at the end)." };
        var unetSteps = new Option<int?>("--unet-steps") { Description = "tiny-shapes: train the UNet in one stage of N steps instead of the default stages (0 with --continue-unet writes the model from the snapshots)." };
        var unetBatch = new Option<int?>("--unet-batch") { Description = "tiny-shapes: latents per UNet step (default 24)." };
        var pool = new Option<int?>("--latent-pool") { Description = "tiny-shapes: pictures encoded for the UNet phase (default 8000)." };
        var work = new Option<string?>("--work-dir") { Description = "tiny-shapes: folder for phase snapshots (a finished autoencoder there is reused)." };
        var resumeBuild = new Option<bool>("--resume") { Description = "tiny-shapes: resume an interrupted build from its last UNet snapshot in --work-dir (same options; the result equals an uninterrupted build's)." };
        var continueUnet = new Option<bool>("--continue-unet") { Description = "tiny-shapes: start the UNet from the snapshot in --work-dir (train it further)." };
        var trainText = new Option<bool?>("--train-text-encoder") { Description = "tiny-shapes: train the text encoder with the UNet in every stage (all but its token table). With --continue-unet, a text_encoder.safetensors in --work-dir (left by a run that trained it) is loaded either way." };
        var unetLr = new Option<double?>("--unet-lr") { Description = "tiny-shapes: peak learning rate of that one stage (default 1e-3)." };
        var threads = new Option<int>("--threads") { Description = "tiny-shapes: ONNX Runtime threads (0: all cores).", DefaultValueFactory = _ => 0 };
        var baseModel = new Option<string?>("--base-model") { Description = "tiny-shapes: start from a trained pipeline folder (its UNet, decoder, text encoder and scaling factor; an encoder is trained against its frozen decoder with --ae-steps steps). Combine with --decoder-steps 0 to keep its decoder." };
        var captions = new Option<string?>("--captions") { Description = "tiny-shapes: caption wording, basic (one word per value, models v1-v3) or varied (synonyms, templates, plurals, capitals; model v4)." };
        var patternWeights = new Option<string?>("--pattern-weights") { Description = "tiny-shapes: relative frequencies of plain,striped,dotted pictures (default uniform), e.g. 1,2,1.5." };
        var stripePeriod = new Option<float?>("--stripe-period") { Description = "tiny-shapes: stripe period in pixels (default 8, models v1-v3; 12 puts a period on three latent cells instead of two)." };
        var stripeAngle = new Option<float?>("--stripe-angle") { Description = "tiny-shapes: fix the stripes at this angle in degrees in image space (0: horizontal) instead of turning them with the shape (models v1-v3)." };
        var dotSpacing = new Option<float?>("--dot-spacing") { Description = "tiny-shapes: distance between dot centres in pixels (default 7, models v1-v4; the radius scales with it)." };
        var dotAngle = new Option<float?>("--dot-angle") { Description = "tiny-shapes: fix the dot lattice at this angle in degrees in image space (anchored at the image's origin) instead of turning it with the shape (models v1-v4)." };
        var worldStyle = new Option<string?>("--style") { Description = "tiny-shapes: the world's drawing style, flat (default) or outlined (for a derived model, with --base-model)." };
        var checkAe = new Option<int?>("--check-autoencoder") { Description = "tiny-shapes: after the autoencoder and decoder, judge N round trips of fresh pictures through them (what the decoder can draw at all)." };
        var aeOnly = new Option<bool>("--autoencoder-only") { Description = "tiny-shapes: stop after the autoencoder and decoder (and --check-autoencoder, 200 pictures by default): snapshots in --work-dir, no pipeline." };
        var trainEncoder = new Option<bool>("--train-encoder") { Description = "tiny-shapes: with --base-model that ships vae_encoder/, train its encoder further (--ae-steps) against the frozen decoder (a world in another style) instead of taking it as it is." };
        var graphCache = new GraphCacheOption();
        var cmd = new Command("build-model", "Write an SD-architecture ONNX pipeline (random weights) built by spm's own graph builders.")
        {
            preset, unetConfig, seed, output, tokenizer, unetOnly, external, force, aeSteps, unetSteps, unetBatch, pool, threads, work, continueUnet, resumeBuild, unetLr, decoderSteps, snapshotEvery, textTokenStd, unetStages, trainText, aeNoise, aeChroma,
            baseModel, captions, patternWeights, worldStyle, stripePeriod, stripeAngle, graphCache.Folder, graphCache.Off,
            checkAe, aeOnly, dotSpacing, dotAngle, trainEncoder,
        };
        cmd.SetAction(async (parse, ct) =>
        {
            if (string.Equals(parse.GetValue(preset), TinyShapesModel.Preset.Name, StringComparison.OrdinalIgnoreCase))
            {
                var d = new TinyShapesTrainingOptions();
                var o = d with
                {
                    Seed = parse.GetValue(seed),
                    AutoencoderSteps = parse.GetValue(aeSteps) ?? d.AutoencoderSteps,
                    AutoencoderLatentNoise = parse.GetValue(aeNoise) ?? d.AutoencoderLatentNoise,
                    AutoencoderChromaWeight = parse.GetValue(aeChroma) ?? d.AutoencoderChromaWeight,
                    DecoderSteps = parse.GetValue(decoderSteps) ?? d.DecoderSteps,
                    SnapshotEvery = parse.GetValue(snapshotEvery) ?? d.SnapshotEvery,
                    TextTokenStd = parse.GetValue(textTokenStd) ?? d.TextTokenStd,
                    UNetStages = ParseStages(parse.GetValue(unetStages), parse.GetValue(unetSteps), parse.GetValue(unetLr)) ?? d.UNetStages,
                    UNetBatch = parse.GetValue(unetBatch) ?? d.UNetBatch,
                    LatentPoolSize = parse.GetValue(pool) ?? d.LatentPoolSize,
                    Threads = parse.GetValue(threads),
                    GraphCacheFolder = graphCache.Resolve(parse),
                    WorkFolder = parse.GetValue(work),
                    ContinueUNet = parse.GetValue(continueUnet),
                    Resume = parse.GetValue(resumeBuild),
                    TrainTextEncoder = parse.GetValue(trainText) ?? d.TrainTextEncoder,
                    BaseModel = parse.GetValue(baseModel),
                    AutoencoderOnly = parse.GetValue(aeOnly),
                    TrainBaseEncoder = parse.GetValue(trainEncoder),
                    AutoencoderCheckImages = parse.GetValue(checkAe) ?? (parse.GetValue(aeOnly) ? 200 : 0),
                    World = d.World with
                    {
                        Captions = parse.GetValue(captions) is { } cs
                            ? Enum.TryParse<CaptionStyle>(cs, ignoreCase: true, out var style) ? style : throw new SpmException($"--captions: '{cs}' is neither basic nor varied.")
                            : d.World.Captions,
                        Style = parse.GetValue(worldStyle) is { } st
                            ? Enum.TryParse<ShapeStyle>(st, ignoreCase: true, out var sv) ? sv : throw new SpmException($"--style: '{st}' is neither flat nor outlined.")
                            : d.World.Style,
                        PatternWeights = parse.GetValue(patternWeights) is { } pw
                            ? pw.Split(',').Select(x => double.TryParse(x, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) ? v : throw new SpmException($"--pattern-weights: '{x}' is not a number.")).ToArray()
                            : d.World.PatternWeights,
                        StripePeriod = parse.GetValue(stripePeriod) ?? d.World.StripePeriod,
                        StripeAngle = parse.GetValue(stripeAngle) is { } deg ? deg * MathF.PI / 180f : d.World.StripeAngle,
                        DotSpacing = parse.GetValue(dotSpacing) ?? d.World.DotSpacing,
                        DotAngle = parse.GetValue(dotAngle) is { } dotDeg ? dotDeg * MathF.PI / 180f : d.World.DotAngle,
                    },
                };
                return await TrainTinyShapes(console, parse.GetValue(output)!, parse.GetValue(tokenizer), o, parse.GetValue(force), ct);
            }
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
            // Progress on stderr, as every verb's: stdout keeps the result line.
            console.Messages.Progress()
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
                .Start(ctx =>
                {
                    var task = ctx.AddTask($"building {p.Name}", maxValue: 1.0);
                    PipelineWriter.Write(outDir, p, parse.GetValue(seed), options,
                        new ActionProgress<PipelineWriteProgress>(r =>
                        {
                            task.Description = $"{p.Name}: {r.Component}";
                            task.Value = r.Fraction;
                        }), ct);
                    task.Value = 1.0;
                });
            long unetParams = UNetBuilder.Create(p.UNet, 0).ParameterCount;
            console.Out.WriteLine($"wrote {Path.GetFullPath(outDir)} ({p.Name}, seed {parse.GetValue(seed)}, UNet {unetParams:N0} parameters) in {sw.Elapsed.TotalSeconds:F1} s");
            return 0;
        });
        return cmd;
    }

    /// <summary>Trains the built-in tiny-shapes model from scratch (see docs/tiny-shapes.md) with a progress bar per phase.</summary>
    private static async Task<int> TrainTinyShapes(CliConsole console, string outDir, string? tokenizerFolder, TinyShapesTrainingOptions options, bool force, CancellationToken ct)
    {
        var tok = tokenizerFolder ?? ClipTokenizer.FindFolder();
        if (tok is null) throw new SpmException("No CLIP tokenizer found: pass --tokenizer DIR (a folder with vocab.json and merges.txt).");
        var sw = Stopwatch.StartNew();
        var report = await ProgressBars.RunAsync(console, "tiny-shapes", options.AutoencoderSteps, "it", bar =>
            TinyShapesModel.TrainAsync(outDir, tok, options, force, new ActionProgress<TinyShapesProgress>(p =>
                bar.Report(new ProgressUpdate(p.Step, p.Steps,
                    double.IsNaN(p.Loss) ? p.Phase : string.Create(CultureInfo.InvariantCulture, $"{p.Phase} loss {p.Loss:F4}")))), ct));
        if (report.ReconstructionFidelity is { } check) WriteReconstructionCheck(console, check);
        if (options.AutoencoderOnly)
        {
            console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"autoencoder {Phase(report.AutoencoderTime, report.AutoencoderLoss, "reconstruction MSE")}, decoder {Phase(report.DecoderTime, report.DecoderLoss, "MSE")}; snapshots in {Path.GetFullPath(options.WorkFolder ?? ".")}, no pipeline written (--autoencoder-only)"));
            return 0;
        }
        var log = new System.Text.StringBuilder("phase,step,loss\n");
        for (int i = 0; i < report.AutoencoderLosses.Count; i++) log.Append(CultureInfo.InvariantCulture, $"autoencoder,{i + 1},{report.AutoencoderLosses[i]:G6}\n");
        for (int i = 0; i < report.DecoderLosses.Count; i++) log.Append(CultureInfo.InvariantCulture, $"decoder,{i + 1},{report.DecoderLosses[i]:G6}\n");
        for (int i = 0; i < report.UNetLosses.Count; i++) log.Append(CultureInfo.InvariantCulture, $"unet,{i + 1},{report.UNetLosses[i]:G6}\n");
        Spm.Core.IO.AtomicFile.WriteAllText(Path.Combine(outDir, "training-log.csv"), log.ToString());
        console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"wrote {Path.GetFullPath(outDir)} (tiny-shapes, seed {options.Seed}) in {sw.Elapsed.TotalMinutes:F1} min: autoencoder {Phase(report.AutoencoderTime, report.AutoencoderLoss, "reconstruction MSE")}, decoder {Phase(report.DecoderTime, report.DecoderLoss, "MSE")}, encode {report.EncodeTime.TotalMinutes:F1} min (scaling factor {report.ScalingFactor}, pool {report.PoolScalingFactor}), UNet {report.UNetTime.TotalMinutes:F1} min (noise MSE {report.UNetLoss:F4})"));
        return 0;
    }

    /// <summary>A training phase's time and final loss; a phase that did not train in this run (loaded from a snapshot, taken from the base model or skipped) has no loss to show.</summary>
    private static string Phase(TimeSpan time, double loss, string lossName) => double.IsNaN(loss)
        ? string.Create(CultureInfo.InvariantCulture, $"{time.TotalMinutes:F1} min (not trained in this run: snapshot or base model)")
        : string.Create(CultureInfo.InvariantCulture, $"{time.TotalMinutes:F1} min ({lossName} {loss:F5})");

    /// <summary>Prints the autoencoder round-trip check: per attribute, then per pattern and colour value (the weak spots so far).</summary>
    private static void WriteReconstructionCheck(CliConsole console, Spm.Shapes.Evaluation.FidelityResult r)
    {
        static string Pct(double v) => double.IsNaN(v) ? "-" : string.Create(CultureInfo.InvariantCulture, $"{100 * v:F1} %");
        console.Out.WriteLine($"autoencoder round trips of {r.Images} pictures: shape {Pct(r.ShapeAccuracy)}, colour {Pct(r.ColorAccuracy)}, pattern {Pct(r.PatternAccuracy)}, background {Pct(r.BackgroundAccuracy)}, object found {Pct(r.FoundObjectRate)}");
        foreach (var confusion in r.Confusion.Where(c => c.Attribute is "pattern" or "colour" or "shape"))
            console.Out.WriteLine($"  {confusion.Attribute}: " + string.Join(", ", confusion.Labels.Where(l => confusion.Named(l) > 0).Select(l =>
                $"{l} {Pct(confusion.Accuracy(l))}" + (confusion.MostCommonMisreading(l) is { } m ? $" ({m.Count} read as {m.Label})" : ""))));
    }

    /// <summary>The UNet stages from <c>--unet-stages</c>, or one stage from <c>--unet-steps</c>/<c>--unet-lr</c>; null for the default recipe.</summary>
    internal static IReadOnlyList<UNetStage>? ParseStages(string? stages, int? steps, double? lr)
    {
        if (stages is not null)
        {
            if (steps is not null || lr is not null) throw new SpmException("Give either --unet-stages or --unet-steps/--unet-lr, not both.");
            var list = new List<UNetStage>();
            foreach (var part in stages.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
            {
                var bits = part.Split(':').ToList();
                // An optional last field "text" trains the text encoder in that stage.
                bool text = bits.Count > 2 && bits[^1].Equals("text", StringComparison.OrdinalIgnoreCase);
                if (text) bits.RemoveAt(bits.Count - 1);
                double std = 0;
                if (bits.Count is not (2 or 3) || !int.TryParse(bits[0], NumberStyles.Integer, CultureInfo.InvariantCulture, out int n)
                    || !double.TryParse(bits[1], NumberStyles.Float, CultureInfo.InvariantCulture, out double rate)
                    || (bits.Count == 3 && !double.TryParse(bits[2], NumberStyles.Float, CultureInfo.InvariantCulture, out std)))
                    throw new SpmException($"--unet-stages: '{part}' is not STEPS:LR[:TOKEN_STD][:text] (e.g. 3000:1e-3, 2600:2e-3:0.02 or 3000:5e-4:text).");
                list.Add(new UNetStage(n, rate, bits.Count == 3 ? std : null, text));
            }
            return list;
        }
        if (steps is null && lr is null) return null;
        int s = steps ?? 2500;
        return s == 0 ? [] : [new UNetStage(s, lr ?? 1e-3)];
    }

    /// <summary>The preset with another UNet; the text encoder's width follows its cross-attention width.</summary>
    internal static PipelinePreset WithUNet(PipelinePreset p, UNetConfig unet)
    {
        if (p.IsSdxl || unet.HasTextTimeEmbedding)
            throw new SpmException("--unet-config replaces the UNet of an SD 1.x/2.x preset; custom SDXL sizes are not supported yet (use --preset tiny-sdxl).");
        var text = p.TextEncoder;
        if (text.Width != unet.CrossAttentionDim)
        {
            int heads = new[] { 12, 8, 4, 2, 1 }.First(h => unet.CrossAttentionDim % h == 0);
            text = text with { Width = unet.CrossAttentionDim, Heads = heads, IntermediateSize = 4 * unet.CrossAttentionDim };
        }
        return p with { Name = p.Name + "+custom-unet", UNet = unet, TextEncoder = text, VaeDecoder = p.VaeDecoder with { LatentChannels = unet.OutChannels } };
    }
}
