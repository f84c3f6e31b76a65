using System.Numerics.Tensors;
using System.Text.Json.Nodes;
using MathNet.Numerics.LinearAlgebra;
using MathNet.Numerics.Optimization;

namespace Spm.Core.Gating;

/// <summary>One labelled prompt for fitting a <see cref="ConceptProbe"/>.</summary>
/// <param name="Prompt">The prompt text (kept for reports).</param>
/// <param name="Embedding">Its flattened, padded last hidden state E(prompt), [L, D] row-major.</param>
/// <param name="Label">How often the model drew the concept for it, in [0, 1] (a share of images, or 0/1).</param>
/// <param name="Weight">How much the sample counts (e.g. the number of images behind the label); &gt; 0.</param>
/// <param name="MidWord">Per position, whether its token continues into the next (<see cref="ConceptProbe.SkipsMidWord"/>); null: none.</param>
public sealed record ProbeSample(string Prompt, float[] Embedding, float Label, float Weight = 1f, bool[]? MidWord = null);

/// <summary>How a <see cref="ConceptProbe"/> is fitted.</summary>
/// <param name="L2">Ridge penalty on the weights (not the bias), relative to the mean loss.</param>
/// <param name="Temperature">The soft maximum's temperature τ.</param>
/// <param name="MaxIterations">L-BFGS iteration cap.</param>
/// <param name="HiddenUnits">Units of a tanh hidden layer every token goes through (0: a linear probe).</param>
/// <param name="Seed">Seed of the hidden layer's initial weights.</param>
/// <param name="ReadLast">Positions the probe reads: 0 every position after the start token, k the last k (<see cref="ConceptProbe.ReadLast"/>).</param>
/// <param name="LookAhead">Following positions each position is read with (<see cref="ConceptProbe.LookAhead"/>); 0: alone.</param>
/// <param name="SkipMidWord">
/// Leave the positions inside a word out (<see cref="ConceptProbe.SkipsMidWord"/>), the default: on the built-in model it
/// keeps the circle and red gates shut on typos of other words that split into a letter and a word ("ttriangle") at the
/// same held-out AUC. It acts only where the samples carry their masks (<see cref="ProbeSample.MidWord"/>) and, at use,
/// where the prompt's does (<see cref="GateText.MidWord"/>).
/// </param>
public sealed record ProbeFitOptions(double L2 = 1e-3, float Temperature = 1f, int MaxIterations = 500, int HiddenUnits = 0, ulong Seed = 0, int ReadLast = 0,
    int LookAhead = 0, bool SkipMidWord = true)
{
    /// <summary>The defaults.</summary>
    public static ProbeFitOptions Default { get; } = new();
}

/// <summary>Held-out figures of a probe.</summary>
/// <param name="Count">Samples.</param>
/// <param name="LogLoss">Mean weighted cross-entropy against the soft labels.</param>
/// <param name="Auc">Area under the ROC curve, positives = label ≥ 0.5 (NaN when one class is missing).</param>
/// <param name="Accuracy">Share of samples whose probability is on the same side of 0.5 as the label.</param>
/// <param name="MeanOnPositives">Mean probability on samples with label ≥ 0.5.</param>
/// <param name="MeanOnNegatives">Mean probability on samples with label &lt; 0.5.</param>
public sealed record ProbeMetrics(int Count, double LogLoss, double Auc, double Accuracy, double MeanOnPositives, double MeanOnNegatives)
{
    /// <summary>Measures <paramref name="probe"/> on <paramref name="samples"/>.</summary>
    public static ProbeMetrics Measure(ConceptProbe probe, IReadOnlyList<ProbeSample> samples)
    {
        ArgumentNullException.ThrowIfNull(probe);
        ArgumentNullException.ThrowIfNull(samples);
        var p = samples.Select(s => (double)probe.Probability(s.Embedding, s.MidWord)).ToArray();
        double loss = 0, wsum = 0, correct = 0, pos = 0, neg = 0;
        int np = 0, nn = 0;
        for (int i = 0; i < samples.Count; i++)
        {
            var s = samples[i];
            double q = Math.Clamp(p[i], 1e-7, 1 - 1e-7);
            loss += s.Weight * -(s.Label * Math.Log(q) + (1 - s.Label) * Math.Log(1 - q));
            wsum += s.Weight;
            bool positive = s.Label >= 0.5f;
            if (positive == (p[i] >= 0.5)) correct++;
            if (positive) { pos += p[i]; np++; } else { neg += p[i]; nn++; }
        }
        return new ProbeMetrics(samples.Count, wsum > 0 ? loss / wsum : double.NaN, RocAuc(p, samples.Select(s => s.Label >= 0.5f).ToArray()),
            samples.Count > 0 ? correct / samples.Count : double.NaN, np > 0 ? pos / np : double.NaN, nn > 0 ? neg / nn : double.NaN);
    }

