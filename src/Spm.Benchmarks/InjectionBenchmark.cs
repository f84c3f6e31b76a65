using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;
using Spm.Core.Randomness;
using Spm.Core.Tensors;
using Spm.Diffusion.Onnx;

using Spm.Diffusion.Membranes;

namespace Spm.Benchmarks;

/// <summary>Settings of <see cref="InjectionBenchmark.Run"/>.</summary>
/// <param name="Batch">UNet batch rows (2 = one image with classifier-free guidance).</param>
/// <param name="LatentSize">Latent height and width.</param>
/// <param name="ManySpms">The "many SPMs" case (rank 1 each).</param>
/// <param name="Rounds">Measured rounds; each round runs base, 1 SPM and many SPMs once, interleaved so drift hits all alike.</param>
/// <param name="IntraOpThreads">ONNX Runtime intra-op threads (0 = its default).</param>
/// <param name="Seed">Seed of the random membranes and inputs.</param>
/// <param name="Routed">When above 0, also time a routed step: this many of the <see cref="ManySpms"/> fed to the session built for all of them (<see cref="MembraneTensors.Select"/>), against the same SPMs loaded on their own.</param>
/// <param name="OneSessionAtATime">
/// Hold one session at a time, for UNets too large for two (SDXL-sized: 10 GB of weights, and opening a second session
/// loads them again before it can share the packed copy): the plain UNet's rounds, then the injected UNet's, then the
/// plain UNet's again, each session closed before the next opens; the baseline is the median of both plain phases, which
/// bracket the injected one in time. Not with <see cref="Routed"/>.
/// </param>
/// <param name="InjectedPhases">
/// With <see cref="OneSessionAtATime"/>: how many injected phases, each followed by a plain one (plain, injected, plain,
/// injected, plain, ...), so every injected phase is bracketed by plain ones close in time; each phase runs
/// <see cref="Rounds"/> rounds.
/// </param>
public sealed record InjectionBenchmarkOptions(int Batch = 2, int LatentSize = 32, int ManySpms = 20, int Rounds = 5, int IntraOpThreads = 0, ulong Seed = 1, int Routed = 0,
    bool OneSessionAtATime = false, int InjectedPhases = 1);

/// <summary>Median UNet call times with and without membranes, measured in one run.</summary>
/// <param name="Layers">Layers with a branch (all transformer layers).</param>
/// <param name="BaseMs">Median call of the untouched UNet (the baseline).</param>
/// <param name="OneSpmMs">Median call of the injected UNet with one rank-1 SPM loaded and active.</param>
/// <param name="ManySpmMs">Median call with <see cref="InjectionBenchmarkOptions.ManySpms"/> rank-1 SPMs loaded and active.</param>
/// <param name="SwitchMs">Median time to swap the loaded SPM set (1 ↔ many) on the same session (no rebuild: the next call runs at full speed).</param>
/// <param name="Rounds">Measured rounds.</param>
/// <param name="RoutedMs">Median call with <see cref="InjectionBenchmarkOptions.Routed"/> SPMs routed out of the many (NaN when not measured).</param>
/// <param name="RoutedByHandMs">Median call with the same SPMs loaded on their own (the routed case's baseline; NaN when not measured).</param>
/// <param name="SelectMs">Median time to cut the routed SPMs' inputs out of the library's (once per request, not per step; NaN when not measured).</param>
/// <param name="BaseBeforeMs">With <see cref="InjectionBenchmarkOptions.OneSessionAtATime"/>: the median plain call of the first plain phase (NaN otherwise).</param>
/// <param name="BaseAfterMs">With <see cref="InjectionBenchmarkOptions.OneSessionAtATime"/>: the median plain call of the last plain phase (NaN otherwise); far from <see cref="BaseBeforeMs"/> means the load drifted.</param>
/// <param name="Phases">With <see cref="InjectionBenchmarkOptions.OneSessionAtATime"/>: each injected phase against the plain phases on either side of it (null otherwise).</param>
public sealed record InjectionBenchmarkResult(int Layers, double BaseMs, double OneSpmMs, double ManySpmMs, double SwitchMs, int Rounds,
    double RoutedMs = double.NaN, double RoutedByHandMs = double.NaN, double SelectMs = double.NaN,
    double BaseBeforeMs = double.NaN, double BaseAfterMs = double.NaN, IReadOnlyList<InjectionPhase>? Phases = null)
{
    /// <summary>RoutedMs / RoutedByHandMs: what the library costs a routed step beyond its routed SPMs (1 = nothing).</summary>
    public double RoutedRatio => RoutedMs / RoutedByHandMs;

    /// <summary>OneSpmMs / BaseMs (target ≤ 1.05).</summary>
    public double OneSpmRatio => OneSpmMs / BaseMs;

    /// <summary>ManySpmMs / BaseMs (target ≤ 1.25 for 20).</summary>
    public double ManySpmRatio => ManySpmMs / BaseMs;
}

