using System.CommandLine;
using Spectre.Console;
using Spm.Cli.Rendering;
using Spm.Core;
using Spm.Core.Atlas;
using Spm.Diffusion.Pipelines;

namespace Spm.Cli.Commands;

/// <summary><c>spm atlas build</c> and <c>spm atlas show</c>: concept atlases of a model's prompts.</summary>
internal static class AtlasConceptCommands
{
    public static Command Build(CliConsole cli)
    {
        var prompts = new Option<string>("--prompts") { Description = "Concept prompts, one per line (blank lines and lines starting with # are skipped).", Required = true };
        var model = new Option<string?>("--model") { Description = CliGlobals.ModelHelp };
        var neighbours = new Option<int>("--neighbours") { Description = "Keep each concept's k most similar concepts as edges (0: all positive similarities).", DefaultValueFactory = _ => 4 }.InRange(0, 100_000);
        var threshold = new Option<double>("--threshold") { Description = "Drop edges whose similarity is below this.", DefaultValueFactory = _ => 0 }.InRange(-1, 1);
        var communities = new Option<int?>("--communities") { Description = "Finest communities. Default: estimated by the eigengap of the concept graph." }.InRange(1, int.MaxValue);
        var linkage = AtlasCommand.LinkageOption();
        var seed = new Option<ulong>("--seed") { Description = "Seed of the spectral step.", DefaultValueFactory = _ => 0 };
        var center = new Option<bool>("--raw-cosine") { Description = "Use the gate's own cosine as edge weights, without first subtracting the concepts' mean embedding." };
        var output = new Option<string>("--out") { Description = "The atlas JSON to write.", Required = true };
        var svg = new Option<string?>("--svg") { Description = "Also draw the dendrogram to this SVG file." };
        var force = new Option<bool>("--force") { Description = "Overwrite existing files." };
        var cmd = new Command("build", "Build a concept atlas: embed each prompt with the model's text encoder (the embedding the gate uses), join similar concepts, find communities bottom-up and merge them into a tree.")
        {
            prompts, model, neighbours, threshold, communities, linkage, seed, center, output, svg, force,
        };
        cmd.SetAction(async (parse, ct) =>
        {
            var outPath = parse.GetValue(output)!;
            var svgPath = parse.GetValue(svg);
            bool overwrite = parse.GetValue(force);
            foreach (var p in new[] { outPath, svgPath })
                if (p is not null && File.Exists(p) && !overwrite) throw new IOException($"'{p}' already exists (use --force to overwrite).");
            var concepts = ReadPrompts(parse.GetValue(prompts)!);
            var folder = DefaultModel.Resolve(parse.GetValue(model));
            var atlas = await Task.Run(() =>
            {
                using var pipeline = StableDiffusionPipeline.Load(folder);
                var embeddings = concepts.Select(c => pipeline.EncodePrompt(c, ct).Embedding.Data.ToArray()).ToArray();
                var options = new ConceptAtlasOptions(new SparsifyOptions(parse.GetValue(neighbours), parse.GetValue(threshold)),
                    parse.GetValue(communities), AtlasCommand.ParseLinkage(parse.GetValue(linkage)!), parse.GetValue(seed), !parse.GetValue(center));
                var meta = new Dictionary<string, string>
                {
                    ["model"] = Path.GetFileName(Path.TrimEndingDirectorySeparator(folder)),
                    ["prompts"] = Path.GetFileName(parse.GetValue(prompts)!),
                    ["neighbours"] = parse.GetValue(neighbours).ToString(System.Globalization.CultureInfo.InvariantCulture),
                    ["linkage"] = parse.GetValue(linkage)!,
                };
                return ConceptAtlas.Build(concepts, embeddings, options,
                    !parse.GetValue(center) ? "cosine of the text encoder's padded last hidden state E(prompt), after subtracting the mean over the concepts" : "cosine of the text encoder's padded last hidden state E(prompt) (the gate's clipcos)", meta, ct);
            }, ct);
            atlas.Save(outPath, overwrite);
            if (svgPath is not null) Spm.Core.IO.AtomicFile.WriteAllText(svgPath, atlas.ToSvg($"Concept atlas: {concepts.Count} prompts, {atlas.Metadata["model"]}"), overwrite);
            var console = cli.Output;
            Render(atlas, console);
            console.WriteLine($"wrote {outPath}" + (svgPath is null ? "" : $" and {svgPath}"));
            return ExitCodes.Ok;
        });
        return cmd;
    }

    public static Command Show(CliConsole cli)
    {
        var file = new Argument<string>("atlas") { Description = "An atlas JSON written by 'spm atlas build'." };
        var svg = new Option<string?>("--svg") { Description = "Also draw the dendrogram to this SVG file." };
        var force = new Option<bool>("--force") { Description = "Overwrite --svg." };
        var cmd = new Command("show", "Print a concept atlas as a text tree (and draw its dendrogram).") { file, svg, force };
        cmd.SetAction(parse =>
        {
            var atlas = ConceptAtlas.Load(parse.GetValue(file)!);
            if (parse.GetValue(svg) is { } path)
            {
                if (File.Exists(path) && !parse.GetValue(force)) throw new IOException($"'{path}' already exists (use --force to overwrite).");
                Spm.Core.IO.AtomicFile.WriteAllText(path, atlas.ToSvg($"Concept atlas: {atlas.Concepts.Count} prompts"));
            }
            Render(atlas, cli.Output);
            return ExitCodes.Ok;
        });
        return cmd;
    }

    /// <summary>Prints the summary line and the text tree (plain text: the tree's lines are the library's).</summary>
    internal static void Render(ConceptAtlas atlas, IAnsiConsole console)
    {
        console.WriteLine($"{atlas.Concepts.Count} concepts, {atlas.Graph.EdgeCount} edges, {atlas.Hierarchy.CommunityCount} finest communities; edge weights: {atlas.Similarity}");
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
