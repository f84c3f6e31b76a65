using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Spm.Core;
using Spm.Core.Library;
using Spm.Diffusion.Membranes;
using Spm.Diffusion.Onnx;

using Spm.Cli.Rendering;

namespace Spm.Cli.Commands;

/// <summary>
/// <c>spm library init|add|remove|list|show|verify DIR</c>: a concept library, a folder of SPM files with one index
/// (<see cref="SpmLibrary"/>). Errors end the verb with the tool's exit codes: a missing folder, index or file 3, a
/// broken SPM file or index (and <c>verify</c> finding problems) 4, a duplicate or unknown concept 2.
/// </summary>
internal static class LibraryCommand
{
    public static Command Create(CliConsole console)
    {
        var cmd = new Command("library", "A concept library: a folder of SPM files with one index (concept, prompts, file, SHA-256, rank, alpha, base model, gate, version).");
        cmd.Subcommands.Add(Init(console));
        cmd.Subcommands.Add(Add(console));
        cmd.Subcommands.Add(Remove(console));
        cmd.Subcommands.Add(List(console));
        cmd.Subcommands.Add(Show(console));
        cmd.Subcommands.Add(Verify(console));
        cmd.Subcommands.Add(Merge(console));
        cmd.Subcommands.Add(Diff(console));
        return cmd;
    }