/// <summary>One injected phase of a one-session-at-a-time run, against the plain phases just before and after it.</summary>
/// <param name="PlainBeforeMs">Median plain call of the phase before.</param>
/// <param name="OneSpmMs">Median call with one SPM in this phase.</param>
/// <param name="ManySpmMs">Median call with the many SPMs in this phase.</param>
/// <param name="PlainAfterMs">Median plain call of the phase after.</param>
public sealed record InjectionPhase(double PlainBeforeMs, double OneSpmMs, double ManySpmMs, double PlainAfterMs)
{
    /// <summary>The baseline of this phase: the mean of the plain medians on either side.</summary>
    public double BaseMs => (PlainBeforeMs + PlainAfterMs) / 2;

    /// <summary>OneSpmMs / BaseMs.</summary>
    public double OneSpmRatio => OneSpmMs / BaseMs;

    /// <summary>ManySpmMs / BaseMs.</summary>
    public double ManySpmRatio => ManySpmMs / BaseMs;
}

/// <summary>
/// Cost of membrane branches on a UNet step: the plain UNet against one injected session serving first 1, then N
/// rank-1 SPMs over every transformer layer (random membranes, all active), switching between the two sets every
/// round without rebuilding the session.
/// </summary>
public static class InjectionBenchmark
{
    /// <summary>Runs the benchmark on <paramref name="unet"/>.</summary>
    public static InjectionBenchmarkResult Run(OnnxModel unet, InjectionBenchmarkOptions options, IProgress<string>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(unet);
        ArgumentNullException.ThrowIfNull(options);
        var rng = new SeededRandom(options.Seed);
        var layers = AdaptableLayerFinder.FindTransformerLayers(unet);
        if (layers.Count == 0) throw new Spm.Core.SpmException($"'{unet.FilePath}' has no transformer layers to put membranes on.");
        var sets = Enumerable.Range(0, Math.Max(1, options.ManySpms)).Select(i => RandomSet($"bench{i}", layers, rng)).ToList();
        var many = MembraneTensors.Build(MembraneLayout.Create(layers, sets));
        var one = MembraneTensors.Build(MembraneLayout.Create(layers, [sets[0]]));
        int routedCount = Math.Clamp(options.Routed, 0, sets.Count);
        // Every third SPM up to the count: a subset spread over the library, not its first columns.
        var routedIndices = Enumerable.Range(0, sets.Count).Where(i => i % 3 == 0).Concat(Enumerable.Range(0, sets.Count).Where(i => i % 3 != 0)).Take(routedCount).Order().ToList();
        var byHand = routedCount == 0 ? null : MembraneTensors.Build(MembraneLayout.Create(layers, routedIndices.Select(i => sets[i]).ToList()));
        if (options.OneSessionAtATime)
        {
            if (byHand is not null) throw new ArgumentException("A routed step (Routed, --routed) needs both sessions open at once; it cannot be combined with one session at a time (OneSessionAtATime, --one-session-at-a-time).", nameof(options));
            return RunOneSessionAtATime(unet, layers.Count, one, many, options, rng, progress, cancellationToken);
        }

        // Identical runtime options for both sessions, so the comparison is of the graphs only. The two graphs have the
        // same weights: with a shared pre-packed store the packed copy exists once instead of once per session.
        // It is not enough for an SDXL-sized UNet on 24 GB: opening the second session reads the 10 GB in again before
        // its weights are found packed; that case uses OneSessionAtATime.
        using var prepacked = new PrePackedWeightsContainer();
        var sessions = new Spm.Diffusion.Runtime.OnnxSessionGroup(new Spm.Diffusion.Runtime.OnnxRuntimeOptions { IntraOpThreads = options.IntraOpThreads })
        {
            SharedPrepackedWeights = prepacked,
        };
        progress?.Report("opening the plain UNet session");
        using var plain = InjectedUnet.OpenSession(unet.Proto, unet.BaseDirectory, sessions);
        progress?.Report("opening the injected UNet session");
        using var injected = InjectedUnet.Create(unet.Proto, unet.BaseDirectory, many.Layout, sessions);

        var inputs = MakeInputs(plain, options, rng);
        try
        {
            var names = inputs.Keys.ToList();
            var values = inputs.Values.ToList();
            double RunPlain()
            {
                var sw = Stopwatch.StartNew();
                using var o = plain.Run(new RunOptions(), names, values, plain.OutputNames);
                return sw.Elapsed.TotalMilliseconds;
            }
            double RunInjected(MembraneTensors t)
            {
                var gates = t.Gates(options.Batch, Enumerable.Repeat(1f, t.Layout.Sets.Count).ToArray());
                var sw = Stopwatch.StartNew();
                using var o = injected.Run(inputs, gates);
                return sw.Elapsed.TotalMilliseconds;
            }
            var routedGates = Enumerable.Repeat(1f, options.Batch * Math.Max(1, routedCount)).ToArray();
            double RunFeed(IReadOnlyDictionary<string, FloatTensor> membranes)
            {
                // Membrane inputs fed per call, as the pipeline feeds a conditioner's inputs; only the session run is timed.
                var feed = membranes.Select(kv => (kv.Key, Value: OrtValue.CreateTensorValueFromMemory(kv.Value.Data, kv.Value.Shape.Select(d => (long)d).ToArray()))).ToList();
                try
                {
                    var n = new List<string>(names); n.AddRange(feed.Select(f => f.Key));
                    var v = new List<OrtValue>(values); v.AddRange(feed.Select(f => f.Value));
                    var sw = Stopwatch.StartNew();
                    using var o = injected.Session.Run(new RunOptions(), n, v, injected.Session.OutputNames);
                    return sw.Elapsed.TotalMilliseconds;
                }
                finally { foreach (var f in feed) f.Value.Dispose(); }
            }
            double RunRouted(out double selectMs)
            {
                // What RoutedSpmConditioner does: cut the routed SPMs out of the library's tensors and feed them with the
                // model's inputs to the session built for the whole library.
                var sw = Stopwatch.StartNew();
                var subset = many.Select(routedIndices, routedGates);
                selectMs = sw.Elapsed.TotalMilliseconds;
                return RunFeed(subset);
            }
            double RunByHand()
            {
                // The same SPMs in a layout of their own, fed the same way (what SpmConditioner does with them loaded by hand).
                var inputs2 = new Dictionary<string, FloatTensor>(byHand!.Inputs, StringComparer.Ordinal) { [MembraneNames.Gates] = byHand.Gates(options.Batch, Enumerable.Repeat(1f, routedCount).ToArray()) };
                return RunFeed(inputs2);
            }
            double Switch(MembraneTensors t)
            {
                var sw = Stopwatch.StartNew();
                injected.SetMembranes(t);
                return sw.Elapsed.TotalMilliseconds;
            }

            progress?.Report("warm-up");
            RunPlain();
            Switch(one); RunInjected(one);
            Switch(many); RunInjected(many);
            if (byHand is not null) { RunRouted(out _); RunByHand(); }
            var b = new List<double>(); var o1 = new List<double>(); var on = new List<double>(); var sws = new List<double>();
            var routed = new List<double>(); var hand = new List<double>(); var selects = new List<double>();
            for (int r = 0; r < options.Rounds; r++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                progress?.Report($"round {r + 1}/{options.Rounds}");
                b.Add(RunPlain());
                sws.Add(Switch(one));
                o1.Add(RunInjected(one));
                sws.Add(Switch(many));
                on.Add(RunInjected(many));
                if (byHand is null) continue;
                // The routed feed brings its own membrane inputs; the session's stored constants are not used for it. The
                // two alternate which runs first (the first call after the many-SPM one meets colder caches).
                double selectMs;
                if (r % 2 == 0) { routed.Add(RunRouted(out selectMs)); hand.Add(RunByHand()); }
                else { hand.Add(RunByHand()); routed.Add(RunRouted(out selectMs)); }
                selects.Add(selectMs);
            }
            return byHand is null
                ? new InjectionBenchmarkResult(layers.Count, Median(b), Median(o1), Median(on), Median(sws), options.Rounds)
                : new InjectionBenchmarkResult(layers.Count, Median(b), Median(o1), Median(on), Median(sws), options.Rounds, Median(routed), Median(hand), Median(selects));
        }
        finally
        {
            foreach (var v in inputs.Values) v.Dispose();
        }
    }

