using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using Spm.Core.Gating;

namespace Spm.Diffusion.Membranes;

/// <summary>The gate of one SPM for one prompt.</summary>
/// <param name="Name">The SPM's name (file name).</param>
/// <param name="Gamma">The SPM's gamma (max over its concepts of max(clipcos, tokenuni)), before the facilitate factor; NaN for a fixed multiplier.</param>
/// <param name="Multiplier">The multiplier its membranes get.</param>
/// <param name="IsFixed">Whether a fixed multiplier bypassed the gate.</param>
/// <param name="ReadBy">How gamma was read (never <see cref="GateCalibration.Auto"/>: the choice it made); <see cref="GateCalibration.None"/> for a fixed multiplier.</param>
public sealed record SpmGate(string Name, float Gamma, float Multiplier, bool IsFixed, GateCalibration ReadBy = GateCalibration.None)
{
    /// <summary>Short text for logs and image parameters, e.g. <c>cat.safetensors gate 0.531 (gamma 0.729, learned)</c>.</summary>
    public override string ToString() => IsFixed
        ? FormattableString.Invariant($"{Name} x{Multiplier:0.###} (fixed)")
        : FormattableString.Invariant($"{Name} gate {Multiplier:0.###} (gamma {Gamma:0.###}, {NameOf(ReadBy)})");

    /// <summary>The word logs use for a way of reading gamma.</summary>
    public static string NameOf(GateCalibration calibration) => calibration switch
    {
        GateCalibration.Learned => "learned",
        GateCalibration.EmptyPrompt => "empty-calibrated",
        GateCalibration.None => "raw",
        _ => "auto",
    };
}

/// <summary>
/// Facilitated transport wired to a text encoder: per prompt, each loaded SPM's gamma and multiplier (spec section 3,
/// math in <see cref="FacilitatedTransport"/>). Concept texts are embedded once and cached; thread-safe.
/// </summary>
public sealed class SpmGateEvaluator
{
    private readonly Func<string, (IReadOnlyList<int> TokenIds, float[] Embedding)> _encode;
    private readonly int[] _specialIds;
    private readonly Func<IReadOnlyList<int>, bool[]>? _midWord;
    private readonly ConcurrentDictionary<string, Lazy<GateText>> _concepts = new(StringComparer.Ordinal);

    /// <summary>Creates an evaluator.</summary>
    /// <param name="encode">Text -> (padded token ids, flattened padded last hidden state E(text)).</param>
    /// <param name="specialTokenIds">Ids dropped from the token sets (BOS, EOS, PAD).</param>
    /// <param name="midWord">Padded ids -> per position, whether the token continues into the next (<see cref="GateText.MidWord"/>); null: unknown.</param>
    public SpmGateEvaluator(Func<string, (IReadOnlyList<int> TokenIds, float[] Embedding)> encode, IEnumerable<int> specialTokenIds,
        Func<IReadOnlyList<int>, bool[]>? midWord = null)
    {
        _midWord = midWord;
        ArgumentNullException.ThrowIfNull(encode);
        ArgumentNullException.ThrowIfNull(specialTokenIds);
        _encode = encode;
        _specialIds = specialTokenIds.Distinct().ToArray();
    }

    /// <summary>
    /// An evaluator whose special ids (BOS, EOS, padding) and mid-word masks come from <paramref name="tokenizer"/>, the
    /// tokenizer of the ids <paramref name="encode"/> returns: a learned gate that reads words where they are complete
    /// (<see cref="ConceptProbe.SkipsMidWord"/>) needs both.
    /// </summary>
    public SpmGateEvaluator(Func<string, (IReadOnlyList<int> TokenIds, float[] Embedding)> encode, Text.ClipTokenizer tokenizer)
        : this(encode, [(tokenizer ?? throw new ArgumentNullException(nameof(tokenizer))).BosId, tokenizer.EosId, tokenizer.PadId], tokenizer.MidWordMask)
    {
    }

    /// <summary>An evaluator reading prompts through <paramref name="pipeline"/>'s own conditioning (its
    /// <see cref="Pipelines.StableDiffusionPipeline.EncodePrompt"/> row and tokenizer; BOS, EOS and padding are the special ids).</summary>
    public static SpmGateEvaluator For(Pipelines.StableDiffusionPipeline pipeline)
    {
        ArgumentNullException.ThrowIfNull(pipeline);
        var tok = pipeline.Tokenizer;
        return new SpmGateEvaluator(text =>
        {
            var (ids, embedding) = pipeline.EncodePrompt(text);
            return (ids, embedding.Data);
        }, tok);
    }

    /// <summary>The gate view of a text (no caching).</summary>
    public GateText TextOf(string text)
    {
        var (ids, embedding) = _encode(text);
        return new GateText(embedding, ids, _specialIds, _midWord?.Invoke(ids));
    }

    /// <summary>The gate view of a prompt whose ids and embedding are already known (the pipeline embeds it anyway).</summary>
    public GateText TextOf(IReadOnlyList<int> tokenIds, float[] embedding) => new(embedding, tokenIds, _specialIds, _midWord?.Invoke(tokenIds));

    private GateText Concept(string text) =>
        _concepts.GetOrAdd(text, t => new Lazy<GateText>(() => TextOf(t))).Value;

    private SpmGate Gate(GateText prompt, MembraneSet set, GateSettings s)
    {
        var concepts = set.Concepts.Where(c => c.Trim().Length > 0).Select(c => Concept(c.Trim())).ToList();
        // The probe's fit is checked once per probe (cached), not once per prompt.
        bool? fits = set.GateProbe is { } probe && s.Calibration is GateCalibration.Auto or GateCalibration.Learned ? ProbeFits(probe) : null;
        // The raw gamma never needs E(""): don't encode it then.
        var empty = s.Calibration == GateCalibration.None ? null : Concept("");
        var r = FacilitatedTransport.Read(prompt, concepts, s, empty, set.GateProbe, fits, set.Name);
        return new SpmGate(set.Name, r.Gamma, r.Multiplier, false, r.ReadBy);
    }

    private readonly ConditionalWeakTable<ConceptProbe, StrongBox<bool>> _fits = new();

    /// <summary>Whether a probe was fitted on this evaluator's encoder (checked once per probe, against E("")).</summary>
    private bool ProbeFits(ConceptProbe probe) =>
        _fits.GetValue(probe, p => new StrongBox<bool>(p.Fits(Concept("").Embedding))).Value;

    /// <summary>
    /// The gates of <paramref name="sets"/> for <paramref name="prompt"/>. <paramref name="settings"/> holds one entry per
    /// set (curve, facilitate factor, optional fixed multiplier, calibration).
    /// </summary>
    public IReadOnlyList<SpmGate> Evaluate(GateText prompt, IReadOnlyList<MembraneSet> sets, IReadOnlyList<GateSettings> settings)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(sets);
        ArgumentNullException.ThrowIfNull(settings);
        if (settings.Count != sets.Count) throw new ArgumentException($"Expected {sets.Count} gate settings, got {settings.Count}.", nameof(settings));
        var gates = new SpmGate[sets.Count];
        for (int i = 0; i < sets.Count; i++)
        {
            var s = settings[i];
            if (s.FixedMultiplier is { } m)
            {
                gates[i] = new SpmGate(sets[i].Name, float.NaN, m, true);
                continue;
            }
            gates[i] = Gate(prompt, sets[i], s);
        }
        return gates;
    }
}
