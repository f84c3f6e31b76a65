using Spm.Core.Randomness;
using static Spm.Training.Tests.Autodiff.TinyModel;

namespace Spm.Training.Tests.Autodiff;

/// <summary>Finite-difference checks of MatMul, Gemm, Conv, normalizations and Resize.</summary>
[TestFixture]
public class LinearAlgebraRuleTests
{
    private static readonly SeededRandom Rng = new(3);

    private static Dictionary<string, GradCheck.Tensor> Feeds(int type, params (string Name, long[] Shape)[] inputs)
        => inputs.ToDictionary(i => i.Name, i => GradCheck.Random(Rng, type, i.Shape));

    [TestCase(new long[] { 2, 3, 4 }, new long[] { 4, 5 })]
    [TestCase(new long[] { 3, 4 }, new long[] { 4, 5 })]
    [TestCase(new long[] { 2, 3, 4 }, new long[] { 2, 4, 5 })]
    [TestCase(new long[] { 2, 1, 3, 4 }, new long[] { 3, 4, 2 })]
    public void MatMulBatchedBroadcasting(long[] a, long[] b)
    {
        var m = new TinyModel().Input("a", F64, a).Input("b", F64, b).Node("MatMul", ["a", "b"], "y").Output("y").Build();
        GradCheck.Run(m, Feeds(F64, ("a", a), ("b", b)), "y", ["a", "b"]);
    }

    [TestCase(0, 0)]
    [TestCase(1, 0)]
    [TestCase(0, 1)]
    [TestCase(1, 1)]
    public void GemmTransposes(int transA, int transB)
    {
        long[] a = transA == 1 ? [4, 3] : [3, 4];
        long[] b = transB == 1 ? [5, 4] : [4, 5];
        var m = new TinyModel().Input("a", F64, a).Input("b", F64, b).Input("c", F64, 5)
            .Node("Gemm", ["a", "b", "c"], "y", I("transA", transA), I("transB", transB), F("alpha", 0.7f), F("beta", 1.5f))
            .Output("y").Build();
        GradCheck.Run(m, Feeds(F64, ("a", a), ("b", b), ("c", [5])), "y", ["a", "b", "c"], rtol: 1e-5);
    }

    // Conv is float-only in ORT. Conv is linear in x and in w, so a large step is exact up to rounding.
    [TestCase(new long[] { 2, 3, 7, 6 }, new long[] { 4, 3, 3, 3 }, new long[] { 1, 1 }, new long[] { 1, 1, 1, 1 }, new long[] { 1, 1 }, 1)]
    [TestCase(new long[] { 2, 3, 8, 7 }, new long[] { 4, 3, 3, 3 }, new long[] { 2, 2 }, new long[] { 1, 1, 1, 1 }, new long[] { 1, 1 }, 1)]
    [TestCase(new long[] { 1, 4, 9, 9 }, new long[] { 6, 2, 3, 2 }, new long[] { 2, 3 }, new long[] { 0, 1, 2, 0 }, new long[] { 2, 1 }, 2)]
    [TestCase(new long[] { 2, 4, 5, 5 }, new long[] { 4, 1, 3, 3 }, new long[] { 1, 1 }, new long[] { 1, 1, 1, 1 }, new long[] { 1, 1 }, 4)]
    [TestCase(new long[] { 2, 3, 6, 6 }, new long[] { 5, 3, 1, 1 }, new long[] { 1, 1 }, new long[] { 0, 0, 0, 0 }, new long[] { 1, 1 }, 1)]
    public void ConvStridesPadsDilationsGroups(long[] x, long[] w, long[] strides, long[] pads, long[] dilations, int group)
    {
        var m = new TinyModel().Input("x", F32, x).Input("w", F32, w).Input("b", F32, w[0])
            .Node("Conv", ["x", "w", "b"], "y", Is("strides", strides), Is("pads", pads), Is("dilations", dilations), I("group", group))
            .Output("y").Build();
        GradCheck.Run(m, Feeds(F32, ("x", x), ("w", w), ("b", [w[0]])), "y", ["x", "w", "b"], h: 0.5, rtol: 2e-4, maxCoordinates: 40);
    }

