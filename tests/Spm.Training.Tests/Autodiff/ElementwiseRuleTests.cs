using Spm.Core.Randomness;
using static Spm.Training.Tests.Autodiff.TinyModel;

namespace Spm.Training.Tests.Autodiff;

/// <summary>Finite-difference checks of the element-wise and broadcasting rules (float64 graphs).</summary>
[TestFixture]
public class ElementwiseRuleTests
{
    private static readonly SeededRandom Rng = new(42);

    private static Dictionary<string, GradCheck.Tensor> Feeds(params (string Name, long[] Shape)[] inputs)
        => inputs.ToDictionary(i => i.Name, i => GradCheck.Random(Rng, F64, i.Shape));

    [TestCase("Add", new long[] { 2, 3, 4 }, new long[] { 2, 3, 4 })]
    [TestCase("Add", new long[] { 2, 3, 4 }, new long[] { 3, 1 })]
    [TestCase("Sub", new long[] { 2, 1, 4 }, new long[] { 3, 1 })]
    [TestCase("Mul", new long[] { 2, 3, 4 }, new long[] { 4 })]
    [TestCase("Mul", new long[] { 1, 3, 1 }, new long[] { 2, 1, 5 })]
    [TestCase("Div", new long[] { 2, 3, 4 }, new long[] { 2, 1, 4 })]
    public void BinaryBroadcasting(string op, long[] a, long[] b)
    {
        var m = new TinyModel().Input("a", F64, a).Input("b", F64, b).Node(op, ["a", "b"], "y").Output("y").Build();
        var feeds = Feeds(("a", a), ("b", b));
        if (op == "Div") feeds["b"] = feeds["b"] with { Data = feeds["b"].Data.Select(v => 1.5 + Math.Abs(v)).ToArray() };
        GradCheck.Run(m, feeds, "y", ["a", "b"]);
    }

    [Test]
    public void SameTensorTwiceAccumulates()
    {
        // y = x * x + x: x feeds three uses, the gradient 2x + 1 needs the contributions summed.
        var m = new TinyModel().Input("x", F64, 3, 4)
            .Node("Mul", ["x", "x"], "sq").Node("Add", ["sq", "x"], "y").Output("y").Build();
        var g = GradCheck.Run(m, Feeds(("x", [3, 4])), "y", ["x"]);
        Assert.That(g["x"], Has.Length.EqualTo(12));
    }

    [TestCase(2.0)]
    [TestCase(0.5)]
    [TestCase(3.0)]
    [TestCase(1.0)]
    public void PowConstantExponent(double e)
    {
        var m = new TinyModel().Input("x", F64, 2, 5).Scalar("e", F64, e)
            .Node("Pow", ["x", "e"], "y").Output("y").Build();
        var feeds = Feeds(("x", [2, 5]));
        feeds["x"] = feeds["x"] with { Data = feeds["x"].Data.Select(v => 0.5 + Math.Abs(v)).ToArray() };
        GradCheck.Run(m, feeds, "y", ["x"]);
    }

    [Test]
    public void PowExponentOnPath()
    {
        var m = new TinyModel().Input("x", F64, 2, 3).Input("e", F64, 3).Node("Pow", ["x", "e"], "y").Output("y").Build();
        var feeds = Feeds(("x", [2, 3]), ("e", [3]));
        feeds["x"] = feeds["x"] with { Data = feeds["x"].Data.Select(v => 0.5 + Math.Abs(v)).ToArray() };
        GradCheck.Run(m, feeds, "y", ["x", "e"]);
    }

    [TestCase("Sqrt")]
    [TestCase("Exp")]
    [TestCase("Neg")]
    [TestCase("Sigmoid")]
    [TestCase("Tanh")]
    [TestCase("Log")]
    [TestCase("Identity")]
    public void Unary(string op)
    {
        var m = new TinyModel().Input("x", F64, 3, 4).Node(op, ["x"], "y").Output("y").Build();
        var feeds = Feeds(("x", [3, 4]));
        if (op is "Sqrt" or "Log") feeds["x"] = feeds["x"] with { Data = feeds["x"].Data.Select(v => 0.3 + Math.Abs(v)).ToArray() };
        GradCheck.Run(m, feeds, "y", ["x"]);
    }

    [Test]
    public void ErfFloat32()
    {
        // ORT implements Erf for float only.
        var m = new TinyModel().Input("x", F32, 3, 4).Node("Erf", ["x"], "y").Output("y").Build();
        var feeds = new Dictionary<string, GradCheck.Tensor> { ["x"] = GradCheck.Random(Rng, F32, 3, 4) };
        GradCheck.Run(m, feeds, "y", ["x"], h: 1e-2, rtol: 2e-3);
    }

    [Test]
    public void WhereBroadcasting()
    {
        var m = new TinyModel().Input("x", F64, 2, 3).Input("a", F64, 2, 3).Input("b", F64, 3)
            .Scalar("zero", F64, 0)
            .Node("Greater", ["x", "zero"], "c").Node("Where", ["c", "a", "b"], "y").Output("y").Build();
        GradCheck.Run(m, Feeds(("x", [2, 3]), ("a", [2, 3]), ("b", [3])), "y", ["a", "b"]);
    }

    [Test]
    public void CastFloatToDoubleAndBack()
    {
        var m = new TinyModel().Input("x", F32, 2, 3)
            .Node("Cast", ["x"], "xd", I("to", F64)).Node("Mul", ["xd", "xd"], "sq")
            .Node("Cast", ["sq"], "y", I("to", F32)).Output("y").Build();
        var feeds = new Dictionary<string, GradCheck.Tensor> { ["x"] = GradCheck.Random(Rng, F32, 2, 3) };
        GradCheck.Run(m, feeds, "y", ["x"], h: 1e-2, rtol: 1e-3);
    }

    [Test]
    public void ExpandToShape()
    {
        var m = new TinyModel().Input("x", F64, 3, 1).Ints("shape", 2, 3, 4)
            .Node("Expand", ["x", "shape"], "y").Output("y").Build();
        GradCheck.Run(m, Feeds(("x", [3, 1])), "y", ["x"]);
    }

    [Test]
    public void SoftmaxLastAndMiddleAxis()
    {
        var m = new TinyModel().Input("x", F64, 2, 3, 4)
            .Node("Softmax", ["x"], "s1", I("axis", -1)).Node("Softmax", ["s1"], "y", I("axis", 1)).Output("y").Build();
        GradCheck.Run(m, Feeds(("x", [2, 3, 4])), "y", ["x"]);
    }
}
