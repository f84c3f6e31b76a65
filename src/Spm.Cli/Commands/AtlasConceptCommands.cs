using System.CommandLine;
using Spectre.Console;
using Spm.Cli.Rendering;
using Spm.Core;
using Spm.Core.Atlas;
using Spm.Diffusion.Membranes;
using Spm.Diffusion.Pipelines;
using Spm.Training.Evaluation;

namespace Spm.Cli.Commands;

/// <summary><c>spm atlas build</c> and <c>spm atlas show</c>: concept atlases of a model's prompts.</summary>
internal static class AtlasConceptCommands
{
    public static Command Build(CliConsole cli)
    {
        var prompts = new Option<string?>("--prompts") { Description = "Concept prompts, one per line (blank lines and lines starting with # are skipped)." };
        var library = new Option<string?>("--library") { Description = "Concepts from a concept library's SPMs (a folder with library.json), one concept per SPM." };
        var spms = new Option<string[]>("--spm") { Description = "Concepts from these SPM files, one concept per SPM (repeatable; a bare name such as 'circle' means MODEL/spm/circle.safetensors).", AllowMultipleArgumentsPerToken = false };
        var edges = new Option<string>("--edges") { Description = "Edge weights: embedding (cosine of the text encoder's embeddings), guidance (cosine of the UNet's guidance directions: what the model draws for each prompt, so synonyms the UNet learned meet even where the text encoder keeps them apart) combined (the mean of the two: attributes kept apart by the text encoder, synonyms brought together by the UNet; --guidance-weight sets the UNet's share) or cross-effects (measured: how much each concept's SPM changes the other concepts' images; needs --library or --spm).", DefaultValueFactory = _ => "embedding" };
        edges.AcceptOnlyFromAmong("embedding", "guidance", "combined", "cross-effects");
        var guidanceWeight = new Option<double>("--guidance-weight") { Description = "With --edges combined: the guidance directions' share of each edge weight, 0 to 1 (the text embedding has the rest).", DefaultValueFactory = _ => 0.5 };
        var mergeEdges = new Option<string?>("--merge-edges") { Description = "Weigh the merges of the finest communities into the tree on other edges than the ones the communities are found on: embedding, guidance or combined (--merge-guidance-weight sets the UNet's share). The communities come from --edges, the tree above them from these (e.g. --edges combined --merge-edges embedding: synonyms by what the model draws, attributes by how they are phrased). Default: the --edges graph for both." };
        mergeEdges.AcceptOnlyFromAmong("embedding", "guidance", "combined");
        var mergeGuidanceWeight = new Option<double>("--merge-guidance-weight") { Description = "With --merge-edges combined: the guidance directions' share of each merge edge weight, 0 to 1 (default 0.3: the text embedding, which keeps the attributes apart, has the larger say over the merges).", DefaultValueFactory = _ => 0.3 };
        var mergeNeighbours = new Option<int>("--merge-neighbours") { Description = "With --merge-edges: keep each concept's k most similar concepts as merge edges (0: all positive similarities, so the linkage averages over every concept pair of two groups).", DefaultValueFactory = _ => 0 }.InRange(0, 100_000);
        var images = new Option<int>("--images") { Description = "Cross-effects: seeds per concept prompt (base image and one per SPM for each). Guidance and combined: noise latents per prompt.", DefaultValueFactory = _ => 4 }.InRange(1, 10_000);
        var imageSeed = new Option<ulong>("--image-seed") { Description = "Cross-effects, guidance and combined: first image seed.", DefaultValueFactory = _ => 0 };
        var model = new Option<string?>("--model") { Description = CliGlobals.ModelHelp };
        var neighbours = new Option<int>("--neighbours") { Description = "Keep each concept's k most similar concepts as edges (0: all positive similarities).", DefaultValueFactory = _ => 4 }.InRange(0, 100_000);
        var threshold = new Option<double>("--threshold") { Description = "Drop edges whose similarity is below this.", DefaultValueFactory = _ => 0 }.InRange(-1, 1);
        var communities = new Option<int?>("--communities") { Description = "Finest communities. Default: estimated by the eigengap of the concept graph." }.InRange(1, int.MaxValue);
        var linkage = AtlasCommand.LinkageOption();
        var seed = new Option<ulong>("--seed") { Description = "Seed of the spectral step.", DefaultValueFactory = _ => 0 };
        var center = new Option<bool>("--raw-cosine") { Description = "Use the gate's own cosine as edge weights, without first subtracting the concepts' mean embedding." };
        var output = new Option<string>("--out") { Description = "The atlas JSON to write.", Required = true };
        var svg = new Option<string?>("--svg") { Description = "Also draw the dendrogram to this SVG file." };
        var png = PngOption();
        var force = new Option<bool>("--force") { Description = "Overwrite existing files." };
        var sampling = new SamplingOptions();
        var cmd = new Command("build", "Build a concept atlas: join similar concepts (text-encoder embeddings, or measured membrane cross-effects of SPMs), find communities bottom-up and merge them into a tree.")
        {
            prompts, library, spms, edges, guidanceWeight, mergeEdges, mergeGuidanceWeight, mergeNeighbours, images, imageSeed, model, neighbours, threshold, communities, linkage, seed, center, output, svg, png, force,
        };
        foreach (var o in sampling.All()) cmd.Options.Add(o);
        cmd.SetAction(async (parse, ct) =>
        {
            var outPath = parse.GetValue(output)!;
            var svgPath = parse.GetValue(svg);
            var pngPath = parse.GetValue(png);
            bool overwrite = parse.GetValue(force);
            var promptFile = parse.GetValue(prompts);
            var libraryDir = parse.GetValue(library);
            var spmArgs = parse.GetValue(spms) ?? [];
            int sources = (promptFile is null ? 0 : 1) + (libraryDir is null ? 0 : 1) + (spmArgs.Length == 0 ? 0 : 1);
            if (sources != 1) throw new SpmException("give the concepts with exactly one of --prompts FILE, --library DIR or --spm FILE (repeatable).");
            string edgeKind = parse.GetValue(edges)!;
            string? mergeKind = parse.GetValue(mergeEdges);
            bool crossEffects = edgeKind == "cross-effects", combined = edgeKind == "combined";
            bool guidance = edgeKind is "guidance" or "combined" || mergeKind is "guidance" or "combined";
            double unetShare = parse.GetValue(guidanceWeight), mergeUnetShare = parse.GetValue(mergeGuidanceWeight);
            if (parse.GetResult(guidanceWeight) is { Implicit: false } && !combined) throw new SpmException("--guidance-weight goes with --edges combined.");
            if (!(unetShare >= 0 && unetShare <= 1)) throw new SpmException($"--guidance-weight must be between 0 and 1, got {unetShare}.");
            if (mergeKind is not null && crossEffects) throw new SpmException("--merge-edges goes with --edges embedding, guidance or combined (a cross-effect atlas has one measured graph).");
            if (parse.GetResult(mergeGuidanceWeight) is { Implicit: false } && mergeKind != "combined") throw new SpmException("--merge-guidance-weight goes with --merge-edges combined.");
            if (!(mergeUnetShare >= 0 && mergeUnetShare <= 1)) throw new SpmException($"--merge-guidance-weight must be between 0 and 1, got {mergeUnetShare}.");
            if (parse.GetResult(mergeNeighbours) is { Implicit: false } && mergeKind is null) throw new SpmException("--merge-neighbours goes with --merge-edges.");
            if (crossEffects && promptFile is not null) throw new SpmException("--edges cross-effects measures SPMs: give them with --library DIR or --spm FILE (a prompt file has no membranes).");
            if (!crossEffects && !guidance && (parse.GetResult(images) is { Implicit: false } || parse.GetResult(imageSeed) is { Implicit: false }))
                throw new SpmException("--images and --image-seed go with --edges cross-effects, guidance or combined.");
            foreach (var p in new[] { outPath, svgPath, pngPath })
                if (p is not null && File.Exists(p) && !overwrite) throw new IOException($"'{p}' already exists (use --force to overwrite).");
            var folder = DefaultModel.Resolve(parse.GetValue(model));
            var files = libraryDir is not null ? TrainCommand.LibraryFiles(libraryDir)
                : spmArgs.Select(a => SpmFileArgument.Parse(a, folder, "--spm", allowMultiplier: false).Path).ToList();
            var options = new ConceptAtlasOptions(new SparsifyOptions(parse.GetValue(neighbours), parse.GetValue(threshold)),
                parse.GetValue(communities), AtlasCommand.ParseLinkage(parse.GetValue(linkage)!), parse.GetValue(seed), !parse.GetValue(center),
                new SparsifyOptions(parse.GetValue(mergeNeighbours)));
            var meta = new Dictionary<string, string>
            {
                ["model"] = Path.GetFileName(Path.TrimEndingDirectorySeparator(folder)),
                ["neighbours"] = parse.GetValue(neighbours).ToString(System.Globalization.CultureInfo.InvariantCulture),
                ["linkage"] = parse.GetValue(linkage)!,
            };
            if (promptFile is not null) meta["prompts"] = Path.GetFileName(promptFile);
            if (libraryDir is not null) meta["library"] = Path.GetFileName(Path.TrimEndingDirectorySeparator(libraryDir));
            ConceptAtlas atlas;
            if (crossEffects)
                atlas = await BuildCrossEffects(cli, folder, files, options, meta, parse.GetValue(images), parse.GetValue(imageSeed), sampling, parse, ct);
            else
            {
                var concepts = promptFile is not null ? ReadPrompts(promptFile) : SpmConcepts(files);
                string centering = !parse.GetValue(center) ? ", after subtracting the mean over the concepts" : "";
                var probe = new GuidanceDirectionOptions(parse.GetValue(images), Seed: parse.GetValue(imageSeed));
                string timesteps = string.Join(",", GuidanceDirectionOptions.DefaultTimesteps);
                string guidanceReading = $"cosine of the UNet's guidance direction eps(x_t, E(prompt)) - eps(x_t, E(\"\")) on {probe.Latents} noise latents at timesteps {timesteps}{centering}";
                if (guidance)
                {
                    meta["latents"] = probe.Latents.ToString(System.Globalization.CultureInfo.InvariantCulture);
                    meta["image_seed"] = probe.Seed.ToString(System.Globalization.CultureInfo.InvariantCulture);
                    meta["timesteps"] = timesteps;
                }
                if (combined) meta["guidance_weight"] = unetShare.ToString(System.Globalization.CultureInfo.InvariantCulture);
                if (mergeKind is not null)
                {
                    meta["edges"] = edgeKind;
                    meta["merge_edges"] = mergeKind;
                    meta["merge_neighbours"] = parse.GetValue(mergeNeighbours).ToString(System.Globalization.CultureInfo.InvariantCulture);
                    if (mergeKind == "combined") meta["merge_guidance_weight"] = mergeUnetShare.ToString(System.Globalization.CultureInfo.InvariantCulture);
                }
                // One reading per edge kind: its similarity matrix and what it measures. The text embedding separates the
                // attributes by their phrasing, the guidance directions join synonyms; combined is their weighted mean.
                ConceptAtlas Cluster(StableDiffusionPipeline pipeline, float[][]? directions)
                {
                    float[][]? embeddings = null;
                    float[][] Embeddings() => embeddings ??= TextEmbeddings(pipeline, concepts, ct);
                    (double[,] Similarity, string Reading) Reading(string kind, double share) => kind switch
                    {
                        "embedding" => (SimilarityGraph.Cosine(Embeddings(), options.Center),
                            centering.Length > 0 ? TextReading + centering : TextReading + " (the gate's clipcos)"),
                        "guidance" => (SimilarityGraph.Cosine(directions!, options.Center), guidanceReading),
                        _ => (SimilarityGraph.Blend([
                                (SimilarityGraph.Cosine(Embeddings(), options.Center), 1 - share),
                                (SimilarityGraph.Cosine(directions!, options.Center), share)]),
                            string.Create(System.Globalization.CultureInfo.InvariantCulture,
                                $"{1 - share:0.##} x {TextReading}{centering} + {share:0.##} x {guidanceReading}")),
                    };
                    var (similarity, reading) = Reading(edgeKind, unetShare);
                    if (mergeKind is null) return ConceptAtlas.FromSimilarity(concepts, similarity, options, reading, meta, ct);
                    var (mergeSimilarity, mergeReading) = Reading(mergeKind, mergeUnetShare);
                    return ConceptAtlas.FromSimilarities(concepts, similarity, mergeSimilarity, options, reading, mergeReading, meta, ct);
                }
                if (guidance)
                    atlas = await ProgressBars.RunAsync(cli, "probing the UNet", concepts.Count, "prompt", bar => Task.Run(() =>
                    {
                        using var pipeline = StableDiffusionPipeline.Load(folder);
                        var directions = GuidanceDirections.Compute(pipeline, concepts, probe,
                            new ActionProgress<double>(f => bar.Report(new ProgressUpdate(f * concepts.Count, concepts.Count, ""))), ct);
                        return Cluster(pipeline, directions);
                    }, ct));
                else
                    atlas = await Task.Run(() =>
                    {
                        using var pipeline = StableDiffusionPipeline.Load(folder);
                        return Cluster(pipeline, null);
                    }, ct);
            }
            atlas.Save(outPath, overwrite);
            var drawing = DendrogramLayout.Of(atlas, $"Concept atlas: {atlas.Concepts.Count} concepts, {atlas.Metadata["model"]}");
            if (svgPath is not null) Spm.Core.IO.AtomicFile.WriteAllText(svgPath, drawing.ToSvg(), overwrite);
            if (pngPath is not null) WritePng(pngPath, drawing, overwrite);
            var console = cli.Output;
            Render(atlas, console);
            console.WriteLine($"wrote {string.Join(", ", new[] { outPath, svgPath, pngPath }.OfType<string>())}");
            return ExitCodes.Ok;
        });
        return cmd;
    }

