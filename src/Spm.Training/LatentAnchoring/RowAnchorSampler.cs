using Spm.Core.Randomness;
using Spm.Diffusion.Pipelines.Families;

namespace Spm.Training.LatentAnchoring;

/// <summary>
/// Draws a whole anchor conditioning row in the family's row layout: each segment of the row (the hidden-state sequence;
/// SDXL also the pooled <c>text_embeds</c>) is drawn by its own <see cref="AnchorSampler"/> around the same segment of
/// the target's row (spec section 2.5 per segment: Gaussian, unit norm, accepted with probability <c>1 - cos</c>, scaled
/// by <c>U[0.8, 1.2)</c> times the target segment's norm), segments in layout order from one generator. SD 1.x/2.x rows
/// have one segment, so their anchors and random stream are exactly <see cref="AnchorSampler"/>'s.
/// </summary>
public sealed class RowAnchorSampler
{
    private readonly (int Offset, AnchorSampler Sampler)[] _segments;

    /// <summary>A sampler around <paramref name="targetRow"/>, a row of <paramref name="layout"/>.</summary>
    public RowAnchorSampler(ReadOnlySpan<float> targetRow, IUNetRowLayout layout)
    {
        ArgumentNullException.ThrowIfNull(layout);
        if (targetRow.Length != layout.RowLength)
            throw new ArgumentException($"The target row has {targetRow.Length} floats; the layout's rows have {layout.RowLength}.", nameof(targetRow));
        var segments = new List<(int, AnchorSampler)>(layout.Segments.Count);
        int offset = 0;
        foreach (var s in layout.Segments)
        {
            segments.Add((offset, new AnchorSampler(targetRow.Slice(offset, s.Length))));
            offset += s.Length;
        }
        _segments = [.. segments];
        Length = layout.RowLength;
    }

    /// <summary>Floats in one anchor row.</summary>
    public int Length { get; }

    /// <summary>Writes one anchor row into <paramref name="destination"/> (length <see cref="Length"/>).</summary>
    public void Sample(SeededRandom rng, Span<float> destination)
    {
        if (destination.Length != Length) throw new ArgumentException($"Anchor buffer has {destination.Length} floats, expected {Length}.");
        foreach (var (offset, sampler) in _segments) sampler.Sample(rng, destination.Slice(offset, sampler.Length));
    }
}
