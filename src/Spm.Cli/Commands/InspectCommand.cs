using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using Spectre.Console;
using Spm.Core;
using Spm.Core.Gating;
using Spm.Core.Membranes;
using Spm.Diffusion.Onnx;

using Spm.Cli.Rendering;

namespace Spm.Cli.Commands;

/// <summary>
/// <c>spm inspect PATH [--model DIR] [--json]</c>: describes an SPM file (concepts, rank, alpha, dtype, membranes,
/// parameters) or an ONNX model (inputs, outputs, opset, external data, adaptable layers); with <c>--model</c>, how an
/// SPM's membranes match the model's layers.
/// </summary>
internal static class InspectCommand
{
    public static Command Create(CliConsole console)
    {
        var path = new Argument<string>("path") { Description = "An SPM file (.safetensors), a model folder (pipeline or component) or a .onnx file." };
        var model = new Option<string?>("--model") { Description = "For an SPM file: a model folder or .onnx to match its membranes against." };
        var json = new Option<bool>("--json") { Description = "Print one JSON object instead of tables." };
        var atlas = new Option<string?>("--atlas") { Description = "For an SPM file: a concept atlas (spm atlas build) whose communities' images the SPM is measured on: what else it changes, open and gated (a pipeline folder: --model, default the built-in model)." };
        var images = new Option<int>("--images") { Description = "With --atlas: seeds per atlas prompt.", DefaultValueFactory = _ => 4 };
        var seed = new Option<ulong>("--seed") { Description = "With --atlas: first seed.", DefaultValueFactory = _ => 0 };
        var gateCalibration = new Option<string>("--gate-calibration") { Description = "With --atlas: how the deployed gate is read: auto (default), learned, empty, none.", DefaultValueFactory = _ => "auto" };
        gateCalibration.AcceptOnlyFromAmong([.. GateCalibrations.Names]);
        var sampling = new SamplingOptions();
        var cmd = new Command("inspect", "Describe an SPM file or an ONNX model, and how an SPM fits a model (with --atlas: which concept communities it changes).") { path, model, json, atlas, images, seed, gateCalibration };
        foreach (var o in sampling.All()) cmd.Options.Add(o);
        cmd.SetAction(async (parse, ct) =>
        {
            if (parse.GetValue(atlas) is { } atlasPath)
            {
                int count = parse.GetValue(images);
                if (count is < 1 or > 1000) throw new SpmException($"--images must be 1..1000, got {count}.");
                GateCalibrations.TryParse(parse.GetValue(gateCalibration), out var calibration);
                var reach = await InspectAtlas.RunAsync(console, parse.GetValue(path)!, parse.GetValue(model), atlasPath, count, parse.GetValue(seed),
                    new GateSettings(Calibration: calibration), sampling, parse, ct);
                if (parse.GetValue(json))
                    console.Out.WriteLine(reach.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
                else
                    InspectAtlas.Render(reach, TableConsole(console));
                return 0;
            }
            var report = Build(parse.GetValue(path)!, parse.GetValue(model));
            if (parse.GetValue(json))
                console.Out.WriteLine(report.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            else
                InspectRenderer.Render(report, TableConsole(console));
            return 0;
        });
        return cmd;
    }

    /// <summary>Builds the report for <paramref name="path"/> as one JSON object (the --json output; the tables render it too).</summary>
    internal static JsonObject Build(string path, string? modelPath)
    {
        if (IsModelPath(path))
        {
            if (modelPath is not null)
                throw new SpmException($"--model applies to SPM files; '{path}' is a model.");
            return ModelReport(OnnxModel.Load(path));
        }
        if (!File.Exists(path)) throw new SpmInputNotFoundException(path, "file");
        return SpmReport(path, modelPath);
    }

    private static bool IsModelPath(string path) =>
        Directory.Exists(path) || path.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase);

    internal static JsonObject ModelReport(OnnxModel model)
    {
        var all = AdaptableLayerFinder.FindAll(model);
        var transformer = all.Where(l => l.InTransformer).ToList();
        var other = all.Where(l => !l.InTransformer).ToList();
        var initializers = model.DescribeInitializers().ToList();
        return new JsonObject
        {
            ["type"] = "model",
            ["file"] = model.FilePath,
            ["irVersion"] = model.Proto.IrVersion,
            ["opset"] = model.OpsetVersion,
            ["producer"] = $"{model.Proto.ProducerName} {model.Proto.ProducerVersion}".Trim(),
            ["inputs"] = ValueArray(model.Inputs),
            ["outputs"] = ValueArray(model.Outputs),
            ["initializers"] = initializers.Count,
            ["parameters"] = initializers.Sum(i => i.ElementCount),
            ["externalDataBytes"] = initializers.Where(i => i.IsExternal).Sum(i => i.External!.Length),
            ["externalDataFiles"] = new JsonArray(model.ExternalDataFiles.Select(f => (JsonNode)f).ToArray()),
            ["containers"] = new JsonArray(transformer.GroupBy(l => l.Container!).Select(g => (JsonNode)new JsonObject
            {
                ["container"] = g.Key,
                ["layers"] = g.Count(),
                ["kinds"] = KindCounts(g),
            }).ToArray()),
            ["layers"] = new JsonArray(transformer.Select(l => (JsonNode)LayerJson(l)).ToArray()),
            ["otherLayers"] = new JsonObject { ["count"] = other.Count, ["kinds"] = KindCounts(other) },
        };
    }

    internal static JsonObject SpmReport(string path, string? modelPath)
    {
        // Non-finite weights are loaded (and counted) rather than rejected: inspecting a broken file should show it.
        var adapter = SpmFile.Load(path, new SpmLoadOptions { AllowNonFinite = true });
        OnnxModel? model = modelPath is null ? null : OnnxModel.Load(modelPath);
        IReadOnlyList<AdaptableLayer> layers = model is null ? [] : AdaptableLayerFinder.FindAll(model);
        if (model is not null) adapter = adapter.Resolve(layers.Select(l => l.ModulePath));
        var byPath = layers.ToDictionary(l => l.ModulePath, StringComparer.Ordinal);

        var metadata = new JsonObject();
        foreach (var kv in adapter.Config.ToMetadata()) metadata[kv.Key] = kv.Value;
        var membranes = new JsonArray();
        var unmatched = new JsonArray();
        var mismatched = new JsonArray();
        int matched = 0;
        long nonFinite = 0;
        foreach (var m in adapter.Membranes)
        {
            nonFinite += CountNonFinite(m.Down.Data) + CountNonFinite(m.Up.Data) + (float.IsFinite(m.Alpha) ? 0 : 1);
            var item = new JsonObject { ["key"] = m.Key };
            if (m.ModulePath is not null) item["path"] = m.ModulePath;
            item["rank"] = m.Rank;
            item["kind"] = m.IsConv ? "conv" : "linear";
            item["in"] = m.InFeatures;
            item["out"] = m.OutFeatures;
            item["alpha"] = m.Alpha;
            membranes.Add(item);
            if (model is null) continue;
            if (m.ModulePath is null) { unmatched.Add(m.Key); continue; }
            var why = Misfit(m, byPath[m.ModulePath]);
            if (why is null) matched++;
            else mismatched.Add(new JsonObject { ["key"] = m.Key, ["path"] = m.ModulePath, ["reason"] = why });
        }

        var report = new JsonObject
        {
            ["type"] = "spm",
            ["file"] = Path.GetFullPath(path),
            ["metadata"] = metadata,
            ["concepts"] = new JsonArray(adapter.Config.Prompts.Select(p => (JsonNode)p).ToArray()),
            ["rank"] = adapter.Config.Rank,
            ["alpha"] = adapter.Config.Alpha,
            ["dtype"] = adapter.StorageDType.ToString().ToUpperInvariant(),
            ["membraneCount"] = adapter.Membranes.Count,
            ["parameterCount"] = adapter.ParameterCount,
            ["nonFiniteValues"] = nonFinite,
            ["membranes"] = membranes,
        };
        if (model is not null)
        {
            var covered = adapter.Membranes.Where(m => m.ModulePath is not null).Select(m => m.ModulePath!).ToHashSet(StringComparer.Ordinal);
            report["model"] = model.FilePath;
            report["matched"] = matched;
            report["unmatched"] = unmatched;
            report["mismatched"] = mismatched;
            report["transformerLayers"] = layers.Count(l => l.InTransformer);
            report["transformerLayersWithoutMembrane"] = layers.Count(l => l.InTransformer && !covered.Contains(l.ModulePath));
        }
        return report;
    }

    /// <summary>Why a membrane cannot sit on a layer (kind, in/out sizes, conv kernel), or null when it fits.</summary>
    internal static string? Misfit(Membrane m, AdaptableLayer layer)
    {
        if (m.IsConv != layer.IsConv)
            return $"the membrane is {(m.IsConv ? "a conv" : "linear")} but the layer is {(layer.IsConv ? "a conv" : "linear")}";
        if (m.InFeatures != layer.InFeatures || m.OutFeatures != layer.OutFeatures)
            return $"membrane {m.InFeatures}->{m.OutFeatures} vs layer {layer.InFeatures}->{layer.OutFeatures}";
        if (layer.IsConv && (m.Kernel.Height, m.Kernel.Width) != Spm.Diffusion.Membranes.MembraneShapes.Kernel(layer))
            return $"membrane kernel {m.Kernel.Height}x{m.Kernel.Width} vs layer {Spm.Diffusion.Membranes.MembraneShapes.Kernel(layer).Height}x{Spm.Diffusion.Membranes.MembraneShapes.Kernel(layer).Width}";
        return null;
    }

    private static JsonObject LayerJson(AdaptableLayer l)
    {
        var o = new JsonObject
        {
            ["path"] = l.ModulePath,
            ["kind"] = l.Kind.ToString(),
            ["in"] = l.InFeatures,
            ["out"] = l.OutFeatures,
            ["container"] = l.Container,
            ["node"] = l.NodeName,
            ["weight"] = l.WeightName,
        };
        if (l.IsConv) o["kernel"] = new JsonArray(l.KernelShape.Select(k => (JsonNode)k).ToArray());
        // In graphs fused by ONNX Runtime's optimizer, to_q/to_k/to_v live in one packed MatMul: say which slice.
        if (l.Packing is { } packing) o["packed"] = packing.Describe();
        return o;
    }

    private static JsonObject KindCounts(IEnumerable<AdaptableLayer> layers)
    {
        var o = new JsonObject();
        foreach (var g in layers.GroupBy(l => l.Kind).OrderBy(g => g.Key)) o[g.Key.ToString()] = g.Count();
        return o;
    }

    private static JsonArray ValueArray(IEnumerable<OnnxValueInfo> values) =>
        new(values.Select(v => (JsonNode)new JsonObject
        {
            ["name"] = v.Name,
            ["dtype"] = v.ElementType,
            ["shape"] = v.Dims is null ? null : new JsonArray(v.Dims.Select(d => (JsonNode)d).ToArray()),
        }).ToArray());

    private static long CountNonFinite(float[] data)
    {
        long n = 0;
        foreach (var v in data) if (!float.IsFinite(v)) n++;
        return n;
    }

    private static IAnsiConsole TableConsole(CliConsole console)
    {
        // Redirected output has no terminal width; module paths are long, so do not wrap them at 80 columns.
        if (!console.OutputIsTerminal) console.Output.Profile.Width = 160;
        return console.Output;
    }
}