    private const string TextReading = "cosine of the text encoder's padded last hidden state E(prompt)";

    /// <summary>Each concept's text embedding E(prompt), the padded last hidden state the gate's clipcos reads.</summary>
    private static float[][] TextEmbeddings(StableDiffusionPipeline pipeline, IReadOnlyList<string> concepts, CancellationToken ct)
        => concepts.Select(c => pipeline.EncodePrompt(c, ct).Embedding.Data.ToArray()).ToArray();

    /// <summary>Each SPM file's first concept (its trained prompt), checked to be at least 3 files.</summary>
    private static IReadOnlyList<string> SpmConcepts(IReadOnlyList<string> files)
    {
        if (files.Count < 3) throw new SpmException($"an atlas needs at least 3 concepts: give at least 3 SPMs (got {files.Count}).");
        return files.Select(f =>
        {
            var adapter = Spm.Core.Membranes.SpmFile.Load(f);
            return adapter.Config.Prompts.Count > 0 ? adapter.Config.Prompts[0] : throw new SpmFormatException(f, "prompts", "the SPM names no concept.");
        }).ToList();
    }

    /// <summary>Measures the SPMs' cross-effects on each other's concepts (progress bar, cancellable) and clusters them.</summary>
    private static async Task<ConceptAtlas> BuildCrossEffects(CliConsole cli, string folder, IReadOnlyList<string> files, ConceptAtlasOptions options,
        Dictionary<string, string> meta, int images, ulong imageSeed, SamplingOptions sampling, ParseResult parse, CancellationToken ct)
    {
        if (files.Count < 3) throw new SpmException($"a cross-effect atlas needs at least 3 SPMs (got {files.Count}).");
        var loaded = LoadedSpms.Load(folder, files);
        var settings = sampling.Settings(parse, folder);
        using var pipeline = StableDiffusionPipeline.Load(folder, new PipelineOptions { UNetSource = loaded.UNetSource, Runtime = sampling.Runtime(parse) });
        if (pipeline.ProviderFallbackReason is { } why) cli.Error.WriteLine($"spm: warning: {why}; running on the CPU.");
        var generator = new EvalImageGenerator(pipeline, loaded, settings);
        int n = files.Count, total = n * images * (n + 1);
        meta["steps"] = settings.Steps.ToString(System.Globalization.CultureInfo.InvariantCulture);
        meta["guidance"] = settings.GuidanceScale.ToString(System.Globalization.CultureInfo.InvariantCulture);
        meta["image_seed"] = imageSeed.ToString(System.Globalization.CultureInfo.InvariantCulture);
        return await ProgressBars.RunAsync(cli, "measuring cross-effects", total, "image", bar =>
            Task.Run(() => CrossEffectAtlas.Build(generator, null, new CrossEffectOptions(images, imageSeed), options, meta,
                new ActionProgress<double>(f => bar.Report(new ProgressUpdate(f * total, total, $"{n} SPMs x {n} concepts"))), ct), ct));
    }

