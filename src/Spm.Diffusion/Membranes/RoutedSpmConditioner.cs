using Spm.Core.Gating;
using Spm.Core.Library;
using Spm.Diffusion.Pipelines;

namespace Spm.Diffusion.Membranes;

/// <summary>Which SPMs of a library act on a prompt.</summary>
/// <param name="Threshold">The lowest gamma that opens a gate (default: any positive gamma).</param>
/// <param name="TopK">Keep at most this many, highest gamma first (null: every open gate).</param>
public sealed record RouteOptions(float Threshold = float.Epsilon, int? TopK = null)
{
    /// <summary>Every SPM whose gate opens at all.</summary>
    public static RouteOptions Default { get; } = new();
}

/// <summary>
/// Routing connected to generation (<see cref="IUNetConditioner"/>): for each request's prompt, every loaded SPM's gate
/// is read in one batched pass (<see cref="LibraryGate"/>: one matrix-vector product over the stacked concept
/// embeddings, one product with the stacked linear gate probes), the SPMs whose gate opens are kept
/// (<see cref="RouteOptions"/>), and only their membranes and gates go to the injected UNet
/// (<see cref="MembraneTensors.Select"/>): the session built for the whole library serves any subset without a
/// rebuild. Concept texts are embedded once, when the conditioner is made. Thread-safe.
/// </summary>
public sealed class RoutedSpmConditioner : IUNetConditioner
{
    private readonly LoadedSpms _spms;
    private readonly StableDiffusionPipeline _pipeline;
    private readonly SpmGateEvaluator _texts;
    private readonly bool _offInUnconditional;

    internal RoutedSpmConditioner(LoadedSpms spms, StableDiffusionPipeline pipeline, GateSettings settings, RouteOptions route, bool offInUnconditional)
    {
        ArgumentNullException.ThrowIfNull(spms);
        ArgumentNullException.ThrowIfNull(pipeline);
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(route);
        if (route.TopK is < 0) throw new ArgumentOutOfRangeException(nameof(route), route.TopK, "top-k must be 0 or more.");
        _spms = spms;
        _pipeline = pipeline;
        _offInUnconditional = offInUnconditional;
        Route = route;
        _texts = SpmGateEvaluator.For(pipeline);
        var cache = new Dictionary<string, GateText>(StringComparer.Ordinal);
        GateText Text(string t)
        {
            if (!cache.TryGetValue(t, out var g)) cache[t] = g = _texts.TextOf(t);
            return g;
        }
        var sets = spms.Layout.Sets;
        var concepts = sets.Select(s => (IReadOnlyList<GateText>)s.Concepts.Where(c => c.Trim().Length > 0).Select(c => Text(c.Trim())).ToList()).ToList();
        var empty = settings.Calibration == GateCalibration.None ? null : Text("");
        Gate = new LibraryGate(sets.Select(s => s.Name).ToList(), concepts, sets.Select(s => s.GateProbe).ToList(), settings, empty);
    }

    /// <summary>The batched gate of the loaded SPMs.</summary>
    public LibraryGate Gate { get; }

    /// <summary>How SPMs are chosen.</summary>
    public RouteOptions Route { get; }

    /// <summary>The SPMs routed for <paramref name="prompt"/>, highest gamma first, with their multipliers.</summary>
    public IReadOnlyList<RoutedSpm> RouteFor(string prompt)
    {
        var (ids, embedding) = _pipeline.EncodePrompt(prompt);
        return Gate.Route(_texts.TextOf(ids, embedding.Data), Route.Threshold, Route.TopK);
    }

    /// <summary>Text for the image parameters and logs: <c>SPM routed 2/6: circle gate 1 (gamma 1), red gate 0.4 (gamma 0.63)</c>.</summary>
    public static string Describe(IReadOnlyList<RoutedSpm> routed, int librarySize, bool offInUnconditional) =>
        FormattableString.Invariant($"SPM routed {routed.Count}/{librarySize}") +
        (routed.Count == 0 ? "" : ": " + string.Join(", ", routed.Select(r => FormattableString.Invariant($"{r.Name} gate {r.Multiplier:0.###} (gamma {r.Gamma:0.###})")))) +
        (offInUnconditional ? " [uncond off]" : "");

    /// <inheritdoc />
    public UNetConditioning Prepare(UNetConditioningContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var routed = Gate.Route(_texts.TextOf(context.PromptTokenIds, context.PromptEmbedding.Data), Route.Threshold, Route.TopK);
        // Library order, not gamma order: the subset's columns then sit as in a layout that loaded exactly these SPMs,
        // so the branch sums run in the same order and the images are the same.
        var chosen = routed.OrderBy(r => r.Index).ToList();
        int n = Math.Max(1, chosen.Count);
        var perRow = new float[context.BatchRows * n];
        for (int row = 0; row < context.BatchRows; row++)
        {
            bool off = _offInUnconditional && context.Rows[row] == GuidanceRow.Unconditional;
            for (int k = 0; k < chosen.Count; k++) perRow[row * n + k] = off ? 0f : chosen[k].Multiplier;
        }
        var inputs = _spms.Tensors.Select(chosen.Select(r => r.Index).ToList(), perRow);
        return new UNetConditioning(inputs, Describe(routed, _spms.Layout.Sets.Count, _offInUnconditional));
    }
}
