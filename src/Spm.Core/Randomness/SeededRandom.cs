namespace Spm.Core.Randomness;

/// <summary>
/// The project's documented, portable random generator: xoshiro256** seeded through SplitMix64, with
/// Gaussian samples by the Box–Muller transform (both outputs used in turn). The same seed gives the same
/// numbers on every platform and .NET version, and the whole state can be saved and restored
/// (training checkpoints resume exactly).
/// </summary>
public sealed class SeededRandom
{
    private ulong _s0, _s1, _s2, _s3;
    private bool _hasSpare;
    private double _spare;

    /// <summary>Creates a generator from a 64-bit seed.</summary>
    public SeededRandom(ulong seed)
    {
        ulong x = seed;
        _s0 = SplitMix(ref x);
        _s1 = SplitMix(ref x);
        _s2 = SplitMix(ref x);
        _s3 = SplitMix(ref x);
    }

    private SeededRandom() { }

    private static ulong SplitMix(ref ulong x)
    {
        ulong z = x += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>The next 64 random bits.</summary>
    public ulong NextUInt64()
    {
        ulong result = RotL(_s1 * 5, 7) * 9;
        ulong t = _s1 << 17;
        _s2 ^= _s0;
        _s3 ^= _s1;
        _s1 ^= _s2;
        _s0 ^= _s3;
        _s2 ^= t;
        _s3 = RotL(_s3, 45);
        return result;
    }

    private static ulong RotL(ulong x, int k) => (x << k) | (x >> (64 - k));

    /// <summary>A uniform double in [0, 1) with 53 random bits.</summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    /// <summary>A uniform integer in [<paramref name="minInclusive"/>, <paramref name="maxExclusive"/>).</summary>
    public int NextInt(int minInclusive, int maxExclusive)
    {
        if (maxExclusive <= minInclusive) throw new ArgumentOutOfRangeException(nameof(maxExclusive));
        ulong range = (ulong)((long)maxExclusive - minInclusive);
        // Rejection sampling removes modulo bias.
        ulong limit = ulong.MaxValue - ulong.MaxValue % range;
        ulong v;
        do { v = NextUInt64(); } while (v >= limit);
        return (int)((long)minInclusive + (long)(v % range));
    }

    /// <summary>A standard normal sample (mean 0, variance 1).</summary>
    public double NextGaussian()
    {
        if (_hasSpare)
        {
            _hasSpare = false;
            return _spare;
        }
        double u1;
        do { u1 = NextDouble(); } while (u1 <= double.Epsilon);
        double u2 = NextDouble();
        double r = Math.Sqrt(-2.0 * Math.Log(u1));
        double theta = 2.0 * Math.PI * u2;
        _spare = r * Math.Sin(theta);
        _hasSpare = true;
        return r * Math.Cos(theta);
    }

    /// <summary>Fills <paramref name="destination"/> with standard normal samples.</summary>
    public void FillGaussian(Span<float> destination)
    {
        for (int i = 0; i < destination.Length; i++) destination[i] = (float)NextGaussian();
    }

    /// <summary>Fills <paramref name="destination"/> with uniform samples in [<paramref name="low"/>, <paramref name="high"/>).</summary>
    public void FillUniform(Span<float> destination, float low, float high)
    {
        for (int i = 0; i < destination.Length; i++) destination[i] = (float)(low + (high - low) * NextDouble());
    }

    /// <summary>The complete state (for checkpoints): 4 state words, the spare-Gaussian flag and value.</summary>
    public byte[] SaveState()
    {
        var bytes = new byte[8 * 4 + 1 + 8];
        BitConverter.TryWriteBytes(bytes.AsSpan(0), _s0);
        BitConverter.TryWriteBytes(bytes.AsSpan(8), _s1);
        BitConverter.TryWriteBytes(bytes.AsSpan(16), _s2);
        BitConverter.TryWriteBytes(bytes.AsSpan(24), _s3);
        bytes[32] = _hasSpare ? (byte)1 : (byte)0;
        BitConverter.TryWriteBytes(bytes.AsSpan(33), _spare);
        return bytes;
    }

    /// <summary>Restores a generator from <see cref="SaveState"/>.</summary>
    /// <exception cref="SpmFormatException">The state is not 41 bytes or is all zero.</exception>
    public static SeededRandom RestoreState(ReadOnlySpan<byte> state)
    {
        if (state.Length != 41) throw new SpmFormatException(null, "rng_state", $"RNG state must be 41 bytes, got {state.Length}.");
        var r = new SeededRandom
        {
            _s0 = BitConverter.ToUInt64(state[..8]),
            _s1 = BitConverter.ToUInt64(state[8..16]),
            _s2 = BitConverter.ToUInt64(state[16..24]),
            _s3 = BitConverter.ToUInt64(state[24..32]),
            _hasSpare = state[32] != 0,
            _spare = BitConverter.ToDouble(state[33..41]),
        };
        if ((r._s0 | r._s1 | r._s2 | r._s3) == 0) throw new SpmFormatException(null, "rng_state", "RNG state is all zero.");
        return r;
    }
}
