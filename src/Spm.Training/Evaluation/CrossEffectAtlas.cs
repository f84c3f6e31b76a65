using System.Globalization;
using Spm.Core;
using Spm.Core.Atlas;

namespace Spm.Training.Evaluation;

/// <summary>
/// A concept atlas whose edges are measured membrane cross-effects: the concepts are the loaded SPMs' concepts, and the
/// similarity of two is the share of each membrane's effect on its own concept that reaches the other
/// (<see cref="CrossEffectMatrix.ReachSimilarity"/>), the transport matrix a library implies. Clustered as any
/// concept atlas (<see cref="ConceptAtlas.FromSimilarity"/>), so <c>spm atlas show</c> and the trainer read it alike.
/// </summary>
public static class CrossEffectAtlas
{
    /// <summary>What the edge weights of a cross-effect atlas are, as saved in its JSON.</summary>
    public static string Description(CrossEffectMatrix matrix)
    {
        ArgumentNullException.ThrowIfNull(matrix);
        return $"membrane cross-effects: s(a, b) = (C[a, b] / C[a, a] + C[b, a] / C[b, b]) / 2, C[s, p] = mean 1 - SSIM of SPM s alone against the base image on concept p's prompt " +
            $"({matrix.ImagesPerPrompt} seeds, {(matrix.Gated ? "deployed gate" : "gate open")})";
    }

    /// <summary>
    /// Measures the cross-effects of every SPM of <paramref name="generator"/> on every SPM's concept and clusters them
    /// into an atlas. <paramref name="progress"/> receives the share of images done (0..1); cancelling stops between
    /// UNet batches.
    /// </summary>
    /// <param name="generator">The model with the SPMs loaded (at least 3).</param>
    /// <param name="concepts">The prompt of each SPM's concept, in the generator's order; null: each SPM's first concept.</param>
    /// <param name="measure">Images per prompt, seed, gate.</param>
    /// <param name="options">How the similarities are sparsified and clustered.</param>
    /// <param name="metadata">Saved in the atlas, next to the measurement's own keys.</param>
    /// <param name="progress">Share of images done (0..1).</param>
    /// <param name="cancellationToken">Stops between UNet batches.</param>
    /// <exception cref="SpmException">Fewer than 3 SPMs, two with the same concept, or a membrane that does not change its own concept.</exception>
    public static ConceptAtlas Build(EvalImageGenerator generator, IReadOnlyList<string>? concepts = null, CrossEffectOptions? measure = null,
        ConceptAtlasOptions? options = null, IReadOnlyDictionary<string, string>? metadata = null, IProgress<double>? progress = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(generator);
        var sets = generator.Sets;
        concepts ??= sets.Select(s => s.Concepts.Count > 0 ? s.Concepts[0] : s.Name).ToArray();
        if (concepts.Count != sets.Count) throw new ArgumentException($"{sets.Count} SPMs loaded but {concepts.Count} concepts given.", nameof(concepts));
        if (sets.Count < 3) throw new SpmException($"A cross-effect atlas needs at least 3 SPMs, got {sets.Count}.");
        var dup = concepts.Select((c, i) => (c, i)).GroupBy(x => x.c.Trim(), StringComparer.OrdinalIgnoreCase).FirstOrDefault(g => g.Count() > 1);
        if (dup is not null)
            throw new SpmException($"The SPMs {string.Join(" and ", dup.Select(x => $"'{sets[x.i].Name}'"))} erase the same concept '{dup.Key}': a cross-effect atlas has one SPM per concept.");
        var matrix = MembraneCrossEffects.Measure(generator, concepts, measure, progress, cancellationToken);
        return FromMatrix(matrix, options, metadata, cancellationToken);
    }

    /// <summary>
    /// The atlas of a measured square matrix (SPM i trained on prompt i). Its metadata records the SPMs and the raw
    /// changes, one row per SPM, so the atlas can be checked against the measurement.
    /// </summary>
    /// <exception cref="SpmException">The matrix is not square or a membrane does not change its own concept (see <see cref="CrossEffectMatrix.ReachSimilarity"/>).</exception>
    public static ConceptAtlas FromMatrix(CrossEffectMatrix matrix, ConceptAtlasOptions? options = null, IReadOnlyDictionary<string, string>? metadata = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(matrix);
        double[,] similarity;
        try { similarity = matrix.ReachSimilarity(); }
        catch (InvalidOperationException ex) { throw new SpmException(ex.Message, ex); }
        var meta = new Dictionary<string, string>(metadata ?? new Dictionary<string, string>(), StringComparer.Ordinal)
        {
            ["edges"] = "cross-effects",
            ["spms"] = string.Join(", ", matrix.Spms),
            ["images_per_prompt"] = matrix.ImagesPerPrompt.ToString(CultureInfo.InvariantCulture),
            ["gate"] = matrix.Gated ? "deployed" : "open",
        };
        var inv = CultureInfo.InvariantCulture;
        for (int s = 0; s < matrix.Spms.Count; s++)
            meta[$"change[{matrix.Spms[s]}]"] = string.Join(" ", Enumerable.Range(0, matrix.Prompts.Count).Select(p => matrix.Change[s, p].ToString("0.######", inv)));
        return ConceptAtlas.FromSimilarity(matrix.Prompts, similarity, options, Description(matrix), meta, cancellationToken);
    }
}