    /// <summary>ROC AUC by the rank-sum formula (ties count half).</summary>
    public static double RocAuc(IReadOnlyList<double> scores, IReadOnlyList<bool> positive)
    {
        var order = Enumerable.Range(0, scores.Count).OrderBy(i => scores[i]).ToArray();
        var ranks = new double[scores.Count];
        for (int i = 0; i < order.Length;)
        {
            int j = i;
            while (j + 1 < order.Length && scores[order[j + 1]] == scores[order[i]]) j++;
            for (int k = i; k <= j; k++) ranks[order[k]] = (i + j) / 2.0 + 1;
            i = j + 1;
        }
        long np = positive.Count(x => x), nn = positive.Count - np;
        if (np == 0 || nn == 0) return double.NaN;
        double sum = 0;
        for (int i = 0; i < ranks.Length; i++) if (positive[i]) sum += ranks[i];
        return (sum - np * (np + 1) / 2.0) / (np * (double)nn);
    }
}

/// <summary>
/// Fits a <see cref="ConceptProbe"/> by minimising the weighted cross-entropy between its probability and each prompt's
/// label (soft labels allowed), plus a ridge penalty, with MathNet's L-BFGS. Convex in neither the pooling nor the
/// weights jointly, but small (D + 1 parameters) and well behaved in practice; starts from zero weights.
/// </summary>
public static class ConceptProbeFitter
{
    /// <summary>Fits a probe of width <paramref name="width"/> on <paramref name="samples"/>.</summary>
    /// <param name="concept">The concept text the probe detects.</param>
    /// <param name="samples">Labelled prompts (every embedding [L, width] with the same L).</param>
    /// <param name="width">The encoder width D.</param>
    /// <param name="options">Fit options.</param>
    /// <param name="encoderSignature">The encoder's fingerprint to store (<see cref="ConceptProbe.EncoderSignature"/>), or null.</param>
    /// <param name="cancellationToken">Checked between L-BFGS evaluations.</param>
    /// <exception cref="ArgumentException">No samples, mismatched embedding sizes, labels outside [0, 1] or non-positive weights.</exception>
    public static ConceptProbe Fit(string concept, IReadOnlyList<ProbeSample> samples, int width, ProbeFitOptions? options = null,
        float[]? encoderSignature = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(concept);
        ArgumentNullException.ThrowIfNull(samples);
        options ??= ProbeFitOptions.Default;
        if (samples.Count == 0) throw new ArgumentException("No samples to fit a probe on.", nameof(samples));
        if (width <= 0) throw new ArgumentOutOfRangeException(nameof(width));
        int length = samples[0].Embedding.Length;
        if (length % width != 0 || length < 2 * width)
            throw new ArgumentException($"An embedding of {length} values is not [L, {width}] with L ≥ 2.", nameof(samples));
        foreach (var s in samples)
        {
            if (s.Embedding.Length != length) throw new ArgumentException($"The embedding of \"{s.Prompt}\" has {s.Embedding.Length} values; the first had {length}.", nameof(samples));
            if (!(s.Label >= 0f && s.Label <= 1f)) throw new ArgumentException($"The label of \"{s.Prompt}\" is {s.Label}; labels are shares in [0, 1].", nameof(samples));
            if (!(s.Weight > 0f) || !float.IsFinite(s.Weight)) throw new ArgumentException($"The weight of \"{s.Prompt}\" is {s.Weight}; weights must be positive.", nameof(samples));
            if (s.MidWord is not null && s.MidWord.Length != length / width)
                throw new ArgumentException($"The mid-word mask of \"{s.Prompt}\" has {s.MidWord.Length} entries; its embedding has {length / width} positions.", nameof(samples));
        }
        if (options.HiddenUnits < 0) throw new ArgumentOutOfRangeException(nameof(options), "HiddenUnits must not be negative.");
        if (options.LookAhead is < 0 or > ConceptProbe.MaxLookAhead)
            throw new ArgumentOutOfRangeException(nameof(options), $"LookAhead must be 0..{ConceptProbe.MaxLookAhead}.");
        if (options.LookAhead > 0)
        {
            // Fit on the windows themselves: row i of a windowed sample is what the probe reads at position i, so the
            // fitting code below stays the one of a probe reading rows alone, (k + 1) · D wide.
            samples = Windowed(samples, width, options.LookAhead);
            width *= options.LookAhead + 1;
        }
        if (options.HiddenUnits > 0) return FitMlp(concept, samples, width, options, encoderSignature, cancellationToken);
        if (options.ReadLast < 0) throw new ArgumentOutOfRangeException(nameof(options), "ReadLast must not be negative.");
        int rows = length / width, first = ConceptProbe.FirstPositionOf(rows, options.ReadLast), positions = rows - first;
        float tau = options.Temperature;
        double totalWeight = samples.Sum(s => (double)s.Weight);
        var logits = new float[positions];
        var soft = new float[positions];

        (double, Vector<double>) Evaluate(Vector<double> theta)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var w = theta.ToArray();
            var wf = new float[width];
            for (int j = 0; j < width; j++) wf[j] = (float)w[j];
            float b = (float)w[width];
            double loss = 0;
            var grad = new double[width + 1];
            var gw = new float[width];
            foreach (var s in samples)
            {
                var e = s.Embedding.AsSpan();
                for (int i = 0; i < positions; i++)
                    logits[i] = Skipped(s, i + first, options) ? float.NegativeInfinity : TensorPrimitives.Dot(e.Slice((i + first) * width, width), wf) + b;
                var (pooled, sampleLoss, g) = PooledLoss(logits, tau, s, totalWeight);
                loss += sampleLoss;
                if (float.IsNegativeInfinity(pooled)) continue;
                for (int i = 0; i < positions; i++) soft[i] = MathF.Exp((logits[i] - pooled) / tau);
                Array.Clear(gw);
                for (int i = 0; i < positions; i++)
                {
                    float c = g * soft[i];
                    if (c == 0f) continue;
                    TensorPrimitives.MultiplyAdd(e.Slice((i + first) * width, width), c, gw, gw);
                    grad[width] += c;
                }
                for (int j = 0; j < width; j++) grad[j] += gw[j];
            }
            for (int j = 0; j < width; j++)
            {
                loss += 0.5 * options.L2 * w[j] * w[j];
                grad[j] += options.L2 * w[j];
            }
            return (loss, Vector<double>.Build.Dense(grad));
        }

