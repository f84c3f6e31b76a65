using Spm.Core.Randomness;
using Spm.Core.Tensors;
using Spm.Diffusion.Membranes;
using Spm.Diffusion.Onnx;

namespace Spm.Diffusion.Tests.Membranes;

/// <summary>
/// <see cref="MembraneTensors.Select"/>: a subset cut from a library's stacked tensors equals, value for value, the
/// tensors of a layout that loaded exactly that subset (zeros on layers none of it covers).
/// </summary>
[TestFixture]
public sealed class MembraneSelectTests
{
    private static readonly List<AdaptableLayer> Layers =
    [
        new("conv_a", LayerKind.Conv, 4, 6, "/conv_a/Conv", "x", "conv_a.weight", "a", [3, 3], [2, 2], [1, 1, 1, 1], [1, 1], 1, true),
        new("conv_b", LayerKind.Conv, 6, 5, "/conv_b/Conv", "a", "conv_b.weight", "b", [3, 3], [1, 1], [2, 2, 2, 2], [2, 2], 1, true),
        new("lin", LayerKind.MatMul, 5, 7, "/lin/MatMul", "tokens", "lin.weight", "y", [], [], [], [], 1, true),
        new("gemm", LayerKind.Gemm, 7, 3, "/gemm/Gemm", "z", "gemm.weight", "w", [], [], [], [], 1, true),
    ];

    private static MembraneSet RandomSet(string name, int rank, float scale, SeededRandom rng, params string[] paths)
    {
        var ms = new List<LayerMembrane>();
        foreach (var l in Layers.Where(l => paths.Contains(l.ModulePath)))
        {
            var down = new FloatTensor(MembraneShapes.Down(l, rank));
            var up = new FloatTensor(MembraneShapes.Up(l, rank));
            foreach (var t in new[] { down, up })
                for (int i = 0; i < t.Length; i++) t.Data[i] = (float)rng.NextGaussian();
            ms.Add(new LayerMembrane(l.ModulePath, down, up, scale));
        }
        return new MembraneSet(name, [name], ms);
    }

    [Test]
    public void Subset_EqualsTheLayoutOfExactlyThoseSpms()
    {
        var rng = new SeededRandom(4);
        var a = RandomSet("a", 2, 0.5f, rng, "conv_a", "lin");
        var b = RandomSet("b", 1, 1f, rng, "conv_a", "conv_b", "lin", "gemm");
        var c = RandomSet("c", 3, 0.25f, rng, "lin", "gemm");
        var d = RandomSet("d", 2, 2f, rng, "conv_b");
        var library = MembraneTensors.Build(MembraneLayout.Create(Layers, [a, b, c, d]));
        float[] multipliers = [0.7f, 0.1f, 1.5f, 0.3f]; // 2 rows x 2 SPMs
        var subset = library.Select([0, 2], multipliers);
        var alone = MembraneTensors.Build(MembraneLayout.Create(Layers, [a, c]));
        var aloneGates = alone.Gates(multipliers);

        Assert.That(subset[MembraneNames.Scales].Data, Is.EqualTo(alone.Inputs[MembraneNames.Scales].Data));
        Assert.That(subset[MembraneNames.Gates].Shape, Is.EqualTo(aloneGates.Shape));
        Assert.That(subset[MembraneNames.Gates].Data, Is.EqualTo(aloneGates.Data));
        foreach (var layer in library.Layout.Layers)
            foreach (var name in new[] { MembraneNames.Down(layer.ModulePath), MembraneNames.Up(layer.ModulePath) })
            {
                if (alone.Inputs.TryGetValue(name, out var expected))
                {
                    Assert.That(subset[name].Shape, Is.EqualTo(expected.Shape), name);
                    Assert.That(subset[name].Data, Is.EqualTo(expected.Data), name);
                }
                else
                {
                    Assert.That(layer.ModulePath, Is.EqualTo("conv_b"), "only conv_b is covered by neither a nor c");
                    int rankAxis = name.EndsWith(".down", StringComparison.Ordinal) ? 0 : 1;
                    Assert.That(subset[name].Shape[rankAxis], Is.EqualTo(5), $"{name}: the subset's rank, 2 + 3");
                    Assert.That(subset[name].Data, Is.All.EqualTo(0f), $"{name}: zero columns add exactly 0");
                }
            }
    }

    [Test]
    public void EmptySubset_IsOneZeroColumnWithGateZero_AndBadSubsetsAreRefused()
    {
        var rng = new SeededRandom(5);
        var library = MembraneTensors.Build(MembraneLayout.Create(Layers, [RandomSet("a", 2, 1f, rng, "lin"), RandomSet("b", 1, 1f, rng, "gemm")]));
        var empty = library.Select([], [1f, 1f]);
        Assert.That(empty[MembraneNames.Gates].Shape, Is.EqualTo(new[] { 2, 1 }));
        Assert.That(empty.Values.SelectMany(t => t.Data), Is.All.EqualTo(0f));
        Assert.That(() => library.Select([0, 0], [1f, 1f]), Throws.ArgumentException.With.Message.Contains("distinct"));
        Assert.That(() => library.Select([2], [1f]), Throws.ArgumentException);
        Assert.That(() => library.Select([0, 1], [1f, 1f, 1f]), Throws.ArgumentException.With.Message.Contains("batch x 2"));
    }
}
