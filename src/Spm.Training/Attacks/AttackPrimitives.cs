using System.Numerics.Tensors;
using System.Text.Json;
using Spm.Core;

namespace Spm.Training.Attacks;

/// <summary>
/// Pieces attacks are made of that hold for any model: a concept's direction in embedding space (what an embedding attack
/// adds to innocent prompts) and the whole words of a CLIP vocabulary (what random-token and gradient attacks draw from).
/// The attack plans of a particular world (its prompts, its concepts) are built on these outside the library.
/// </summary>
public static class AttackPrimitives
{
    /// <summary>
    /// The concept direction in embedding space: the mean over pairs of <c>E(with) − E(without)</c>, each pair the same
    /// prompt with the concept and with a neighbouring value in its place (so the difference holds the concept and little else).
    /// </summary>
    /// <param name="encode">Text → flattened E(text).</param>
    /// <param name="pairs">(prompt with the concept, the same prompt without it).</param>
    public static float[] ConceptDirection(Func<string, float[]> encode, IReadOnlyList<(string With, string Without)> pairs)
    {
        ArgumentNullException.ThrowIfNull(encode);
        ArgumentNullException.ThrowIfNull(pairs);
        if (pairs.Count == 0) throw new ArgumentException("No prompt pairs to take a direction from.", nameof(pairs));
        float[]? sum = null;
        foreach (var (with, without) in pairs)
        {
            var a = encode(with);
            var b = encode(without);
            if (a.Length != b.Length) throw new SpmMismatchException($"\"{with}\" and \"{without}\" have embeddings of different sizes ({a.Length} vs {b.Length}).");
            sum ??= new float[a.Length];
            if (sum.Length != a.Length) throw new SpmMismatchException("The prompt pairs' embeddings differ in size.");
            TensorPrimitives.Add(sum, a, sum);
            TensorPrimitives.Subtract(sum, b, sum);
        }
        TensorPrimitives.Divide(sum!, pairs.Count, sum!);
        return sum!;
    }

    /// <summary>
    /// The whole words of a CLIP vocabulary file (<c>vocab.json</c>): entries ending in <c>&lt;/w&gt;</c> made of 3 to 10
    /// lower-case ASCII letters, in id order — the pool random-token attacks and gate data draw from.
    /// </summary>
    public static IReadOnlyList<string> VocabularyWords(string vocabJsonPath)
    {
        ArgumentNullException.ThrowIfNull(vocabJsonPath);
        using var stream = File.OpenRead(vocabJsonPath);
        using var doc = JsonDocument.Parse(stream);
        var words = new List<(int Id, string Word)>();
        foreach (var p in doc.RootElement.EnumerateObject())
        {
            var name = p.Name;
            if (!name.EndsWith("</w>", StringComparison.Ordinal)) continue;
            var w = name[..^4];
            if (w.Length is < 3 or > 10 || !w.All(char.IsAsciiLetterLower)) continue;
            words.Add((p.Value.GetInt32(), w));
        }
        return words.OrderBy(x => x.Id).Select(x => x.Word).ToArray();
    }
}
