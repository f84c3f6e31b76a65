using Spm.Core;
using Spm.Core.Tensors;

namespace Spm.Diffusion.Pipelines.Families;

/// <summary>
/// One per-row part of a flat conditioning row: the UNet input it feeds and its shape per batch row.
/// </summary>
/// <param name="InputName">The UNet input (<c>encoder_hidden_states</c>, <c>text_embeds</c>).</param>
/// <param name="RowShape">Its shape for one batch row ([L, D] for the sequence, [P] for a pooled embedding).</param>
public sealed record UNetRowSegment(string InputName, int[] RowShape)
{
    /// <summary>Floats the segment takes in a row.</summary>
    public int Length => RowShape.Aggregate(1, (a, b) => a * b);
}

/// <summary>
/// How a model family's text conditioning is laid out as flat per-row float arrays, and how a batch of such rows becomes
/// the UNet's inputs. Code that handles conditioning rows as plain vectors (the trainer: anchors, frozen and trainable
/// rows, gates per row) keeps one <c>float[]</c> per row and asks the layout to stack them, so it never asks which family
/// it runs. SD 1.x/2.x: the row is the hidden-state sequence. SDXL: the sequence, then the pooled <c>text_embeds</c>;
/// <c>time_ids</c> do not depend on the prompt but on the image size, so they come from the
/// <see cref="SizeConditioning"/> of the batch.
/// </summary>
public interface IUNetRowLayout
{
    /// <summary>The row's parts in order; the first is always <c>encoder_hidden_states</c>.</summary>
    IReadOnlyList<UNetRowSegment> Segments { get; }

    /// <summary>Floats per row (the segments' lengths summed).</summary>
    int RowLength { get; }

    /// <summary>The flat row of an encoded prompt (its segments one after the other).</summary>
    /// <exception cref="SpmMismatchException">The prompt's tensors are not shaped as the layout's segments.</exception>
    float[] ToRow(EncodedPrompt prompt);

    /// <summary>
    /// Stacks rows into the UNet's text inputs for one batch: each segment's row parts stacked on a new batch axis, and
    /// the size-dependent inputs (SDXL's <c>time_ids</c>) from <paramref name="sizes"/> for every row.
    /// </summary>
    UNetTextInputs Stack(IReadOnlyList<float[]> rows, SizeConditioning sizes);
}

/// <summary>
/// The row layout of a family: a list of segments and, optionally, one input filled from the size conditioning
/// (<see cref="SizeInputName"/>, six values per row).
/// </summary>
public sealed class UNetRowLayout : IUNetRowLayout
{
    /// <summary>A layout of the given segments (the first must be <c>encoder_hidden_states</c>).</summary>
    /// <param name="segments">Per-row parts in order.</param>
    /// <param name="sizeInputName">The input filled per row from the size conditioning, or null.</param>
    public UNetRowLayout(IReadOnlyList<UNetRowSegment> segments, string? sizeInputName = null)
    {
        ArgumentNullException.ThrowIfNull(segments);
        if (segments.Count == 0 || segments[0].InputName != "encoder_hidden_states" || segments[0].RowShape.Length != 2)
            throw new ArgumentException("The first segment must be encoder_hidden_states [L, D].", nameof(segments));
        Segments = segments;
        SizeInputName = sizeInputName;
        RowLength = segments.Sum(s => s.Length);
    }

    /// <summary>SD 1.x/2.x: the hidden-state sequence [L, D] only.</summary>
    public static UNetRowLayout Sequence(int tokens, int width) => new([new UNetRowSegment("encoder_hidden_states", [tokens, width])]);

    /// <summary>SDXL: the sequence [L, D], the pooled <c>text_embeds</c> [P]; <c>time_ids</c> from the sizes.</summary>
    public static UNetRowLayout Sdxl(int tokens, int width, int pooled) =>
        new([new UNetRowSegment("encoder_hidden_states", [tokens, width]), new UNetRowSegment("text_embeds", [pooled])], "time_ids");

    /// <inheritdoc />
    public IReadOnlyList<UNetRowSegment> Segments { get; }

    /// <inheritdoc />
    public int RowLength { get; }

    /// <summary>The input filled from the size conditioning (SDXL: <c>time_ids</c>), or null.</summary>
    public string? SizeInputName { get; }

    /// <inheritdoc />
    public float[] ToRow(EncodedPrompt prompt)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        var row = new float[RowLength];
        int offset = 0;
        foreach (var s in Segments)
        {
            var t = s.InputName == "encoder_hidden_states" ? prompt.HiddenStates : s.InputName == "text_embeds" ? prompt.Pooled : null;
            if (t is null) throw new SpmMismatchException($"The prompt '{prompt.Text}' has no tensor for the UNet input '{s.InputName}'.", s.InputName);
            // The encoders give [1, ...row shape].
            if (t.Length != s.Length || t.Shape[0] != 1 || !t.Shape.AsSpan(1).SequenceEqual(s.RowShape))
                throw new SpmMismatchException($"The encoding of '{prompt.Text}' for '{s.InputName}' is {t.ShapeString}; the row layout expects [1,{string.Join(",", s.RowShape)}].", s.InputName);
            t.Span.CopyTo(row.AsSpan(offset, s.Length));
            offset += s.Length;
        }
        return row;
    }

    /// <inheritdoc />
    public UNetTextInputs Stack(IReadOnlyList<float[]> rows, SizeConditioning sizes)
    {
        ArgumentNullException.ThrowIfNull(rows);
        ArgumentNullException.ThrowIfNull(sizes);
        if (rows.Count == 0) throw new ArgumentException("At least one row is needed.", nameof(rows));
        int b = rows.Count;
        foreach (var r in rows)
            if (r.Length != RowLength) throw new ArgumentException($"A row has {r.Length} floats; the layout's rows have {RowLength}.", nameof(rows));
        var tensors = new List<FloatTensor>(Segments.Count);
        int offset = 0;
        foreach (var s in Segments)
        {
            var t = new FloatTensor([b, .. s.RowShape]);
            for (int r = 0; r < b; r++) rows[r].AsSpan(offset, s.Length).CopyTo(t.Span.Slice(r * s.Length, s.Length));
            tensors.Add(t);
            offset += s.Length;
        }
        var added = new Dictionary<string, FloatTensor>(StringComparer.Ordinal);
        for (int i = 1; i < Segments.Count; i++) added[Segments[i].InputName] = tensors[i];
        if (SizeInputName is not null)
        {
            var ids = sizes.ToTimeIds();
            var t = new FloatTensor(b, ids.Length);
            for (int r = 0; r < b; r++) ids.CopyTo(t.Span.Slice(r * ids.Length, ids.Length));
            added[SizeInputName] = t;
        }
        return new UNetTextInputs(tensors[0], added);
    }
}