    private static Command Diff(CliConsole console)
    {
        var a = new Argument<string>("a") { Description = "The first (older) library folder." };
        var b = new Argument<string>("b") { Description = "The second (newer) library folder." };
        var json = new Option<bool>("--json") { Description = "Print the differences as one JSON array." };
        var cmd = new Command("diff", "List the concepts added, removed and changed (SHA-256, version, rank, alpha, prompts, base model, gate, training settings) from library A to library B.") { a, b, json };
        cmd.SetAction(parse =>
        {
            var from = SpmLibrary.Open(parse.GetValue(a)!);
            var to = SpmLibrary.Open(parse.GetValue(b)!);
            var changes = SpmLibrary.Diff(from, to);
            if (parse.GetValue(json))
            {
                var array = new JsonArray(changes.Select(c => (JsonNode?)new JsonObject
                {
                    ["concept"] = c.Concept,
                    ["change"] = c.Kind.ToString().ToLowerInvariant(),
                    ["old"] = c.Old is null ? null : JsonSerializer.SerializeToNode(c.Old),
                    ["new"] = c.New is null ? null : JsonSerializer.SerializeToNode(c.New),
                    ["fields"] = new JsonArray(c.Fields.Select(f => (JsonNode?)new JsonObject { ["field"] = f.Field, ["old"] = f.Old, ["new"] = f.New }).ToArray()),
                }).ToArray());
                console.Out.WriteLine(array.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
                return ExitCodes.Ok;
            }
            foreach (var c in changes)
            {
                var line = c.Kind switch
                {
                    LibraryChangeKind.Added => $"+ {c.Concept} (v{c.New!.Version}, rank {c.New.Rank}, sha256 {c.New.Sha256[..12]})",
                    LibraryChangeKind.Removed => $"- {c.Concept} (v{c.Old!.Version}, rank {c.Old.Rank}, sha256 {c.Old.Sha256[..12]})",
                    _ => $"~ {c.Concept}: " + string.Join("; ", c.Fields.Select(f => $"{f.Field} {Short(f.Field, f.Old)} -> {Short(f.Field, f.New)}")),
                };
                console.Out.WriteLine(line);
            }
            int added = changes.Count(c => c.Kind == LibraryChangeKind.Added), removed = changes.Count(c => c.Kind == LibraryChangeKind.Removed);
            console.Out.WriteLine(changes.Count == 0
                ? $"No differences ({from.Entries.Count} concept(s))."
                : $"{added} added, {removed} removed, {changes.Count - added - removed} changed.");
            return ExitCodes.Ok;
        });
        return cmd;
    }

    private static string Short(string field, string value) => field == "sha256" && value.Length > 12 ? value[..12] : value;

    private static Command Merge(CliConsole console)
    {
        var dir = DirArgument();
        var output = new Option<string>("--out", "-o") { Description = "The merged SPM file to write.", Required = true };
        var budget = new Option<int?>("--rank-budget") { Description = "Compress every layer's summed delta to this rank by truncated SVD (reports each layer's relative Frobenius error). Default: exact (ranks concatenated, gates kept per concept)." }.InRange(1, 1_000_000);
        var force = new Option<bool>("--force") { Description = "Overwrite --out." };
        var cmd = new Command("merge", "Merge the library's SPMs into one file: exact (ranks concatenated, each concept gated on its own) or compressed by truncated SVD to a rank budget.") { dir, output, budget, force };
        cmd.SetAction(parse =>
        {
            var lib = SpmLibrary.Open(parse.GetValue(dir)!);
            var outPath = parse.GetValue(output)!;
            bool overwrite = parse.GetValue(force);
            if (!overwrite && File.Exists(outPath)) throw new IOException($"'{outPath}' already exists (use --force to overwrite).");
            var result = lib.Merge(parse.GetValue(budget));
            global::Spm.Core.Membranes.SpmFile.Save(outPath, result.Adapter, overwrite);
            string F(double v) => v.ToString("0.000000", CultureInfo.InvariantCulture);
            if (result.Kind == SpmMerge.SvdKind)
            {
                int w = result.Layers.Max(l => l.Key.Length);
                console.Out.WriteLine($"{"layer".PadRight(w)}  rank  of  relative Frobenius error");
                foreach (var l in result.Layers)
                    console.Out.WriteLine(FormattableString.Invariant($"{l.Key.PadRight(w)}  {l.Rank,4}  {l.FullRank,3}  {F(l.RelativeError)}"));
            }
            console.Out.WriteLine(FormattableString.Invariant(
                $"Merged {lib.Entries.Count} SPM(s) ({result.Kind}, rank {result.Adapter.Config.Rank}, {result.Layers.Count} layers{(result.Kind == SpmMerge.SvdKind ? $", largest relative error {F(result.MaxRelativeError)}" : "")}) -> {outPath}"));
            return ExitCodes.Ok;
        });
        return cmd;
    }

    private static Argument<string> DirArgument() => new("dir") { Description = "The library folder." };

    private static Command Init(CliConsole console)
    {
        var dir = DirArgument();
        var cmd = new Command("init", $"Create an empty library in DIR (created if missing): writes {SpmLibrary.IndexFileName}.") { dir };
        cmd.SetAction(parse =>
        {
            var lib = SpmLibrary.Init(parse.GetValue(dir)!);
            console.Out.WriteLine($"Created library '{lib.Directory}' ({SpmLibrary.IndexFileName}).");
            return ExitCodes.Ok;
        });
        return cmd;
    }

    private static Command Add(CliConsole console)
    {
        var dir = DirArgument();
        var files = new Argument<string[]>("files") { Description = "SPM file(s) to add.", Arity = ArgumentArity.OneOrMore };
        var concept = new Option<string?>("--concept") { Description = "The concept the SPM erases (one file only). Default: its first prompt." };
        var replace = new Option<bool>("--replace") { Description = "Replace an entry of the same concept (the default; kept for scripts)." };
        var noReplace = new Option<bool>("--no-replace") { Description = "Refuse a concept the library already has instead of replacing it." };
        var reference = new Option<bool>("--reference") { Description = "Record the file's full path instead of copying it into the library." };
        var cmd = new Command("add", "Add SPM files to the library: each is loaded, hashed and copied in (or referenced); a concept already there is replaced by the new version (the old entry is kept in the index's history).") { dir, files, concept, replace, noReplace, reference };
        cmd.SetAction(parse =>
        {
            var paths = parse.GetValue(files) ?? [];
            var name = parse.GetValue(concept);
            if (name is not null && paths.Length != 1)
                throw new SpmException($"--concept names one file's concept; {paths.Length} files were given.");
            if (parse.GetValue(replace) && parse.GetValue(noReplace)) throw new SpmException("--replace and --no-replace contradict each other.");
            var lib = SpmLibrary.Open(parse.GetValue(dir)!);
            foreach (var p in paths)
            {
                var before = lib.Entries.ToList();
                var e = lib.Add(p, name, !parse.GetValue(noReplace), parse.GetValue(reference));
                var old = before.FirstOrDefault(b => string.Equals(b.Concept, e.Concept, StringComparison.OrdinalIgnoreCase));
                if (old is not null && old.Version == e.Version)
                    console.Out.WriteLine($"Unchanged '{e.Concept}' v{e.Version} ({e.File}): the same SHA-256 {e.Sha256[..12]} is already in the library.");
                else if (old is not null)
                    console.Out.WriteLine($"Replaced '{e.Concept}' v{old.Version} -> v{e.Version} ({e.File}, rank {e.Rank}, sha256 {old.Sha256[..12]} -> {e.Sha256[..12]}).");
                else
                    console.Out.WriteLine($"Added '{e.Concept}' v{e.Version} ({e.File}, rank {e.Rank}, sha256 {e.Sha256[..12]}).");
            }
            return ExitCodes.Ok;
        });
        return cmd;
    }

    private static Command Remove(CliConsole console)
    {
        var dir = DirArgument();
        var concept = new Argument<string>("concept") { Description = "The concept to remove." };
        var keep = new Option<bool>("--keep-file") { Description = "Keep the copied SPM file in the folder (only its index entry goes)." };
        var cmd = new Command("remove", "Remove a concept from the library (and its copied file, unless --keep-file).") { dir, concept, keep };
        cmd.SetAction(parse =>
        {
            var e = SpmLibrary.Open(parse.GetValue(dir)!).Remove(parse.GetValue(concept)!, parse.GetValue(keep));
            console.Out.WriteLine($"Removed '{e.Concept}' ({e.File}).");
            return ExitCodes.Ok;
        });
        return cmd;
    }

    private static Command List(CliConsole console)
    {
        var dir = DirArgument();
        var json = new Option<bool>("--json") { Description = "Print the index's entries as one JSON array." };
        var cmd = new Command("list", "List the library's concepts.") { dir, json };
        cmd.SetAction(parse =>
        {
            var lib = SpmLibrary.Open(parse.GetValue(dir)!);
            if (parse.GetValue(json))
            {
                var array = JsonSerializer.SerializeToNode(lib.Entries) ?? new JsonArray();
                console.Out.WriteLine(array.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
                return ExitCodes.Ok;
            }
            if (lib.Entries.Count == 0)
            {
                console.Out.WriteLine($"Library '{lib.Directory}' is empty.");
                return ExitCodes.Ok;
            }
            var rows = lib.Entries.Select(e => new[]
            {
                e.Concept, "v" + e.Version.ToString(CultureInfo.InvariantCulture), e.Rank.ToString(CultureInfo.InvariantCulture),
                e.Alpha.ToString(CultureInfo.InvariantCulture), e.GateCalibration, e.ModelFamily ?? "-", e.BaseModel ?? "-", e.Sha256[..12], e.File,
            }).Prepend(["concept", "version", "rank", "alpha", "gate", "family", "base model", "sha256", "file"]).ToList();
            var widths = Enumerable.Range(0, rows[0].Length).Select(c => rows.Max(r => r[c].Length)).ToArray();
            foreach (var r in rows)
                console.Out.WriteLine(string.Join("  ", r.Select((v, c) => c == r.Length - 1 ? v : v.PadRight(widths[c]))));
            console.Out.WriteLine($"{lib.Entries.Count} SPM(s).");
            return ExitCodes.Ok;
        });
        return cmd;
    }

    private static Command Show(CliConsole console)
    {
        var dir = DirArgument();
        var concept = new Argument<string>("concept") { Description = "The concept to show." };
        var cmd = new Command("show", "Print one concept's index entry as JSON, with the file's full path.") { dir, concept };
        cmd.SetAction(parse =>
        {
            var lib = SpmLibrary.Open(parse.GetValue(dir)!);
            var name = parse.GetValue(concept)!;
            var e = lib.Find(name) ?? throw new SpmException(
                $"Library '{lib.Directory}' has no concept '{name}' (it has: {(lib.Entries.Count == 0 ? "none" : string.Join(", ", lib.Entries.Select(x => x.Concept)))}).");
            var node = JsonSerializer.SerializeToNode(e)!.AsObject();
            node["path"] = lib.PathOf(e);
            console.Out.WriteLine(node.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            return ExitCodes.Ok;
        });
        return cmd;
    }

    private static Command Verify(CliConsole console)
    {
        var dir = DirArgument();
        var model = new Option<string?>("--model") { Description = "Also check that every SPM fits this model (a pipeline folder or UNet .onnx): each membrane's layer exists with the same shape, as generation would load it." };
        var cmd = new Command("verify", "Check every entry: the file exists, its SHA-256 matches, it loads, its prompts, rank and alpha match the index; with --model, that it fits the model.") { dir, model };
        cmd.SetAction(parse =>
        {
            var lib = SpmLibrary.Open(parse.GetValue(dir)!);
            var problems = lib.Verify().ToList();
            string? fitted = null;
            if (parse.GetValue(model) is { } modelPath)
            {
                var layers = AdaptableLayerFinder.FindAll(OnnxModel.Load(modelPath));
                problems.AddRange(LibraryModelCheck.Verify(lib, layers, modelPath));
                fitted = $" and fit '{modelPath}'";
            }
            foreach (var p in problems) console.Error.WriteLine($"spm: error: {p.Message}");
            if (problems.Count > 0)
            {
                console.Error.WriteLine($"spm: {problems.Count} problem(s) in library '{lib.Directory}'.");
                return ExitCodes.BadInput;
            }
            // The base model is recorded, not required: SPMs carry across a model family (SD 1.4 -> 1.5 fine-tunes).
            if (fitted is not null)
                foreach (var e in lib.Entries.Where(e => e.BaseModel is not null))
                    console.Out.WriteLine($"{e.Concept}: fits; trained on {e.BaseModel}");
            console.Out.WriteLine($"OK: {lib.Entries.Count} SPM(s) verified in '{lib.Directory}'{fitted}.");
            return ExitCodes.Ok;
        });
        return cmd;
    }
}
