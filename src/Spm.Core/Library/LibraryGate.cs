using System.Numerics.Tensors;
using Spm.Core.Gating;

namespace Spm.Core.Library;

/// <summary>
/// Every SPM's gate for a prompt, read as <see cref="FacilitatedTransport.Read"/> reads it one SPM at a time, but in
/// batched passes: the cosine gates of all SPMs that read the concept-text similarity are one matrix-vector product
/// (<see cref="LibraryRouter"/>), and the learned gates of all SPMs with a linear probe are one product of the prompt's
/// hidden states with the stacked probe weights (positions × probes). Probes with a hidden layer are read one by one.
/// Each value is computed with the same float operations as the per-SPM path, so the readings (and the subsets chosen
/// from them) equal it exactly. Thread-safe after construction.
/// </summary>
public sealed class LibraryGate
{
    private readonly GateSettings _settings;
    private readonly GateCalibration[] _readBy;
    private readonly IReadOnlyList<GateText>[] _concepts;
    private readonly LibraryRouter _cosine;          // over the SPMs that read a cosine gate
    private readonly int[] _cosineSpm;               // router index -> SPM index
    private readonly float[] _probeWeights;          // linear probes stacked, row-major [probes, width]
    private readonly ConceptProbe[] _linearProbes;
    private readonly int[] _linearSpm;               // linear probe index -> SPM index
    private readonly int[] _mlpSpm;                  // SPMs whose probe has a hidden layer or a look-ahead window (read one by one)
    private readonly ConceptProbe?[] _probes;
    private readonly int _probeWidth;

    /// <summary>Prepares the batched gate of a library.</summary>
    /// <param name="names">The SPMs' names (library concepts or file names), for messages and results.</param>
    /// <param name="concepts">Each SPM's concept gate texts (empty texts left out).</param>
    /// <param name="probes">Each SPM's learned gate, or null (same order; null list: none has one).</param>
    /// <param name="settings">Curve, facilitate factor and calibration, shared by every SPM; a fixed multiplier is refused (nothing to route).</param>
    /// <param name="emptyPrompt">The gate view of "" on the same encoder: needed by every calibration but <see cref="GateCalibration.None"/>.</param>
    /// <exception cref="ArgumentException">Counts differ, a fixed multiplier, or the empty prompt is missing.</exception>
    /// <exception cref="SpmException"><see cref="GateCalibration.Learned"/> and an SPM without a probe fitting this encoder.</exception>
    public LibraryGate(IReadOnlyList<string> names, IReadOnlyList<IReadOnlyList<GateText>> concepts, IReadOnlyList<ConceptProbe?>? probes,
        GateSettings settings, GateText? emptyPrompt)
    {
        ArgumentNullException.ThrowIfNull(names);
        ArgumentNullException.ThrowIfNull(concepts);
        ArgumentNullException.ThrowIfNull(settings);
        if (concepts.Count != names.Count) throw new ArgumentException($"{names.Count} names for {concepts.Count} SPMs' concepts.", nameof(concepts));
        if (probes is not null && probes.Count != names.Count) throw new ArgumentException($"{names.Count} names for {probes.Count} probes.", nameof(probes));
        if (settings.FixedMultiplier is not null) throw new ArgumentException("A fixed multiplier bypasses the gate: there is nothing to route.", nameof(settings));
        if (settings.Calibration != GateCalibration.None && emptyPrompt is null)
            throw new ArgumentException($"Gate calibration '{GateCalibrations.NameOf(settings.Calibration)}' needs the empty prompt's gate text.", nameof(emptyPrompt));
        Names = names.ToArray();
        _settings = settings;
        _concepts = concepts.ToArray();
        _probes = probes?.ToArray() ?? new ConceptProbe?[names.Count];
        _readBy = new GateCalibration[names.Count];
        for (int i = 0; i < names.Count; i++)
        {
            var read = settings.Calibration;
            if (read is GateCalibration.Auto or GateCalibration.Learned)
            {
                var probe = _probes[i];
                bool usable = probe is not null && probe.Fits(emptyPrompt!.Embedding);
                if (read == GateCalibration.Learned && !usable)
                    throw new SpmException(probe is null
                        ? $"SPM '{names[i]}' has no learned gate (no 'gate_probe' in its metadata): fit one with 'spm gate fit', or use another gate calibration."
                        : $"SPM '{names[i]}': its learned gate was fitted on another text encoder (the fingerprints differ): refit it with 'spm gate fit' on this model.");
                read = usable ? GateCalibration.Learned : GateCalibration.EmptyPrompt;
            }
            _readBy[i] = read;
        }

        _cosineSpm = Enumerable.Range(0, names.Count).Where(i => _readBy[i] != GateCalibration.Learned).ToArray();
        var cosineCalibration = settings.Calibration == GateCalibration.None ? GateCalibration.None : GateCalibration.EmptyPrompt;
        _cosine = new LibraryRouter(_cosineSpm.Select(i => Names[i]).ToList(), _cosineSpm.Select(i => _concepts[i]).ToList(), cosineCalibration,
            cosineCalibration == GateCalibration.EmptyPrompt ? emptyPrompt : null);

        var learned = Enumerable.Range(0, names.Count).Where(i => _readBy[i] == GateCalibration.Learned).ToList();
        // Linear probes that read each position alone and every position go through one batched pass; the others (a hidden
        // layer, a look-ahead window, mid-word positions left out) are read one by one.
        _linearSpm = learned.Where(i => IsBatched(_probes[i]!)).ToArray();
        _mlpSpm = learned.Where(i => !IsBatched(_probes[i]!)).ToArray();
        _linearProbes = _linearSpm.Select(i => _probes[i]!).ToArray();
        _probeWidth = _linearProbes.Length == 0 ? 0 : _linearProbes[0].Width;
        if (_linearProbes.Any(p => p.Width != _probeWidth))
            throw new ArgumentException("The SPMs' learned gates read hidden states of different widths.", nameof(probes));
        _probeWeights = new float[_linearProbes.Length * _probeWidth];
        for (int p = 0; p < _linearProbes.Length; p++) _linearProbes[p].Weights.CopyTo(_probeWeights.AsSpan(p * _probeWidth, _probeWidth));
    }