    /// <summary>Plain, then (injected, plain) per injected phase: one session open at a time (see <see cref="InjectionBenchmarkOptions.OneSessionAtATime"/>).</summary>
    private static InjectionBenchmarkResult RunOneSessionAtATime(OnnxModel unet, int layerCount, MembraneTensors one, MembraneTensors many,
        InjectionBenchmarkOptions options, SeededRandom rng, IProgress<string>? progress, CancellationToken cancellationToken)
    {
        // No shared pre-packed store here: it would keep the plain session's packed weights alive while the injected
        // session loads its own copy, which is the very peak this mode avoids.
        var sessions = new Spm.Diffusion.Runtime.OnnxSessionGroup(new Spm.Diffusion.Runtime.OnnxRuntimeOptions { IntraOpThreads = options.IntraOpThreads });
        Dictionary<string, OrtValue>? inputs = null;
        try
        {
            List<double> PlainPhase(string label)
            {
                progress?.Report($"opening the plain UNet session ({label})");
                using var plain = InjectedUnet.OpenSession(unet.Proto, unet.BaseDirectory, sessions);
                // The same inputs in every phase: drawn once, from the first session's input metadata.
                inputs ??= MakeInputs(plain, options, rng);
                var names = inputs.Keys.ToList();
                var values = inputs.Values.ToList();
                double Run()
                {
                    var sw = Stopwatch.StartNew();
                    using var o = plain.Run(new RunOptions(), names, values, plain.OutputNames);
                    return sw.Elapsed.TotalMilliseconds;
                }
                progress?.Report($"warm-up ({label})");
                Run();
                var times = new List<double>();
                for (int r = 0; r < options.Rounds; r++)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    times.Add(Run());
                    progress?.Report($"plain round {r + 1}/{options.Rounds} ({label}): {times[^1]:0} ms");
                }
                return times;
            }

            var plainPhases = new List<List<double>> { PlainPhase("plain phase 1") };
            var o1 = new List<double>(); var on = new List<double>(); var sws = new List<double>();
            var phases = new List<InjectionPhase>();
            int count = Math.Max(1, options.InjectedPhases);
            for (int p = 0; p < count; p++)
            {
                var p1 = new List<double>(); var pn = new List<double>();
                progress?.Report($"opening the injected UNet session (injected phase {p + 1}/{count})");
                using (var injected = InjectedUnet.Create(unet.Proto, unet.BaseDirectory, many.Layout, sessions))
                {
                    double RunInjected(MembraneTensors t)
                    {
                        var gates = t.Gates(options.Batch, Enumerable.Repeat(1f, t.Layout.Sets.Count).ToArray());
                        var sw = Stopwatch.StartNew();
                        using var o = injected.Run(inputs!, gates);
                        return sw.Elapsed.TotalMilliseconds;
                    }
                    double Switch(MembraneTensors t)
                    {
                        var sw = Stopwatch.StartNew();
                        injected.SetMembranes(t);
                        return sw.Elapsed.TotalMilliseconds;
                    }
                    progress?.Report("warm-up (injected)");
                    Switch(one); RunInjected(one);
                    Switch(many); RunInjected(many);
                    for (int r = 0; r < options.Rounds; r++)
                    {
                        cancellationToken.ThrowIfCancellationRequested();
                        sws.Add(Switch(one));
                        p1.Add(RunInjected(one));
                        sws.Add(Switch(many));
                        pn.Add(RunInjected(many));
                        progress?.Report($"injected round {r + 1}/{options.Rounds} (injected phase {p + 1}/{count}): 1 SPM {p1[^1]:0} ms, {options.ManySpms} SPMs {pn[^1]:0} ms");
                    }
                }
                plainPhases.Add(PlainPhase($"plain phase {p + 2}"));
                phases.Add(new InjectionPhase(Median(plainPhases[^2]), Median(p1), Median(pn), Median(plainPhases[^1])));
                o1.AddRange(p1); on.AddRange(pn);
            }
            return new InjectionBenchmarkResult(layerCount, Median(plainPhases.SelectMany(x => x).ToList()), Median(o1), Median(on), Median(sws), options.Rounds,
                BaseBeforeMs: Median(plainPhases[0]), BaseAfterMs: Median(plainPhases[^1]), Phases: phases);
        }
        finally
        {
            if (inputs is not null) foreach (var v in inputs.Values) v.Dispose();
        }
    }

    private static MembraneSet RandomSet(string name, IReadOnlyList<AdaptableLayer> layers, SeededRandom rng)
    {
        var ms = new List<LayerMembrane>(layers.Count);
        foreach (var l in layers)
        {
            var down = new FloatTensor(MembraneShapes.Down(l, 1));
            var up = new FloatTensor(MembraneShapes.Up(l, 1));
            float bound = 1f / MathF.Sqrt(down.Length);
            for (int i = 0; i < down.Length; i++) down.Data[i] = (float)((rng.NextDouble() * 2 - 1) * bound);
            for (int i = 0; i < up.Length; i++) up.Data[i] = (float)(rng.NextGaussian() * 1e-3);
            ms.Add(new LayerMembrane(l.ModulePath, down, up, 1f));
        }
        return new MembraneSet(name, [name], ms);
    }

    private static Dictionary<string, OrtValue> MakeInputs(InferenceSession session, InjectionBenchmarkOptions o, SeededRandom rng)
    {
        var result = new Dictionary<string, OrtValue>(StringComparer.Ordinal);
        foreach (var (name, meta) in session.InputMetadata)
        {
            var dims = meta.Dimensions.Select((d, i) => d > 0 ? d : name switch
            {
                _ when i == 0 => o.Batch,
                "sample" => o.LatentSize,
                "encoder_hidden_states" => 77,
                _ => 1,
            }).Select(d => (long)d).ToArray();
            long n = dims.Aggregate(1L, (a, d) => a * d);
            if (meta.ElementType == typeof(long))
                result[name] = OrtValue.CreateTensorValueFromMemory(Enumerable.Repeat(500L, (int)n).ToArray(), dims);
            else if (name == "timestep")
                result[name] = OrtValue.CreateTensorValueFromMemory(Enumerable.Repeat(500f, (int)n).ToArray(), dims);
            else
            {
                var data = new float[n];
                rng.FillGaussian(data);
                result[name] = OrtValue.CreateTensorValueFromMemory(data, dims);
            }
        }
        return result;
    }

    private static double Median(List<double> v)
    {
        var s = v.OrderBy(x => x).ToList();
        return s.Count % 2 == 1 ? s[s.Count / 2] : (s[s.Count / 2 - 1] + s[s.Count / 2]) / 2;
    }
}
