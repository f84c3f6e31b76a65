using System.Numerics.Tensors;
using Spm.Core.Gating;

namespace Spm.Core.Library;

/// <summary>
/// Batched routing of a library's cosine gate: the concept embeddings of every SPM stacked into one row-major matrix
/// (one row per concept; an SPM with several concepts owns several rows), so a prompt's gamma for every SPM is one
/// matrix-vector product plus, per SPM, the maximum over its rows. Reads the gate as
/// <see cref="FacilitatedTransport.SpmGamma(GateText, IReadOnlyList{GateText}, GateText?)"/> does for
/// <see cref="GateCalibration.None"/> (raw gamma) and <see cref="GateCalibration.EmptyPrompt"/> (cosine measured above
/// the empty prompt's), token-union term included, with the same float arithmetic per cosine.
/// Learned gates are per-SPM probes and are not batched here.
/// </summary>
public sealed class LibraryRouter
{
    private readonly float[] _matrix;     // rows × width, row-major: the concept embeddings as given
    private readonly float[] _rowNorms;   // |c_i|
    private readonly float[] _floors;     // clipcos(empty, c_i) for EmptyPrompt; unused for None
    private readonly int[] _rowOwner;     // row -> SPM index
    private readonly IReadOnlySet<int>[] _rowTokens;
    private readonly int _width;

    /// <summary>Stacks the concepts of every SPM.</summary>
    /// <param name="names">The SPMs' names (e.g. library concepts), one per SPM.</param>
    /// <param name="concepts">Each SPM's concept gate texts (same order as <paramref name="names"/>); an SPM without concepts always reads 0.</param>
    /// <param name="calibration"><see cref="GateCalibration.None"/> or <see cref="GateCalibration.EmptyPrompt"/>.</param>
    /// <param name="emptyPrompt">The empty prompt's gate text; required for <see cref="GateCalibration.EmptyPrompt"/>.</param>
    /// <exception cref="ArgumentException">Counts differ, embeddings differ in length, the calibration is not batchable, or the empty prompt is missing.</exception>
    public LibraryRouter(IReadOnlyList<string> names, IReadOnlyList<IReadOnlyList<GateText>> concepts, GateCalibration calibration, GateText? emptyPrompt = null)
    {
        ArgumentNullException.ThrowIfNull(names);
        ArgumentNullException.ThrowIfNull(concepts);
        if (names.Count != concepts.Count)
            throw new ArgumentException($"{names.Count} names for {concepts.Count} SPMs' concepts.", nameof(concepts));
        if (calibration is not (GateCalibration.None or GateCalibration.EmptyPrompt))
            throw new ArgumentException($"Batched routing reads the cosine gate only (calibration 'none' or 'empty'), not '{GateCalibrations.NameOf(calibration)}'.", nameof(calibration));
        if (calibration == GateCalibration.EmptyPrompt && emptyPrompt is null)
            throw new ArgumentException("Calibration 'empty' needs the empty prompt's gate text.", nameof(emptyPrompt));
        Names = names.ToArray();
        Calibration = calibration;
        var rows = concepts.SelectMany((cs, i) => (cs ?? throw new ArgumentException($"SPM '{names[i]}' has a null concept list.", nameof(concepts))).Select(c => (c, i))).ToList();
        _width = rows.Count == 0 ? (emptyPrompt?.Embedding.Length ?? 0) : rows[0].c.Embedding.Length;
        _matrix = new float[checked(rows.Count * _width)];
        _rowNorms = new float[rows.Count];
        _floors = new float[rows.Count];
        _rowOwner = new int[rows.Count];
        _rowTokens = new IReadOnlySet<int>[rows.Count];
        float emptyNorm = emptyPrompt is null ? 0f : TensorPrimitives.Norm(emptyPrompt.Embedding);
        for (int r = 0; r < rows.Count; r++)
        {
            var (c, owner) = rows[r];
            if (c.Embedding.Length != _width)
                throw new ArgumentException($"SPM '{names[owner]}': a concept embedding has {c.Embedding.Length} values, others {_width}.", nameof(concepts));
            c.Embedding.CopyTo(_matrix.AsSpan(r * _width, _width));
            _rowNorms[r] = TensorPrimitives.Norm(c.Embedding);
            _rowOwner[r] = owner;
            _rowTokens[r] = c.TokenSet;
        }
        if (calibration == GateCalibration.EmptyPrompt)
        {
            if (emptyPrompt!.Embedding.Length != _width)
                throw new ArgumentException($"The empty prompt's embedding has {emptyPrompt.Embedding.Length} values, the concepts {_width}.", nameof(emptyPrompt));
            var dots = new float[rows.Count];
            MatVec(emptyPrompt.Embedding, dots);
            for (int r = 0; r < rows.Count; r++) _floors[r] = Cosine(dots[r], emptyNorm, _rowNorms[r], _width);
        }
    }

