using Spm.Core;
using Spm.Shapes.Evaluation;
using Spm.Shapes.World;

namespace Spm.Training.Tests.Shapes;

/// <summary>The tiny-shapes world's erasure pairs (<see cref="ShapePairs"/>, <c>spm shapes pairs</c>).</summary>
[TestFixture]
public class ShapePairsTests
{
    [Test]
    public void Striped_PairsEveryContextInBothWordings_WithTheSameCaptionMadePlain()
    {
        var pairs = ShapePairs.For(EvalConcept.Parse("striped"), EvalConcept.Parse("plain"));
        // 1 bare pair + (6 colours + open) x (4 shapes + open) x (4 backgrounds + open) contexts x 2 wordings.
        Assert.That(pairs, Has.Count.EqualTo(1 + 7 * 5 * 5 * 2));
        Assert.That(pairs[0], Is.EqualTo(("striped", "plain")));
        Assert.That(pairs, Does.Contain(("a striped red circle on a white background", "a plain red circle on a white background")));
        Assert.That(pairs, Does.Contain(("an orange star with stripes on a light blue background", "a plain orange star on a light blue background")));
        Assert.That(pairs.Select(p => p.Target), Is.Unique);
        foreach (var (target, surrogate) in pairs.Skip(1))
        {
            var t = ShapePrompt.Parse(target)!;
            var s = ShapePrompt.Parse(surrogate)!;
            Assert.That(t.Pattern, Is.EqualTo(FillPattern.Striped), target);
            Assert.That(s, Is.EqualTo(t with { Pattern = FillPattern.Plain }), $"{target} => {surrogate}");
        }
    }

    [Test]
    public void Red_HasOneWording_AndTheSurrogateMustBeAnotherValueOfTheSameAttribute()
    {
        var pairs = ShapePairs.For(EvalConcept.Parse("red"), EvalConcept.Parse("blue"));
        // (4 shapes + open) x (3 patterns + open) x (4 backgrounds + open).
        Assert.That(pairs, Has.Count.EqualTo(1 + 5 * 4 * 5));
        Assert.That(pairs, Does.Contain(("a dotted red square on a black background", "a dotted blue square on a black background")));
        Assert.That(() => ShapePairs.For(EvalConcept.Parse("red"), EvalConcept.Parse("circle")),
            Throws.TypeOf<SpmException>().With.Message.Contains("must be another color than 'red'"));
        Assert.That(() => ShapePairs.For(EvalConcept.Parse("red"), EvalConcept.Parse("red")), Throws.TypeOf<SpmException>());
    }

    [Test]
    public void Swap_PutsTheSurrogateInTheConceptsPlace_InEveryWording()
    {
        var striped = EvalConcept.Parse("striped");
        var plain = EvalConcept.Parse("plain");
        Assert.That(ShapePairs.Swap("a striped red circle on a white background", striped, plain), Is.EqualTo("a plain red circle on a white background"));
        Assert.That(ShapePairs.Swap("a green star with stripes", striped, plain), Is.EqualTo("a plain green star"));
        Assert.That(ShapePairs.Swap("striped", striped, plain), Is.EqualTo("a plain shape"));
        Assert.That(ShapePairs.Swap("a red circle", EvalConcept.Parse("circle"), EvalConcept.Parse("square")), Is.EqualTo("a red square"));
        // Captions that do not name the concept have no swapped form.
        Assert.That(ShapePairs.Swap("a dotted red circle", striped, plain), Is.Null);
        Assert.That(ShapePairs.Swap("a red circle", striped, plain), Is.Null);
        Assert.That(() => ShapePairs.Swap("a striped circle", striped, EvalConcept.Parse("red")),
            Throws.TypeOf<SpmException>().With.Message.Contains("must be another pattern than 'striped'"));
    }
}
