using System.Globalization;
using System.Text.Json.Nodes;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace Spm.Cli.Commands;

/// <summary>Renders an <c>spm inspect</c> report (the JSON object) as Spectre.Console tables.</summary>
internal static class InspectRenderer
{
    public static void Render(JsonObject report, IAnsiConsole console)
    {
        if ((string?)report["type"] == "model") RenderModel(report, console);
        else RenderSpm(report, console);
    }

    private static void RenderModel(JsonObject r, IAnsiConsole console)
    {
        var facts = Facts(
            ("Model", S(r["file"])),
            ("Opset", S(r["opset"])),
            ("IR version", S(r["irVersion"])),
            ("Producer", S(r["producer"])),
            ("Initializers", $"{S(r["initializers"])} ({Count(r["parameters"])} parameters)"),
            ("External data", $"{Bytes((long)r["externalDataBytes"]!)} in {Join(r["externalDataFiles"])}"));
        console.Write(facts);

        var io = new Table().Title("Inputs and outputs").AddColumns("", "Name", "Type", "Shape");
        foreach (var (kind, key) in new[] { ("in", "inputs"), ("out", "outputs") })
            foreach (var v in r[key]!.AsArray())
                io.AddRow(T(kind), T(S(v!["name"])), T(S(v["dtype"])), T(v["shape"] is JsonArray a ? "[" + string.Join(",", a.Select(S)) + "]" : "?"));
        console.Write(io);

        var containers = new Table().Title("Adaptable layers in transformer containers").AddColumns("Container", "Layers", "Kinds");
        int total = 0;
        foreach (var c in r["containers"]!.AsArray())
        {
            total += (int)c!["layers"]!;
            containers.AddRow(T(S(c["container"])), T(S(c["layers"])), T(Kinds(c["kinds"]!.AsObject())));
        }
        containers.AddRow(T("total"), T(total.ToString(CultureInfo.InvariantCulture)), T(""));
        console.Write(containers);
        var other = r["otherLayers"]!.AsObject();
        console.Write(new Text($"Outside transformer containers (resnets, time embedding, ...): {S(other["count"])} layers ({Kinds(other["kinds"]!.AsObject())}).\n"));

        var layers = new Table().Title("Transformer layers").AddColumns("Module path", "Kind", "In", "Out");
        bool anyPacked = r["layers"]!.AsArray().Any(l => l!["packed"] is not null);
        if (anyPacked) layers.AddColumn("Note");
        foreach (var l in r["layers"]!.AsArray())
        {
            if (anyPacked)
                layers.AddRow(T(S(l!["path"])), T(S(l["kind"])), T(S(l["in"])), T(S(l["out"])), T(l["packed"] is null ? "" : $"{S(l["packed"])} ({S(l["node"])})"));
            else
                layers.AddRow(T(S(l!["path"])), T(S(l["kind"])), T(S(l["in"])), T(S(l["out"])));
        }
        console.Write(layers);
    }

    private static void RenderSpm(JsonObject r, IAnsiConsole console)
    {
        var rows = new List<(string, string)>
        {
            ("SPM file", S(r["file"])),
            ("Concepts", Join(r["concepts"])),
            ("Rank", S(r["rank"])),
            ("Alpha", S(r["alpha"])),
            ("Dtype", S(r["dtype"])),
            ("Membranes", S(r["membraneCount"])),
            ("Parameters", Count(r["parameterCount"])),
        };
        if ((long)r["nonFiniteValues"]! > 0) rows.Add(("Non-finite values", S(r["nonFiniteValues"])));
        var extra = r["metadata"]!.AsObject().Where(kv => kv.Key is not ("prompts" or "rank" or "alpha")).ToList();
        foreach (var kv in extra) rows.Add(($"metadata {kv.Key}", S(kv.Value)));
        if (r["model"] is not null)
        {
            rows.Add(("Model", S(r["model"])));
            rows.Add(("Matched", $"{S(r["matched"])} of {S(r["membraneCount"])} membranes"));
            rows.Add(("Unmatched", r["unmatched"]!.AsArray().Count == 0 ? "none" : Join(r["unmatched"])));
            rows.Add(("Shape mismatches", S(r["mismatched"]!.AsArray().Count)));
            rows.Add(("Transformer layers without a membrane", $"{S(r["transformerLayersWithoutMembrane"])} of {S(r["transformerLayers"])}"));
        }
        console.Write(Facts([.. rows]));

        var table = new Table().Title("Membranes").AddColumns("Module path / key", "Kind", "Rank", "In", "Out", "Alpha");
        foreach (var m in r["membranes"]!.AsArray())
            table.AddRow(T(S(m!["path"] ?? m["key"])), T(S(m["kind"])), T(S(m["rank"])), T(S(m["in"])), T(S(m["out"])), T(S(m["alpha"])));
        console.Write(table);

        foreach (var mm in r["mismatched"]?.AsArray() ?? [])
            console.Write(new Text($"mismatch: {S(mm!["path"])}: {S(mm["reason"])}\n"));
    }

    private static Table Facts(params (string Name, string Value)[] rows)
    {
        var t = new Table().HideHeaders().AddColumns("", "");
        foreach (var (name, value) in rows) t.AddRow(T(name), T(value));
        return t;
    }

    // Plain text cells: module paths and shapes contain '[' which Spectre would read as markup.
    private static IRenderable T(string s) => new Text(s);

    private static string S(JsonNode? n) => n switch
    {
        null => "",
        JsonValue v when v.TryGetValue<string>(out var s) => s,
        _ => n.ToJsonString(),
    };

    private static string Join(JsonNode? n) => n is JsonArray a ? string.Join(", ", a.Select(S)) : S(n);

    private static string Kinds(JsonObject kinds) => string.Join(", ", kinds.Select(kv => $"{S(kv.Value)} {kv.Key}"));

    private static string Count(JsonNode? n) => ((long)n!).ToString("N0", CultureInfo.InvariantCulture);

    private static string Bytes(long b) => b switch
    {
        >= 1L << 30 => $"{b / (double)(1L << 30):0.00} GiB",
        >= 1L << 20 => $"{b / (double)(1L << 20):0.00} MiB",
        >= 1L << 10 => $"{b / 1024.0:0.0} KiB",
        _ => $"{b} B",
    };
}
