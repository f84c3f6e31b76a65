using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using Spectre.Console;
using Spm.Cli.Rendering;
using Spm.Core.Atlas;
using Spm.Core.Gating;
using Spm.Diffusion.Membranes;
using Spm.Diffusion.Pipelines;
using Spm.Training.Evaluation;

namespace Spm.Cli.Commands;

/// <summary><c>spm inspect SPM --atlas ATLAS</c>: the communities of a concept atlas whose images an SPM changes.</summary>
internal static class InspectAtlas
{
    /// <summary>Measures and returns the report as JSON (rendered as a table unless --json).</summary>
    public static async Task<JsonObject> RunAsync(CliConsole console, string spm, string? model, string atlasPath, int images, ulong seed,
        GateSettings gate, SamplingOptions sampling, ParseResult parse, CancellationToken ct)
    {
        var modelFolder = DefaultModel.Resolve(model);
        Spm.Diffusion.Pipelines.Families.ModelFamilies.RefuseSdxl(modelFolder, "spm inspect --atlas");
        var atlas = ConceptAtlas.Load(atlasPath);
        var file = SpmFileArgument.Parse(spm, modelFolder, "path", allowMultiplier: false).Path;
        var loaded = LoadedSpms.Load(modelFolder, [file]);
        var settings = sampling.Settings(parse, modelFolder);
        using var pipeline = StableDiffusionPipeline.Load(modelFolder, new PipelineOptions { UNetSource = loaded.UNetSource, Runtime = sampling.Runtime(parse) });
        if (pipeline.ProviderFallbackReason is { } why) console.Error.WriteLine($"spm: warning: {why}; running on the CPU.");
        var generator = new EvalImageGenerator(pipeline, loaded, settings);
        int total = 2 * atlas.Concepts.Count * images * 2;
        var reach = await ProgressBars.RunAsync(console, "measuring reach", total, "image", bar =>
            Task.Run(() => AtlasReach.Measure(generator, 0, atlas, images, seed, gate,
                new ActionProgress<double>(f => bar.Report(new ProgressUpdate(f * total, total, "open, then gated"))), ct), ct));
        return new JsonObject
        {
            ["type"] = "atlas-reach",
            ["spm"] = Path.GetFullPath(file),
            ["concepts"] = new JsonArray(loaded.Layout.Sets[0].Concepts.Select(c => (JsonNode)c).ToArray()),
            ["model"] = Path.GetFullPath(modelFolder),
            ["atlas"] = Path.GetFullPath(atlasPath),
            ["imagesPerPrompt"] = images,
            ["seed"] = seed.ToString(CultureInfo.InvariantCulture),
            ["gate"] = GateCalibrations.NameOf(gate.Calibration),
            ["measure"] = "mean 1 - SSIM against the base model's image, same prompt and seed",
            ["communities"] = new JsonArray(reach.Select(r => (JsonNode)new JsonObject
            {
                ["community"] = r.Community,
                ["members"] = new JsonArray(r.Members.Select(m => (JsonNode)m).ToArray()),
                ["openChange"] = Math.Round(r.OpenChange, 6),
                ["gatedChange"] = Math.Round(r.GatedChange, 6),
                ["meanMultiplier"] = Math.Round(r.MeanMultiplier, 6),
            }).ToArray()),
        };
    }

    /// <summary>One row per community, most changed (open) first.</summary>
    public static void Render(JsonObject report, IAnsiConsole console)
    {
        console.WriteLine($"{Path.GetFileName((string)report["spm"]!)} ({string.Join(", ", report["concepts"]!.AsArray().Select(c => (string)c!))}) on the communities of {Path.GetFileName((string)report["atlas"]!)}: {report["measure"]}, {report["imagesPerPrompt"]} seeds per prompt, gate {report["gate"]}");
        var table = new Table().AddColumns("community", "concepts", "open", "gated", "multiplier");
        foreach (var node in report["communities"]!.AsArray())
        {
            var c = node!.AsObject();
            var members = c["members"]!.AsArray().Select(m => (string)m!).ToList();
            string shown = members.Count <= 4 ? string.Join(", ", members) : string.Join(", ", members.Take(4)) + $", ... ({members.Count})";
            table.AddRow(Markup.Escape(((int)c["community"]!).ToString(CultureInfo.InvariantCulture)), Markup.Escape(shown),
                ((double)c["openChange"]!).ToString("0.0000", CultureInfo.InvariantCulture),
                ((double)c["gatedChange"]!).ToString("0.0000", CultureInfo.InvariantCulture),
                ((double)c["meanMultiplier"]!).ToString("0.000", CultureInfo.InvariantCulture));
        }
        console.Write(table);
    }
}
