using System.Globalization;
using System.Numerics.Tensors;
using System.Text.Json.Nodes;
using Spm.Core.Randomness;
using Spm.Shapes.Evaluation;
using Spm.Shapes.World;
using Spm.Training.Attacks;

namespace Spm.Shapes.Attacks;

/// <summary>
/// The attacks of <c>spm attack</c>, as <see cref="AttackPlan"/>s: text variants (re-phrasings a reader still takes for
/// the concept), an embedding-space attack in the manner of Ring-A-Bell (a concept direction added to innocent prompts'
/// conditioning, searched over strength) and a random-token search (the baseline a gradient attack must beat).
/// Deterministic from their seeds.
/// </summary>
public static class AttackPlans
{
    /// <summary>Names of the attacks, as the CLI takes them.</summary>
    public static IReadOnlyList<string> Names { get; } = ["text", "embedding", "random-tokens", "gradient"];

    /// <summary>
    /// Text variants of the tiny-shapes world: <paramref name="count"/> prompts asking for <paramref name="concept"/> in
    /// every re-phrasing (plural, typo, capitals, word order, long prompt, repetition), one candidate each.
    /// </summary>
    public static AttackPlan TextVariants(EvalConcept concept, int count, ulong seed)
    {
        var prompts = ShapePhrasings.Targets(concept, count, seed);
        var targets = prompts.Select(p => new AttackTarget(p.Text, p.Seed, [new AttackCandidate(p.Text, null, p.Kind.ToString().ToLowerInvariant())])).ToList();
        return new AttackPlan("text", $"re-phrasings of '{concept.Name}' ({string.Join(", ", ShapePhrasings.Rephrasings.Select(k => k.ToString().ToLowerInvariant()))})",
            targets, new JsonObject { ["candidatesPerTarget"] = 1, ["kinds"] = ShapePhrasings.Rephrasings.Count });
    }

    /// <summary>
    /// Ring-A-Bell-style embedding attack on the tiny-shapes world: the direction of <paramref name="concept"/> from
    /// <paramref name="pairs"/> paired prompts, added at each of <paramref name="strengths"/> to the conditioning of
    /// <paramref name="count"/> innocent prompts (near neighbours that ask for another value). A goal succeeds when some
    /// strength makes the attacked model draw the concept. The gate reads the attacked conditioning, as it would in a
    /// deployment where the attacker controls the embedding.
    /// </summary>
    public static AttackPlan Embedding(EvalConcept concept, int count, ulong seed, Func<string, float[]> encode, IReadOnlyList<float> strengths, int pairs = 32)
    {
        ArgumentNullException.ThrowIfNull(concept);
        ArgumentNullException.ThrowIfNull(encode);
        ArgumentNullException.ThrowIfNull(strengths);
        if (strengths.Count == 0) throw new ArgumentException("No strengths to search.", nameof(strengths));
        var rng = new SeededRandom(seed ^ 0xE3BE_DD00UL);
        var withPrompts = EvalPromptSets.Target(concept, pairs, seed ^ 0xD1EC_7100UL);
        var list = new List<(string, string)>(pairs);
        var others = Enumerable.Range(0, concept.ValueCount).Where(v => v != concept.Value).ToArray();
        foreach (var p in withPrompts)
            list.Add((p.Prompt.Text, concept.WithValue(p.Prompt, others[rng.NextInt(0, others.Length)]).Text));
        var direction = AttackPrimitives.ConceptDirection(encode, list);
        var innocent = ShapePhrasings.NearNeighbours([concept], count, seed, [PhrasingKind.Canonical]);
        var targets = new List<AttackTarget>(count);
        foreach (var p in innocent)
        {
            var e = encode(p.Text);
            var candidates = strengths.Select(s =>
            {
                var x = new float[e.Length];
                TensorPrimitives.MultiplyAdd(direction, s, e, x);
                return new AttackCandidate(p.Text, x, string.Create(CultureInfo.InvariantCulture, $"strength {s:0.##}"));
            }).ToList();
            targets.Add(new AttackTarget($"{p.Text} + {concept.Name} direction", p.Seed, candidates));
        }
        return new AttackPlan("embedding", $"'{concept.Name}' direction (mean of {pairs} paired differences) added to innocent prompts' conditioning",
            targets, new JsonObject
            {
                ["candidatesPerTarget"] = strengths.Count,
                ["strengths"] = new JsonArray(strengths.Select(s => (JsonNode?)JsonValue.Create(s)).ToArray()),
                ["directionNorm"] = TensorPrimitives.Norm(direction),
                ["pairs"] = pairs,
            });
    }

    /// <summary>
    /// Random-token search: each of <paramref name="count"/> prompts asking for <paramref name="concept"/> gets
    /// <paramref name="budget"/> candidates, each with <paramref name="tokens"/> random vocabulary words put before it
    /// (where <see cref="GradientAttack"/> puts its free tokens). The baseline a gradient attack with the same budget
    /// (candidates × tokens) must beat; both draw the goals from <see cref="GoalPrompts"/>.
    /// </summary>
    public static AttackPlan RandomTokens(EvalConcept concept, int count, ulong seed, IReadOnlyList<string> vocabulary, int tokens, int budget)
    {
        ArgumentNullException.ThrowIfNull(concept);
        ArgumentNullException.ThrowIfNull(vocabulary);
        if (vocabulary.Count == 0) throw new ArgumentException("No vocabulary words.", nameof(vocabulary));
        ArgumentOutOfRangeException.ThrowIfLessThan(tokens, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(budget, 1);
        var rng = new SeededRandom(seed ^ 0x7A2D_0000UL);
        var prompts = GoalPrompts(concept, count, seed);
        var targets = new List<AttackTarget>(count);
        foreach (var p in prompts)
        {
            var candidates = new List<AttackCandidate>(budget);
            for (int b = 0; b < budget; b++)
            {
                var words = Enumerable.Range(0, tokens).Select(_ => vocabulary[rng.NextInt(0, vocabulary.Count)]).ToArray();
                string text = $"{string.Join(" ", words)} {p.Text}";
                candidates.Add(new AttackCandidate(text, null, $"{tokens} random tokens"));
            }
            targets.Add(new AttackTarget(p.Text, p.Seed, candidates));
        }
        return new AttackPlan("random-tokens", $"{tokens} random vocabulary words before prompts asking for '{concept.Name}', {budget} tries each",
            targets, new JsonObject { ["candidatesPerTarget"] = budget, ["tokens"] = tokens });
    }

    /// <summary>The goals of the token attacks (random-token search and the gradient attack): prompts asking for the concept.</summary>
    public static IReadOnlyList<EvalPrompt> GoalPrompts(EvalConcept concept, int count, ulong seed) =>
        EvalPromptSets.Target(concept, count, seed ^ 0x7A2D_1111UL);
}
