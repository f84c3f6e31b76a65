namespace Spm.Core.Gating;

/// <summary>
/// What the gate needs to know about one text (a generation prompt or an erased concept): its text encoder's last
/// hidden state padded to the full context (77 × D, flattened row-major) and its token ids without the special
/// tokens (BOS, EOS, PAD), as a set.
/// </summary>
public sealed class GateText
{
    /// <summary>Builds the gate view of a text.</summary>
    /// <param name="embedding">The flattened, padded last hidden state E(text) (not copied).</param>
    /// <param name="tokenIds">The token ids of the text, in any order, specials included or not.</param>
    /// <param name="specialTokenIds">Ids to drop (BOS, EOS, PAD: 49406 and 49407 for SD 1.x; SD 2.x pads with 0 too).</param>
    /// <param name="midWord">
    /// Per position of the embedding, whether its token continues into the next one (inside a word; see
    /// <see cref="ConceptProbe.SkipsMidWord"/>), or null when unknown. Not copied.
    /// </param>
    public GateText(float[] embedding, IEnumerable<int> tokenIds, IEnumerable<int> specialTokenIds, bool[]? midWord = null)
    {
        MidWord = midWord;
        ArgumentNullException.ThrowIfNull(embedding);
        ArgumentNullException.ThrowIfNull(tokenIds);
        ArgumentNullException.ThrowIfNull(specialTokenIds);
        Embedding = embedding;
        var set = new HashSet<int>(tokenIds);
        set.ExceptWith(specialTokenIds);
        TokenSet = set;
    }

    /// <summary>The flattened, padded embedding.</summary>
    public float[] Embedding { get; }

    /// <summary>Per position, whether its token continues into the next (inside a word); null when not known.</summary>
    public bool[]? MidWord { get; }

    /// <summary>The distinct non-special token ids.</summary>
    public IReadOnlySet<int> TokenSet { get; }
}
