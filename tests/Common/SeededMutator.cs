using Spm.Core.Randomness;

namespace Spm.Tests.Common;

/// <summary>
/// The part every fuzzer's mutator shares: a seeded generator and "apply 1 to 3 random mutations, remembering what
/// they were" (so a failing case can be reported and replayed from its seed). Subclasses supply one mutation.
/// </summary>
internal abstract class SeededMutator(SeededRandom rng)
{
    /// <summary>The generator every mutation draws from.</summary>
    protected SeededRandom Rng { get; } = rng;

    /// <summary>What the last <see cref="Mutate"/> did, for failure reports.</summary>
    public string LastDescription { get; private set; } = "";

    /// <summary>Applies 1 to 3 random mutations to <paramref name="seed"/>.</summary>
    public byte[] Mutate(byte[] seed)
    {
        var bytes = seed;
        int n = 1 + Rng.NextInt(0, 3);
        var what = new List<string>(n);
        for (int i = 0; i < n; i++)
        {
            var (b, d) = MutateOnce(bytes);
            bytes = b;
            what.Add(d);
        }
        LastDescription = string.Join("; ", what);
        return bytes;
    }

    /// <summary>One random mutation and its description.</summary>
    protected abstract (byte[] Bytes, string Description) MutateOnce(byte[] input);
}
