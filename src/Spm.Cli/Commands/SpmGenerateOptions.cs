using System.CommandLine;
using Spm.Core.Gating;
using Spm.Core.Library;
using Spm.Diffusion.Membranes;
using Spm.Diffusion.Pipelines;

using Spm.Cli.Rendering;

namespace Spm.Cli.Commands;

/// <summary>The <c>--spm</c> options of <c>spm generate</c>: which SPMs to load and how their gates are decided.</summary>
internal sealed class SpmGenerateOptions
{
    public readonly Option<string[]> Spm = new("--spm")
    {
        Description = $"SPM to apply, repeat for several: {SpmFileArgument.Syntax}.",
    };
    public readonly Option<string> GateCurve = new("--gate-curve") { Description = "How gamma becomes the multiplier: square (default) or linear.", DefaultValueFactory = _ => "square" };
    public readonly Option<float> FacilitateFactor = new Option<float>("--facilitate-factor") { Description = "Scales each SPM's gamma before the curve (0 or more).", DefaultValueFactory = _ => 1f }.InRange(0);
    public readonly Option<bool> UncondOff = new("--spm-uncond-off") { Description = "Switch the membranes off in the unconditional (negative prompt) row of guidance." };
    public readonly Option<bool> AllowPartial = new("--allow-partial") { Description = "Apply the matching layers of an SPM that does not fully fit the model (with a warning)." };

    public readonly Option<string> GateCalibration = new("--gate-calibration") { Description = "How gamma is read: auto (default: the SPM's learned gate when its file has one for this model, else empty), learned (required), empty (the concept text's cosine above the empty prompt's), none (the spec's raw cosine and token match).", DefaultValueFactory = _ => "auto" };

    public readonly Option<string?> Library = new("--library") { Description = "A concept library folder (spm library): every SPM's gate is read per prompt in one batched pass and only those whose gate opens act (not with --spm)." };
    public readonly Option<float> RouteThreshold = new Option<float>("--route-threshold") { Description = "With --library: the lowest gamma that opens an SPM's gate (default: any positive gamma).", DefaultValueFactory = _ => float.Epsilon }.InRange(0);
    public readonly Option<int?> RouteTopK = new Option<int?>("--route-top-k") { Description = "With --library: keep at most this many SPMs, highest gamma first." }.InRange(0, int.MaxValue);

    public SpmGenerateOptions()
    {
        GateCurve.AcceptOnlyFromAmong("square", "linear");
        GateCalibration.AcceptOnlyFromAmong([.. global::Spm.Core.Gating.GateCalibrations.Names]);
    }

    /// <summary>Reads --gate-calibration.</summary>
    public static global::Spm.Core.Gating.GateCalibration ParseCalibration(string? text)
        => global::Spm.Core.Gating.GateCalibrations.TryParse(text, out var c) ? c : global::Spm.Core.Gating.GateCalibration.Auto;

    public IEnumerable<Option> All() => [Spm, Library, RouteThreshold, RouteTopK, GateCurve, FacilitateFactor, GateCalibration, UncondOff, AllowPartial];

    /// <summary>The --spm values, parsed and resolved against <paramref name="modelFolder"/> (checked before any model loads).</summary>
    public IReadOnlyList<SpmFileArgument> Parse(ParseResult parse, string modelFolder)
    {
        var files = SpmFileArgument.ParseAll(parse.GetValue(Spm) ?? [], modelFolder);
        if (parse.GetValue(Library) is not null && files.Count > 0)
            throw new Spm.Core.SpmException("--library and --spm do not go together: add the SPM to the library, or generate with --spm only.");
        if (parse.GetValue(Library) is null && (parse.GetResult(RouteThreshold) is { Implicit: false } || parse.GetValue(RouteTopK) is not null))
            throw new Spm.Core.SpmException("--route-threshold and --route-top-k route the SPMs of a --library.");
        return files;
    }

    /// <summary>The library named by --library (opened, so a missing folder or index fails before any model loads), or null.</summary>
    public SpmLibrary? OpenLibrary(ParseResult parse) => parse.GetValue(Library) is { } dir ? SpmLibrary.Open(dir) : null;

    /// <summary>Loads the SPMs (null without --spm or --library); warnings go to stderr.</summary>
    public LoadedSpms? Load(CliConsole console, ParseResult parse, string modelFolder, IReadOnlyList<SpmFileArgument> files, SpmLibrary? library = null)
    {
        if (files.Count == 0 && library is null) return null;
        var loaded = library is not null
            ? LoadedSpms.LoadLibrary(modelFolder, library, parse.GetValue(AllowPartial))
            : LoadedSpms.Load(modelFolder, files.Select(f => f.Path).ToList(), parse.GetValue(AllowPartial), splitMerged: true);
        foreach (var w in loaded.Layout.Warnings) console.Error.WriteLine($"spm: warning: {w}");
        return loaded;
    }

    /// <summary>The request's conditioner; prints each SPM's gate (or, with --library, the routed SPMs) for the prompt on stdout.</summary>
    public IUNetConditioner? CreateConditioner(CliConsole console, IReadOnlyList<SpmFileArgument> files, ParseResult parse, LoadedSpms? spms, StableDiffusionPipeline pipeline, string prompt)
    {
        if (spms is null) return null;
        var fixedMults = files.Select(f => f.Multiplier);
        GateCurves.TryParse(parse.GetValue(GateCurve), out var curve);
        float factor = parse.GetValue(FacilitateFactor);
        var calibration = ParseCalibration(parse.GetValue(GateCalibration));
        if (parse.GetValue(Library) is not null)
        {
            var routedConditioner = spms.CreateRoutedConditioner(pipeline, new GateSettings(curve, factor, null, calibration),
                new RouteOptions(parse.GetValue(RouteThreshold), parse.GetValue(RouteTopK)), parse.GetValue(UncondOff));
            var routed = routedConditioner.RouteFor(prompt);
            console.Out.WriteLine(FormattableString.Invariant($"route: {routed.Count} of {spms.Layout.Sets.Count} SPMs (batched gate: {routedConditioner.Gate.BatchedProbes} learned, {spms.Layout.Sets.Count - routedConditioner.Gate.BatchedProbes} others)"));
            foreach (var r in routed)
                console.Out.WriteLine(FormattableString.Invariant($"gate: {r.Name} gate {r.Multiplier:0.###} (gamma {r.Gamma:0.###}, {SpmGate.NameOf(routedConditioner.Gate.ReadBy[r.Index])})"));
            return routedConditioner;
        }
        var settings = spms.PerSet(fixedMults.Select(m => new GateSettings(curve, factor, m, calibration)).ToList());
        bool off = parse.GetValue(UncondOff);
        var conditioner = spms.CreateConditioner(pipeline, settings, off);
        foreach (var g in conditioner.GatesFor(prompt)) console.Out.WriteLine($"gate: {g}");
        if (off) console.Out.WriteLine("gate: membranes off in the unconditional row");
        return conditioner;
    }
}