    [Test]
    public void Conv1d()
    {
        var m = new TinyModel().Input("x", F32, 2, 3, 9).Input("w", F32, 2, 3, 3)
            .Node("Conv", ["x", "w"], "y", Is("strides", 2), Is("pads", 1, 0)).Output("y").Build();
        GradCheck.Run(m, Feeds(F32, ("x", [2, 3, 9]), ("w", [2, 3, 3])), "y", ["x", "w"], h: 0.5, rtol: 2e-4);
    }

    [Test]
    public void InstanceNormalizationAsExportedGroupNorm()
    {
        // Exporters write GroupNorm(2 groups over 4 channels) as Reshape -> InstanceNorm -> Reshape -> Mul -> Add.
        var m = new TinyModel().Input("x", F32, 2, 4, 3, 3).Input("scale", F32, 2).Input("bias", F32, 2)
            .Ints("grouped", 0, 2, -1).Ints("back", 2, 4, 3, 3)
            .Node("Reshape", ["x", "grouped"], "xg")
            .Node("InstanceNormalization", ["xg", "scale", "bias"], "n", F("epsilon", 1e-5f))
            .Node("Reshape", ["n", "back"], "y").Output("y").Build();
        GradCheck.Run(m, Feeds(F32, ("x", [2, 4, 3, 3]), ("scale", [2]), ("bias", [2])), "y", ["x", "scale", "bias"], h: 1e-2, rtol: 3e-3);
    }

    [Test]
    public void LayerNormalizationLastTwoAxes()
    {
        var m = new TinyModel(opset: 17).Input("x", F64, 2, 3, 4).Input("scale", F64, 3, 4).Input("bias", F64, 4)
            .Node("LayerNormalization", ["x", "scale", "bias"], "y", I("axis", -2), F("epsilon", 1e-5f)).Output("y").Build();
        GradCheck.Run(m, Feeds(F64, ("x", [2, 3, 4]), ("scale", [3, 4]), ("bias", [4])), "y", ["x", "scale", "bias"], rtol: 1e-5);
    }

    [Test]
    public void GroupNormalizationOpset21()
    {
        var m = new TinyModel(opset: 21).Input("x", F32, 2, 6, 3, 2).Input("scale", F32, 6).Input("bias", F32, 6)
            .Node("GroupNormalization", ["x", "scale", "bias"], "y", I("num_groups", 3), F("epsilon", 1e-5f)).Output("y").Build();
        GradCheck.Run(m, Feeds(F32, ("x", [2, 6, 3, 2]), ("scale", [6]), ("bias", [6])), "y", ["x", "scale", "bias"], h: 1e-2, rtol: 3e-3);
    }

    [TestCase("nearest", "asymmetric", "floor", 2.0, 2.0)]
    [TestCase("nearest", "half_pixel", "round_prefer_floor", 2.0, 3.0)]
    [TestCase("nearest", "asymmetric", "floor", 0.5, 1.0)]
    [TestCase("linear", "half_pixel", "round_prefer_floor", 2.0, 2.0)]
    [TestCase("linear", "align_corners", "round_prefer_floor", 2.0, 1.5)]
    [TestCase("linear", "pytorch_half_pixel", "round_prefer_floor", 0.5, 2.0)]
    public void ResizeModes(string mode, string transform, string nearest, double sh, double sw)
    {
        var m = new TinyModel(opset: 13).Input("x", F32, 2, 2, 4, 4)
            .Const("roi", F32, [0], []).Const("scales", F32, [4], [1, 1, sh, sw])
            .Node("Resize", ["x", "roi", "scales"], "y", S("mode", mode), S("coordinate_transformation_mode", transform), S("nearest_mode", nearest))
            .Output("y").Build();
        GradCheck.Run(m, Feeds(F32, ("x", [2, 2, 4, 4])), "y", ["x"], h: 0.5, rtol: 2e-4);
    }
}