    /// <summary>The SPMs' names, in matrix order.</summary>
    public IReadOnlyList<string> Names { get; }

    /// <summary>The gate calibration the router reads.</summary>
    public GateCalibration Calibration { get; }

    /// <summary>The number of SPMs.</summary>
    public int Count => Names.Count;

    /// <summary>The number of stacked concept rows (the matrix height).</summary>
    public int Rows => _rowOwner.Length;

    /// <summary>Every SPM's gamma for <paramref name="prompt"/>: one matrix-vector product over the stacked concepts, then a max per SPM.</summary>
    /// <exception cref="ArgumentException">The prompt's embedding length differs from the concepts'.</exception>
    public float[] Gammas(GateText prompt)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        if (Rows > 0 && prompt.Embedding.Length != _width)
            throw new ArgumentException($"The prompt's embedding has {prompt.Embedding.Length} values, the library's concepts {_width}.", nameof(prompt));
        var dots = new float[Rows];
        MatVec(prompt.Embedding, dots);
        float promptNorm = TensorPrimitives.Norm(prompt.Embedding);
        var gammas = new float[Count];
        var seen = new bool[Count];
        for (int r = 0; r < Rows; r++)
        {
            float cos = Cosine(dots[r], promptNorm, _rowNorms[r], _width);
            if (Calibration == GateCalibration.EmptyPrompt) cos = FacilitatedTransport.CalibratedCosine(cos, _floors[r]);
            float g = MathF.Max(cos, FacilitatedTransport.TokenUnion(prompt.TokenSet, _rowTokens[r]));
            int o = _rowOwner[r];
            gammas[o] = seen[o] ? MathF.Max(gammas[o], g) : g;
            seen[o] = true;
        }
        return gammas;
    }

    /// <summary>
    /// The SPMs whose gate opens for <paramref name="prompt"/>: gamma at least <paramref name="threshold"/>, the
    /// <paramref name="topK"/> highest if given, highest gamma first (ties by library order).
    /// </summary>
    /// <param name="prompt">The prompt's gate view.</param>
    /// <param name="threshold">The lowest gamma that opens a gate (default: any positive gamma).</param>
    /// <param name="topK">Keep at most this many (null: all that open).</param>
    /// <param name="settings">When given, each SPM's multiplier is read through its curve and factor (else NaN).</param>
    public IReadOnlyList<RoutedSpm> Route(GateText prompt, float threshold = float.Epsilon, int? topK = null, GateSettings? settings = null)
    {
        if (topK is < 0) throw new ArgumentOutOfRangeException(nameof(topK), topK, "top-k must be 0 or more.");
        var gammas = Gammas(prompt);
        return Select(gammas, threshold, topK)
            .Select(i => new RoutedSpm(i, Names[i], gammas[i], settings is null ? float.NaN : FacilitatedTransport.Multiplier(gammas[i], settings)))
            .ToList();
    }

    /// <summary>The indices of <paramref name="gammas"/> at least <paramref name="threshold"/>, highest first (ties by index), at most <paramref name="topK"/>.</summary>
    public static IReadOnlyList<int> Select(IReadOnlyList<float> gammas, float threshold, int? topK)
    {
        ArgumentNullException.ThrowIfNull(gammas);
        var open = Enumerable.Range(0, gammas.Count).Where(i => gammas[i] >= threshold)
            .OrderByDescending(i => gammas[i]).ThenBy(i => i);
        return (topK is { } k ? open.Take(k) : open).ToList();
    }

    private void MatVec(ReadOnlySpan<float> x, Span<float> y)
    {
        // y = M x, M row-major (rows × width). Each row's dot is the same TensorPrimitives.Dot ClipCosine uses, so the
        // batched cosines equal the per-SPM ones bit for bit.
        for (int r = 0; r < y.Length; r++) y[r] = TensorPrimitives.Dot(new ReadOnlySpan<float>(_matrix, r * _width, _width), x);
    }

    private static float Cosine(float dot, float np, float nc, int width)
    {
        if (width == 0 || np == 0f || nc == 0f) return 0f;
        return dot / (np * nc);
    }
}

/// <summary>An SPM whose gate opened for a prompt.</summary>
/// <param name="Index">Its position in the library (router order).</param>
/// <param name="Name">Its name.</param>
/// <param name="Gamma">Its gamma.</param>
/// <param name="Multiplier">Its membranes' multiplier under the settings given (NaN when none were).</param>
public readonly record struct RoutedSpm(int Index, string Name, float Gamma, float Multiplier);