    public static Command Show(CliConsole cli)
    {
        var file = new Argument<string>("atlas") { Description = "An atlas JSON written by 'spm atlas build'." };
        var svg = new Option<string?>("--svg") { Description = "Also draw the dendrogram to this SVG file." };
        var png = PngOption();
        var force = new Option<bool>("--force") { Description = "Overwrite --svg and --png." };
        var cmd = new Command("show", "Print a concept atlas as a text tree (and draw its dendrogram).") { file, svg, png, force };
        cmd.SetAction(parse =>
        {
            var atlas = ConceptAtlas.Load(parse.GetValue(file)!);
            bool overwrite = parse.GetValue(force);
            var svgPath = parse.GetValue(svg);
            var pngPath = parse.GetValue(png);
            foreach (var p in new[] { svgPath, pngPath })
                if (p is not null && File.Exists(p) && !overwrite) throw new IOException($"'{p}' already exists (use --force to overwrite).");
            var drawing = DendrogramLayout.Of(atlas, $"Concept atlas: {atlas.Concepts.Count} prompts");
            if (svgPath is not null) Spm.Core.IO.AtomicFile.WriteAllText(svgPath, drawing.ToSvg(), overwrite);
            if (pngPath is not null) WritePng(pngPath, drawing, overwrite);
            Render(atlas, cli.Output);
            return ExitCodes.Ok;
        });
        return cmd;
    }