    /// <summary>The SPMs' names.</summary>
    public IReadOnlyList<string> Names { get; }

    /// <summary>The number of SPMs.</summary>
    public int Count => Names.Count;

    /// <summary>How each SPM's gate is read (Auto resolved per SPM: learned when its probe fits this encoder, else empty-calibrated).</summary>
    public IReadOnlyList<GateCalibration> ReadBy => _readBy;

    /// <summary>The number of SPMs whose learned gate is read in the batched probe pass.</summary>
    public int BatchedProbes => _linearProbes.Length;

    /// <summary>Every SPM's gate reading for <paramref name="prompt"/> (equal to <see cref="FacilitatedTransport.Read"/> per SPM).</summary>
    /// <exception cref="ArgumentException">The prompt's embedding does not fit the concepts or probes.</exception>
    public GateReading[] Read(GateText prompt)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        var readings = new GateReading[Count];
        var cosine = _cosine.Gammas(prompt);
        for (int k = 0; k < _cosineSpm.Length; k++)
        {
            int i = _cosineSpm[k];
            readings[i] = new GateReading(cosine[k], FacilitatedTransport.Multiplier(cosine[k], _settings), _readBy[i]);
        }
        if (_linearProbes.Length > 0)
        {
            var gammas = LinearProbeGammas(prompt.Embedding);
            for (int p = 0; p < _linearSpm.Length; p++) readings[_linearSpm[p]] = Learned(_linearSpm[p], prompt, gammas[p]);
        }
        foreach (int i in _mlpSpm) readings[i] = Learned(i, prompt, _probes[i]!.Gamma(prompt.Embedding, prompt.MidWord));
        return readings;
    }

    /// <summary>
    /// The SPMs whose gate opens for <paramref name="prompt"/>: gamma at least <paramref name="threshold"/> (default: any
    /// positive gamma), highest first (ties by library order), at most <paramref name="topK"/>.
    /// </summary>
    public IReadOnlyList<RoutedSpm> Route(GateText prompt, float threshold = float.Epsilon, int? topK = null)
    {
        if (topK is < 0) throw new ArgumentOutOfRangeException(nameof(topK), topK, "top-k must be 0 or more.");
        var readings = Read(prompt);
        return LibraryRouter.Select(readings.Select(r => r.Gamma).ToArray(), threshold, topK)
            .Select(i => new RoutedSpm(i, Names[i], readings[i].Gamma, readings[i].Multiplier))
            .ToList();
    }

    private static bool IsBatched(ConceptProbe probe) => probe.Hidden is null && probe.LookAhead == 0 && !probe.SkipsMidWord;

    private GateReading Learned(int spm, GateText prompt, float gamma)
    {
        // The exact word match floors the probe, as FacilitatedTransport.Read does.
        foreach (var c in _concepts[spm])
            if (FacilitatedTransport.TokenUnion(prompt.TokenSet, c.TokenSet) >= 1f) gamma = 1f;
        float multiplier = FacilitatedTransport.Multiplier(gamma, _settings) * _probes[spm]!.Strength;
        return new GateReading(gamma, multiplier, GateCalibration.Learned);
    }

    private float[] LinearProbeGammas(float[] embedding)
    {
        int width = _probeWidth, probes = _linearProbes.Length;
        if (embedding.Length % width != 0 || embedding.Length < 2 * width)
            throw new ArgumentException($"An embedding of {embedding.Length} values is not [L, {width}] with L >= 2 (the learned gates read {width}-wide hidden states).");
        int positions = embedding.Length / width - 1;
        // logits[p, i] = w_p . h_i + b_p for positions 1..L-1: the prompt's hidden states times the stacked weights, each
        // entry the same TensorPrimitives.Dot ConceptProbe.TokenLogits uses, so the pooled gamma is the same float.
        // Probe-major: one probe's weights stay in L1 while the prompt's states (77 x D, a few kB) stream past them, and
        // one logits buffer serves every probe; position-major order thrashes the cache once the stacked weights outgrow it.
        var logits = new float[positions];
        var gammas = new float[probes];
        for (int p = 0; p < probes; p++)
        {
            var w = new ReadOnlySpan<float>(_probeWeights, p * width, width);
            float bias = _linearProbes[p].Bias;
            // A probe that reads only the last positions (ConceptProbe.ReadLast) pools those alone.
            int first = _linearProbes[p].FirstPosition(positions + 1), read = positions + 1 - first;
            for (int i = 0; i < read; i++)
                logits[i] = TensorPrimitives.Dot(new ReadOnlySpan<float>(embedding, (i + first) * width, width), w) + bias;
            gammas[p] = _linearProbes[p].GammaOfLogits(logits.AsSpan(0, read));
        }
        return gammas;
    }
}
