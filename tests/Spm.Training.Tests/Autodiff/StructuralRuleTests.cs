using Spm.Core.Randomness;
using static Spm.Training.Tests.Autodiff.TinyModel;

namespace Spm.Training.Tests.Autodiff;

/// <summary>Finite-difference checks of reshaping, slicing, gathering and reduction rules (float64 graphs).</summary>
[TestFixture]
public class StructuralRuleTests
{
    private static readonly SeededRandom Rng = new(7);

    private static Dictionary<string, GradCheck.Tensor> Feeds(params (string Name, long[] Shape)[] inputs)
        => inputs.ToDictionary(i => i.Name, i => GradCheck.Random(Rng, F64, i.Shape));

    [Test]
    public void TransposeWithPermAndDefault()
    {
        var m = new TinyModel().Input("x", F64, 2, 3, 4)
            .Node("Transpose", ["x"], "t", Is("perm", 1, 2, 0)).Node("Transpose", ["t"], "y").Output("y").Build();
        GradCheck.Run(m, Feeds(("x", [2, 3, 4])), "y", ["x"]);
    }

    [Test]
    public void ReshapeFlattenSqueezeUnsqueeze()
    {
        var m = new TinyModel().Input("x", F64, 2, 3, 4).Ints("shape", 4, -1).Ints("ax0", 0).Ints("ax1", 1)
            .Node("Reshape", ["x", "shape"], "r")
            .Node("Unsqueeze", ["r", "ax0"], "u")
            .Node("Squeeze", ["u", "ax0"], "s")
            .Node("Unsqueeze", ["s", "ax1"], "u2")
            .Node("Flatten", ["u2"], "y", I("axis", 2)).Output("y").Build();
        GradCheck.Run(m, Feeds(("x", [2, 3, 4])), "y", ["x"]);
    }

    [Test]
    public void ConcatOnNegativeAxis()
    {
        var m = new TinyModel().Input("a", F64, 2, 3).Input("b", F64, 2, 1).Input("c", F64, 2, 2)
            .Node("Concat", ["a", "b", "c"], "y", I("axis", -1)).Output("y").Build();
        GradCheck.Run(m, Feeds(("a", [2, 3]), ("b", [2, 1]), ("c", [2, 2])), "y", ["a", "c"]);
    }

    [Test]
    public void SplitWithUnusedOutput()
    {
        var m = new TinyModel().Input("x", F64, 2, 6).Ints("split", 1, 2, 3)
            .Node("Split", ["x", "split"], ["p0", "p1", "p2"], I("axis", 1))
            .Node("Mul", ["p0", "p0"], "q").Node("Concat", ["q", "p2"], "y", I("axis", 1)).Output("y").Build();
        GradCheck.Run(m, Feeds(("x", [2, 6])), "y", ["x"]);
    }

    [Test]
    public void SliceConstantAndComputedBounds()
    {
        // Second slice: a GEGLU-style chunk with starts/ends computed from the shape at run time, negative start.
        var m = new TinyModel().Input("x", F64, 3, 8)
            .Ints("s", 1, -6).Ints("e", 3, 100).Ints("ax", 0, 1)
            .Node("Slice", ["x", "s", "e", "ax"], "a")
            .Node("Shape", ["x"], "shp").Ints("i1", 1).Node("Gather", ["shp", "i1"], "w").Ints("two", 2)
            .Node("Div", ["w", "two"], "half").Ints("big", long.MaxValue)
            .Node("Slice", ["x", "half", "big", "i1"], "b")
            .Ints("zero1", 0).Ints("rows", 2)
            .Node("Slice", ["b", "zero1", "rows"], "b2")
            .Node("Concat", ["a", "b2"], "y", I("axis", 1)).Output("y").Build();
        GradCheck.Run(m, Feeds(("x", [3, 8])), "y", ["x"]);
    }

    [Test]
    public void GatherFloatDataWithRepeatsAndNegatives()
    {
        var m = new TinyModel().Input("x", F64, 3, 5, 2).Input("idx", I64, 2, 2)
            .Node("Gather", ["x", "idx"], "y", I("axis", 1)).Output("y").Build();
        var feeds = Feeds(("x", [3, 5, 2]));
        feeds["idx"] = GradCheck.Indices([0, 4, -1, 0], 2, 2);
        GradCheck.Run(m, feeds, "y", ["x"]);
    }

    [Test]
    public void GatherScalarIndexAxis0()
    {
        var m = new TinyModel().Input("x", F64, 4, 3).Ints("idx0", 2).Ints("sq", 0)
            .Node("Squeeze", ["idx0", "sq"], "idx").Node("Gather", ["x", "idx"], "y", I("axis", 0)).Output("y").Build();
        GradCheck.Run(m, Feeds(("x", [4, 3])), "y", ["x"]);
    }

    [TestCase("ReduceMean", 1)]
    [TestCase("ReduceMean", 0)]
    public void ReduceMeanAxesAttribute(string op, int keep)
    {
        var m = new TinyModel(opset: 17).Input("x", F64, 2, 3, 4)
            .Node(op, ["x"], "y", Is("axes", -1, 1), I("keepdims", keep)).Output("y").Build();
        GradCheck.Run(m, Feeds(("x", [2, 3, 4])), "y", ["x"]);
    }

    [TestCase(1)]
    [TestCase(0)]
    public void ReduceSumAxesInput(int keep)
    {
        var m = new TinyModel(opset: 17).Input("x", F64, 2, 3, 4).Ints("axes", 0, 2)
            .Node("ReduceSum", ["x", "axes"], "y", I("keepdims", keep)).Output("y").Build();
        GradCheck.Run(m, Feeds(("x", [2, 3, 4])), "y", ["x"]);
    }

    [Test]
    public void ReduceMeanOpset18AllAxes()
    {
        var m = new TinyModel(opset: 18).Input("x", F64, 2, 3)
            .Node("ReduceMean", ["x"], "m", I("keepdims", 1)).Node("Mul", ["x", "m"], "y").Output("y").Build();
        GradCheck.Run(m, Feeds(("x", [2, 3])), "y", ["x"]);
    }

    [Test]
    public void EinsumAttentionScores()
    {
        var m = new TinyModel().Input("q", F64, 2, 3, 4).Input("k", F64, 2, 5, 4)
            .Node("Einsum", ["q", "k"], "y", S("equation", "bid,bjd->bij")).Output("y").Build();
        GradCheck.Run(m, Feeds(("q", [2, 3, 4]), ("k", [2, 5, 4])), "y", ["q", "k"]);
    }
}
