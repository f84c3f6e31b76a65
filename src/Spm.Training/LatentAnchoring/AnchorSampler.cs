using System.Numerics.Tensors;
using Spm.Core.Randomness;

namespace Spm.Training.LatentAnchoring;

/// <summary>
/// Draws anchor embeddings for latent anchoring (spec section 2.5): Gaussian tensors shaped like E(c_tar),
/// normalised to unit Frobenius norm, accepted with probability <c>1 - cos(vec(E(c_tar)), vec(n))</c>, then
/// scaled by <c>U[0.8, 1.2) * ||E(c_tar)||</c>.
/// </summary>
public sealed class AnchorSampler
{
    private readonly float[] _target;
    private readonly float _targetNorm;

    /// <summary>Creates a sampler around the target concept's embedding (flattened 77 x D).</summary>
    public AnchorSampler(ReadOnlySpan<float> targetEmbedding)
    {
        if (targetEmbedding.IsEmpty) throw new ArgumentException("The target embedding is empty.");
        _target = targetEmbedding.ToArray();
        _targetNorm = TensorPrimitives.Norm(targetEmbedding);
        if (!(_targetNorm > 0) || float.IsInfinity(_targetNorm)) throw new ArgumentException("The target embedding has no finite, non-zero norm.");
    }

    /// <summary>Number of floats in one anchor.</summary>
    public int Length => _target.Length;

    /// <summary>How many proposals were rejected so far (for diagnostics).</summary>
    public long Rejections { get; private set; }

    /// <summary>
    /// Family anchors (prompts from a concept atlas): which <paramref name="count"/> of <paramref name="poolSize"/>
    /// prompts anchor this iteration, distinct and uniformly drawn (a partial Fisher-Yates shuffle), in draw order; all
    /// of them in order, without touching <paramref name="rng"/>, when the pool holds no more than <paramref name="count"/>.
    /// </summary>
    public static int[] DrawPromptIndices(SeededRandom rng, int poolSize, int count)
    {
        ArgumentNullException.ThrowIfNull(rng);
        ArgumentOutOfRangeException.ThrowIfNegative(poolSize);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        var pool = Enumerable.Range(0, poolSize).ToArray();
        if (poolSize <= count) return pool;
        for (int i = 0; i < count; i++)
        {
            int j = rng.NextInt(i, poolSize);
            (pool[i], pool[j]) = (pool[j], pool[i]);
        }
        return pool[..count];
    }

    /// <summary>Writes one anchor into <paramref name="destination"/> (length <see cref="Length"/>).</summary>
    public void Sample(SeededRandom rng, Span<float> destination)
    {
        if (destination.Length != _target.Length) throw new ArgumentException($"Anchor buffer has {destination.Length} floats, expected {_target.Length}.");
        for (int attempt = 0; ; attempt++)
        {
            rng.FillGaussian(destination);
            float norm = TensorPrimitives.Norm(destination);
            if (!(norm > 0)) continue;
            TensorPrimitives.Divide(destination, norm, destination);
            double cos = TensorPrimitives.Dot(destination, (ReadOnlySpan<float>)_target) / _targetNorm;
            double accept = 1.0 - cos;
            // After many rejections accept anyway: with cos near 1 (impossible in high dimension) we must still terminate.
            if (rng.NextDouble() < accept || attempt >= 1000) break;
            Rejections++;
        }
        float scale = (float)((0.8 + 0.4 * rng.NextDouble()) * _targetNorm);
        TensorPrimitives.Multiply(destination, scale, destination);
    }
}