    private static Option<string?> PngOption() =>
        new("--png") { Description = $"Also draw the dendrogram to this PNG file (the SVG's layout at {PngScale} pixels per SVG unit)." };

    /// <summary>Pixels per SVG unit of the PNG dendrogram: at 1 the bitmap font's labels are 7 pixels tall, hard to read.</summary>
    internal const int PngScale = 2;

    /// <summary>Rasterizes the dendrogram and writes it as PNG (atomically; an existing file only with <paramref name="overwrite"/>).</summary>
    internal static void WritePng(string path, DendrogramLayout drawing, bool overwrite)
    {
        var canvas = drawing.Rasterize(PngScale);
        Spm.Diffusion.Images.PngImage.Write(path, Spm.Diffusion.Images.PngImage.Encode(canvas.Pixels, canvas.Width, canvas.Height, null), overwrite);
    }

    /// <summary>Prints the summary line and the text tree (plain text: the tree's lines are the library's).</summary>
    internal static void Render(ConceptAtlas atlas, IAnsiConsole console)
    {
        console.WriteLine($"{atlas.Concepts.Count} concepts, {atlas.Graph.EdgeCount} edges, {atlas.Hierarchy.CommunityCount} finest communities; edge weights: {atlas.Similarity}");
        if (atlas.MergeGraph is { } merge)
            console.WriteLine($"merged on {merge.EdgeCount} other edges; their weights: {atlas.MergeSimilarity}");
        foreach (var line in atlas.TreeLines()) console.WriteLine(line);
    }

    internal static IReadOnlyList<string> ReadPrompts(string path)
    {
        if (!File.Exists(path)) throw new SpmInputNotFoundException(path, "prompt file");
        var prompts = File.ReadAllLines(path).Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith('#')).ToList();
        if (prompts.Count < 3) throw new SpmFormatException(path, null, $"an atlas needs at least 3 prompts, got {prompts.Count}.");
        return prompts;
    }
}