        var objective = ObjectiveFunction.Gradient(Evaluate);
        var (thetaVector, iterations, finalLoss) = Minimize(Evaluate, new double[width + 1], options.MaxIterations, cancellationToken);
        var theta = thetaVector;
        var weights = new float[width];
        for (int j = 0; j < width; j++) weights[j] = (float)theta[j];
        var fit = new JsonObject
        {
            ["samples"] = samples.Count,
            ["positives"] = samples.Count(s => s.Label >= 0.5f),
            ["iterations"] = iterations,
            ["train_loss"] = Math.Round(finalLoss, 6),
            ["l2"] = options.L2,
        };
        return new ConceptProbe(concept, weights, (float)theta[width], tau, encoderSignature, fit, readLast: options.ReadLast, lookAhead: options.LookAhead, skipMidWord: options.SkipMidWord);
    }

    private static ConceptProbe FitMlp(string concept, IReadOnlyList<ProbeSample> samples, int width, ProbeFitOptions options,
        float[]? encoderSignature, CancellationToken cancellationToken)
    {
        int units = options.HiddenUnits, d = width;
        int rows = samples[0].Embedding.Length / width, first = ConceptProbe.FirstPositionOf(rows, options.ReadLast), positions = rows - first;
        float tau = options.Temperature;
        double totalWeight = samples.Sum(s => (double)s.Weight);
        // Parameter layout: W [units, d], c [units], v [units], b.
        int nW = units * d, nC = units, nV = units, count = nW + nC + nV + 1;
        var rng = new Randomness.SeededRandom(options.Seed ^ 0x9E37_79B9UL);
        var start = new double[count];
        double scale = 1.0 / Math.Sqrt(d);
        for (int i = 0; i < nW; i++) start[i] = (rng.NextDouble() * 2 - 1) * scale * Math.Sqrt(3);
        for (int i = 0; i < nV; i++) start[nW + nC + i] = (rng.NextDouble() * 2 - 1) * 0.1;

        var act = new float[positions * units];
        var logits = new float[positions];
        (double, Vector<double>) Evaluate(Vector<double> theta)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var t = theta.ToArray();
            var W = new float[nW];
            var c = new float[nC];
            var v = new float[nV];
            for (int i = 0; i < nW; i++) W[i] = (float)t[i];
            for (int i = 0; i < nC; i++) c[i] = (float)t[nW + i];
            for (int i = 0; i < nV; i++) v[i] = (float)t[nW + nC + i];
            float b = (float)t[count - 1];
            var gW = new float[nW];
            var gC = new float[nC];
            var gV = new float[nV];
            double gB = 0, loss = 0;
            var dz = new float[units];
            foreach (var s in samples)
            {
                var e = s.Embedding.AsSpan();
                for (int i = 0; i < positions; i++)
                {
                    if (Skipped(s, i + first, options))
                    {
                        logits[i] = float.NegativeInfinity;
                        continue;
                    }
                    var h = e.Slice((i + first) * d, d);
                    var a = act.AsSpan(i * units, units);
                    for (int u = 0; u < units; u++) a[u] = TensorPrimitives.Dot(h, W.AsSpan(u * d, d)) + c[u];
                    TensorPrimitives.Tanh(a, a);
                    logits[i] = TensorPrimitives.Dot(a, v) + b;
                }
                var (pooled, sampleLoss, g) = PooledLoss(logits, tau, s, totalWeight);
                loss += sampleLoss;
                if (float.IsNegativeInfinity(pooled)) continue;
                for (int i = 0; i < positions; i++)
                {
                    float gs = g * MathF.Exp((logits[i] - pooled) / tau);
                    if (gs == 0f) continue;
                    var a = act.AsSpan(i * units, units);
                    var h = e.Slice((i + first) * d, d);
                    TensorPrimitives.MultiplyAdd(a, gs, gV, gV);
                    gB += gs;
                    for (int u = 0; u < units; u++) dz[u] = gs * v[u] * (1 - a[u] * a[u]);
                    for (int u = 0; u < units; u++)
                    {
                        if (dz[u] == 0f) continue;
                        TensorPrimitives.MultiplyAdd(h, dz[u], gW.AsSpan(u * d, d), gW.AsSpan(u * d, d));
                        gC[u] += dz[u];
                    }
                }
            }
            var grad = new double[count];
            for (int i = 0; i < nW; i++) { loss += 0.5 * options.L2 * t[i] * t[i]; grad[i] = gW[i] + options.L2 * t[i]; }
            for (int i = 0; i < nC; i++) grad[nW + i] = gC[i];
            for (int i = 0; i < nV; i++) { loss += 0.5 * options.L2 * t[nW + nC + i] * t[nW + nC + i]; grad[nW + nC + i] = gV[i] + options.L2 * t[nW + nC + i]; }
            grad[count - 1] = gB;
            return (loss, Vector<double>.Build.Dense(grad));
        }

        var (thetaVector, iterations, finalLoss) = Minimize(Evaluate, start, options.MaxIterations, cancellationToken);
        var th = thetaVector.ToArray();
        var hidden = new ProbeHiddenLayer(th.AsSpan(0, nW).ToArray().Select(x => (float)x).ToArray(), th.AsSpan(nW, nC).ToArray().Select(x => (float)x).ToArray());
        var outW = th.AsSpan(nW + nC, nV).ToArray().Select(x => (float)x).ToArray();
        var fit = new JsonObject
        {
            ["samples"] = samples.Count,
            ["positives"] = samples.Count(s => s.Label >= 0.5f),
            ["iterations"] = iterations,
            ["train_loss"] = Math.Round(finalLoss, 6),
            ["l2"] = options.L2,
            ["hidden_units"] = units,
        };
        return new ConceptProbe(concept, outW, (float)th[count - 1], tau, encoderSignature, fit, hidden: hidden, readLast: options.ReadLast, lookAhead: options.LookAhead, skipMidWord: options.SkipMidWord);
    }

    private static bool Skipped(ProbeSample s, int position, ProbeFitOptions options) => options.SkipMidWord && s.MidWord is { } m && m[position];

    /// <summary>Each sample's [L, D] embedding as [L, (k + 1) · D]: row i holds rows i..i+k (<see cref="ConceptProbe.WindowOf"/>).</summary>
    private static ProbeSample[] Windowed(IReadOnlyList<ProbeSample> samples, int width, int lookAhead)
    {
        int rows = samples[0].Embedding.Length / width, wide = (lookAhead + 1) * width;
        return samples.Select(s =>
        {
            var e = new float[rows * wide];
            for (int i = 0; i < rows; i++) ConceptProbe.WindowOf(s.Embedding, width, rows, i, lookAhead, e.AsSpan(i * wide, wide));
            return s with { Embedding = e };
        }).ToArray();
    }

    /// <summary>
    /// One sample's share of the loss: the soft maximum of its token logits, its weighted cross-entropy against the label,
    /// and <c>d loss / d pooled = weight · (p − y)</c> (each token's logit then gets that times <c>softmax_i(s / τ)</c>).
    /// </summary>
    private static (float Pooled, double Loss, float Gradient) PooledLoss(ReadOnlySpan<float> logits, float tau, ProbeSample s, double totalWeight)
    {
        float pooled = ConceptProbe.SoftMax(logits, tau);
        double p = ConceptProbe.Sigmoid(pooled);
        double pc = Math.Clamp(p, 1e-12, 1 - 1e-12);
        double sw = s.Weight / totalWeight;
        return (pooled, sw * -(s.Label * Math.Log(pc) + (1 - s.Label) * Math.Log(1 - pc)), (float)(sw * (p - s.Label)));
    }

    /// <summary>
    /// Minimises with MathNet's L-BFGS, at looser tolerances when its line search gives up (float-accumulated gradients are
    /// slightly inconsistent with the loss near the optimum); as a last resort, full-batch Adam from the start point.
    /// Returns the point, the iterations and the loss there.
    /// </summary>
    private static (Vector<double> Point, int Iterations, double Loss) Minimize(Func<Vector<double>, (double, Vector<double>)> evaluate, double[] start,
        int maxIterations, CancellationToken cancellationToken)
    {
        var objective = ObjectiveFunction.Gradient(evaluate);
        foreach (var (g, p, f) in new[] { (1e-6, 1e-9, 1e-9), (1e-4, 1e-6, 1e-6), (1e-3, 1e-5, 1e-5) })
        {
            try
            {
                var r = new LimitedMemoryBfgsMinimizer(g, p, f, 10, maxIterations).FindMinimum(objective, Vector<double>.Build.Dense((double[])start.Clone()));
                return (r.MinimizingPoint, r.Iterations, r.FunctionInfoAtMinimum.Value);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                // MaximumIterationsException, or "not a descent direction" from the line search: try looser tolerances.
            }
        }
        var x = (double[])start.Clone();
        var m = new double[x.Length];
        var v = new double[x.Length];
        double loss = double.NaN;
        const double lr = 0.05, b1 = 0.9, b2 = 0.999;
        int steps = Math.Max(200, 4 * maxIterations);
        for (int t = 1; t <= steps; t++)
        {
            var (l, grad) = evaluate(Vector<double>.Build.Dense(x));
            loss = l;
            for (int i = 0; i < x.Length; i++)
            {
                m[i] = b1 * m[i] + (1 - b1) * grad[i];
                v[i] = b2 * v[i] + (1 - b2) * grad[i] * grad[i];
                x[i] -= lr * (m[i] / (1 - Math.Pow(b1, t))) / (Math.Sqrt(v[i] / (1 - Math.Pow(b2, t))) + 1e-8);
            }
        }
        return (Vector<double>.Build.Dense(x), steps, loss);
    }
}
