using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Spectre.Console;
using Spm.Benchmarks;
using Spm.Core;
using Spm.Diffusion.Membranes;
using Spm.Diffusion.Onnx;
using Spm.Shapes.Building;

using Spm.Cli.Rendering;

namespace Spm.Cli.Commands;

/// <summary>
/// <c>spm bench injection</c>: cost of membrane branches on a UNet step, as ratios to the plain UNet in the same run
/// (targets: 1 SPM ≤ 1.05x, 20 SPMs ≤ 1.25x on SD 1.x and ≤ 1.10x on SDXL), on a model folder or a UNet built by our code (<c>--preset sd15</c>).
/// </summary>
internal static class InjectionBenchCommand
{
    public static Command Create(CliConsole console)
    {
        var model = new Option<string?>("--model") { Description = "Pipeline folder, UNet folder or .onnx file." };
        var preset = new Option<string?>("--preset") { Description = $"Build a random-weight UNet with our builder instead ({string.Join(", ", UNetPresets.Names)})." };
        var buildDir = new Option<string?>("--build-dir") { Description = "Where the preset UNet is built (reused when present). Default: a temp folder." };
        var batch = new Option<int>("--batch") { Description = "UNet batch rows (2 = one image with guidance).", DefaultValueFactory = _ => 2 };
        var latent = new Option<int>("--latent") { Description = "Latent height and width.", DefaultValueFactory = _ => 32 };
        var spms = new Option<int>("--spms") { Description = "SPM count of the 'many' case.", DefaultValueFactory = _ => 20 };
        var rounds = new Option<int>("--rounds") { Description = "Measured rounds (after a warm-up).", DefaultValueFactory = _ => 5 };
        var routedOpt = new Option<int>("--routed") { Description = "Also time a routed step: this many of the --spms SPMs fed to the session built for all of them, against the same SPMs loaded on their own (0 = off).", DefaultValueFactory = _ => 0 };
        var threads = new Option<int>("--threads") { Description = "Intra-op threads (0 = ONNX Runtime's choice).", DefaultValueFactory = _ => 0 };
        var sequential = new Option<bool>("--one-session-at-a-time")
        {
            Description = "Hold one session at a time (plain, injected, plain again) for UNets too large to open twice (SDXL-sized on 24 GB); the default interleaves rounds of both sessions.",
        };
        var phasesOpt = new Option<int>("--injected-phases")
        {
            Description = "With --one-session-at-a-time: injected phases, each followed by a plain one (plain, injected, plain, ...); each phase runs --rounds rounds.",
            DefaultValueFactory = _ => 1,
        };
        var json = new Option<bool>("--json") { Description = "Print one JSON object." };
        var cmd = new Command("injection", "Membrane branch cost: UNet call with 1 and N SPMs vs the plain UNet, plus the cost of switching SPM sets.")
        {
            model, preset, buildDir, batch, latent, spms, rounds, routedOpt, threads, sequential, phasesOpt, json,
        };
        cmd.SetAction((parse, ct) =>
        {
            string path = parse.GetValue(model) is { } m ? m
                : parse.GetValue(preset) is { } p ? BuildPreset(console, p, parse.GetValue(buildDir), ct)
                : throw new ArgumentException("Give --model or --preset.");
            var unet = OnnxModel.Load(path);
            var options = new InjectionBenchmarkOptions(parse.GetValue(batch), parse.GetValue(latent), parse.GetValue(spms), parse.GetValue(rounds), parse.GetValue(threads), Routed: parse.GetValue(routedOpt),
                OneSessionAtATime: parse.GetValue(sequential), InjectedPhases: parse.GetValue(phasesOpt));
            var progress = new ActionProgress<string>(s => console.Error.WriteLine($"spm: bench injection: {s}"));
            var r = InjectionBenchmark.Run(unet, options, progress, ct);
            string F(double v, string fmt = "0.000") => v.ToString(fmt, CultureInfo.InvariantCulture);
            if (parse.GetValue(json))
            {
                console.Out.WriteLine(JsonSerializer.Serialize(new
                {
                    model = unet.FilePath, layers = r.Layers, batch = options.Batch, latent = options.LatentSize, rounds = r.Rounds,
                    base_ms = Math.Round(r.BaseMs, 2), one_spm_ms = Math.Round(r.OneSpmMs, 2), many_spm_ms = Math.Round(r.ManySpmMs, 2),
                    many_spms = options.ManySpms, one_spm_ratio = Math.Round(r.OneSpmRatio, 4), many_spm_ratio = Math.Round(r.ManySpmRatio, 4),
                    switch_ms = Math.Round(r.SwitchMs, 3),
                    routed_spms = options.Routed,
                    routed_ms = double.IsNaN(r.RoutedMs) ? (double?)null : Math.Round(r.RoutedMs, 2),
                    routed_by_hand_ms = double.IsNaN(r.RoutedByHandMs) ? (double?)null : Math.Round(r.RoutedByHandMs, 2),
                    routed_ratio = double.IsNaN(r.RoutedMs) ? (double?)null : Math.Round(r.RoutedRatio, 4),
                    select_ms = double.IsNaN(r.SelectMs) ? (double?)null : Math.Round(r.SelectMs, 3),
                    one_session_at_a_time = options.OneSessionAtATime,
                    base_before_ms = double.IsNaN(r.BaseBeforeMs) ? (double?)null : Math.Round(r.BaseBeforeMs, 2),
                    base_after_ms = double.IsNaN(r.BaseAfterMs) ? (double?)null : Math.Round(r.BaseAfterMs, 2),
                    phases = r.Phases?.Select(p => new
                    {
                        plain_before_ms = Math.Round(p.PlainBeforeMs, 2), one_spm_ms = Math.Round(p.OneSpmMs, 2), many_spm_ms = Math.Round(p.ManySpmMs, 2),
                        plain_after_ms = Math.Round(p.PlainAfterMs, 2), one_spm_ratio = Math.Round(p.OneSpmRatio, 4), many_spm_ratio = Math.Round(p.ManySpmRatio, 4),
                    }).ToArray(),
                }));
                return Task.FromResult(0);
            }
            var table = new Table().AddColumn("case").AddColumn(new TableColumn("median UNet call").RightAligned()).AddColumn(new TableColumn("ratio").RightAligned());
            table.AddRow("plain UNet (baseline)", F(r.BaseMs, "0.0") + " ms", "1.000");
            if (!double.IsNaN(r.BaseBeforeMs))
                table.AddRow("  plain, first / last phase", F(r.BaseBeforeMs, "0.0") + " / " + F(r.BaseAfterMs, "0.0") + " ms", F(r.BaseAfterMs / r.BaseBeforeMs) + " (drift)");
            table.AddRow("1 SPM (rank 1)", F(r.OneSpmMs, "0.0") + " ms", F(r.OneSpmRatio) + " (target ≤ 1.05)");
            table.AddRow($"{options.ManySpms} SPMs (rank 1 each)", F(r.ManySpmMs, "0.0") + " ms", F(r.ManySpmRatio) + " (target ≤ 1.25; SDXL ≤ 1.10)");
            table.AddRow("switch SPM set (same session)", F(r.SwitchMs, "0.00") + " ms", "");
            for (int i = 0; i < (r.Phases?.Count ?? 0); i++)
            {
                var ph = r.Phases![i];
                table.AddRow($"injected phase {i + 1} vs the plain phases around it",
                    $"{F(ph.PlainBeforeMs, "0")} | {F(ph.OneSpmMs, "0")}, {F(ph.ManySpmMs, "0")} | {F(ph.PlainAfterMs, "0")} ms",
                    $"1 SPM {F(ph.OneSpmRatio)}, {options.ManySpms} SPMs {F(ph.ManySpmRatio)}");
            }
            if (!double.IsNaN(r.RoutedMs))
            {
                table.AddRow($"{options.Routed} SPMs loaded on their own", F(r.RoutedByHandMs, "0.0") + " ms", F(r.RoutedByHandMs / r.BaseMs));
                table.AddRow($"{options.Routed} of {options.ManySpms} routed (library session)", F(r.RoutedMs, "0.0") + " ms",
                    F(r.RoutedMs / r.BaseMs) + $" ({F(r.RoutedRatio)}x the same SPMs on their own)");
                table.AddRow("cutting the routed inputs (per request)", F(r.SelectMs, "0.00") + " ms", "");
            }
            console.Output.Write(table);
            console.Out.WriteLine(Markup.Escape($"{r.Layers} layers, batch {options.Batch}, latent {options.LatentSize}x{options.LatentSize}, {r.Rounds} rounds{(options.OneSessionAtATime ? " (one session at a time)" : "")}, model {unet.FilePath}"));
            return Task.FromResult(0);
        });
        return cmd;
    }

    private static string BuildPreset(CliConsole console, string name, string? dir, CancellationToken ct)
    {
        var folder = dir ?? Path.Combine(Path.GetTempPath(), $"spm-bench-{name}");
        var file = Path.Combine(folder, "model.onnx");
        if (File.Exists(file)) return file;
        Directory.CreateDirectory(folder);
        console.Error.WriteLine($"spm: bench injection: building the {name} UNet (random weights) in {folder}");
        UNetBuilder.Create(UNetPresets.Get(name), 1).Save(file, "weights.pb", cancellationToken: ct);
        return file;
    }
}
