using MathNet.Numerics.LinearAlgebra;
using Spm.Core.Library;
using Spm.Core.Membranes;
using Spm.Core.Tensors;

namespace Spm.Core.Tests.Library;

/// <summary>Merging SPMs: exact (the sum of the separate deltas, per-concept records), and truncated SVD (Eckart–Young errors).</summary>
public class SpmMergeTests
{
    private string _dir = "";

    [SetUp] public void SetUp() => _dir = Directory.CreateTempSubdirectory("spm-merge").FullName;
    [TearDown] public void TearDown() => Directory.Delete(_dir, true);

    private static FloatTensor Random(Random rng, params int[] shape)
    {
        var t = new FloatTensor(shape);
        for (int i = 0; i < t.Length; i++) t.Data[i] = (float)(rng.NextDouble() * 2 - 1);
        return t;
    }

    // Layers: k1 linear 6 -> 5, k2 conv 3 -> 4 with a 3x3 kernel, k3 linear 7 -> 2, k4 linear 20 -> 16.
    private static Membrane Linear(Random rng, string key, int rank, float alpha, int inF, int outF) => new(key, Random(rng, rank, inF), Random(rng, outF, rank), alpha);
    private static Membrane Conv(Random rng, string key, int rank, float alpha) => new(key, Random(rng, rank, 3, 3, 3), Random(rng, 4, rank, 1, 1), alpha);

    /// <summary>Three SPMs of different ranks and scales over partly different layers; A has a gate probe.</summary>
    private static List<MergeComponent> Components(int seed = 3)
    {
        var rng = new Random(seed);
        var a = new SpmAdapter(new SpmConfig(["circle", "round"], 2, 1f, new Dictionary<string, string> { [SpmMetadataKeys.BaseModel] = "tiny", [SpmMetadataKeys.GateProbe] = "{\"kind\":\"x\"}" }),
            [Linear(rng, "k1", 2, 1f, 6, 5), Conv(rng, "k2", 2, 1f), Linear(rng, "k4", 2, 1f, 20, 16)]);
        var b = new SpmAdapter(new SpmConfig(["red"], 1, 1f, new Dictionary<string, string> { [SpmMetadataKeys.BaseModel] = "tiny" }),
            [Linear(rng, "k1", 1, 1f, 6, 5), Linear(rng, "k3", 1, 1f, 7, 2), Linear(rng, "k4", 1, 1f, 20, 16)]);
        var c = new SpmAdapter(new SpmConfig(["striped"], 3, 3f), [Linear(rng, "k1", 3, 3f, 6, 5), Conv(rng, "k2", 3, 3f), Linear(rng, "k4", 3, 3f, 20, 16)]);
        return [new("circle", a, "aa"), new("red", b, "bb"), new("striped", c)];
    }

    /// <summary>The layer's delta Σ scale · up · down as a dense out × fanIn matrix (double).</summary>
    private static Matrix<double> Delta(IEnumerable<Membrane> membranes)
    {
        Matrix<double>? sum = null;
        foreach (var m in membranes)
        {
            int fanIn = m.Down.Length / m.Rank;
            var up = Matrix<double>.Build.Dense(m.OutFeatures, m.Rank, (i, j) => m.Up.Data[i * m.Rank + j]);
            var down = Matrix<double>.Build.Dense(m.Rank, fanIn, (i, j) => m.Down.Data[i * fanIn + j]);
            var d = m.Scale * up * down;
            sum = sum is null ? d : sum + d;
        }
        return sum!;
    }

    /// <summary>y = Σ scale · up (down x) in float, the way a branch computes it.</summary>
    private static float[] Apply(IEnumerable<Membrane> membranes, float[] x)
    {
        float[]? y = null;
        foreach (var m in membranes)
        {
            int fanIn = m.Down.Length / m.Rank;
            y ??= new float[m.OutFeatures];
            var h = new float[m.Rank];
            for (int j = 0; j < m.Rank; j++) h[j] = m.Scale * System.Numerics.Tensors.TensorPrimitives.Dot(m.Down.Data.AsSpan(j * fanIn, fanIn), x);
            for (int o = 0; o < m.OutFeatures; o++)
                for (int j = 0; j < m.Rank; j++) y[o] += m.Up.Data[o * m.Rank + j] * h[j];
        }
        return y!;
    }

    [Test]
    public void ExactMerge_ReproducesTheSumOfTheSeparateMembranes_ToFloatPrecision()
    {
        var components = Components();
        var merged = SpmMerge.Exact(components);
        Assert.That(merged.Adapter.Config.Rank, Is.EqualTo(6), "ranks concatenated: 2 + 1 + 3");
        Assert.That(merged.Adapter.Membranes.Select(m => m.Key), Is.EqualTo(new[] { "k1", "k2", "k4", "k3" }));
        Assert.That(merged.Adapter.Membranes.Select(m => m.Rank), Is.All.EqualTo(6));
        Assert.That(merged.Adapter.Config.Prompts, Is.EqualTo(new[] { "circle", "round", "red", "striped" }));
        Assert.That(merged.MaxRelativeError, Is.EqualTo(0));
        var rng = new Random(9);
        foreach (var key in new[] { "k1", "k2", "k3", "k4" })
        {
            var parts = components.Select(c => c.Adapter.FindByKey(key)).Where(m => m is not null).Select(m => m!).ToList();
            var mm = merged.Adapter.FindByKey(key)!;
            for (int trial = 0; trial < 5; trial++)
            {
                var x = Enumerable.Range(0, mm.Down.Length / mm.Rank).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
                var expected = Apply(parts, x);
                var actual = Apply([mm], x);
                float scale = expected.Max(MathF.Abs);
                for (int o = 0; o < expected.Length; o++)
                    Assert.That(actual[o], Is.EqualTo(expected[o]).Within(2e-6f * scale), $"{key}[{o}]");
            }
        }
    }

    [Test]
    public void ExactMerge_SavedAndLoaded_KeepsEachConceptsColumnsPromptsAndProbe()
    {
        var components = Components();
        var path = Path.Combine(_dir, "merged.safetensors");
        SpmFile.Save(path, SpmMerge.Exact(components).Adapter);
        var loaded = SpmFile.Load(path);
        var parts = SpmMerge.Components(loaded)!;
        Assert.That(parts.Select(p => (p.Concept, p.Offset, p.Rank)), Is.EqualTo(new[] { ("circle", 0, 2), ("red", 2, 1), ("striped", 3, 3) }));
        Assert.That(parts[0].Prompts, Is.EqualTo(new[] { "circle", "round" }));
        Assert.That(parts[0].GateProbe, Is.EqualTo("{\"kind\":\"x\"}"));
        Assert.That(parts[1].GateProbe, Is.Null);
        Assert.That(loaded.Config.Extra.ContainsKey(SpmMetadataKeys.BaseModel), Is.False, "kept only when every SPM names the same base model (striped names none)");
        for (int i = 0; i < components.Count; i++)
        {
            var slice = SpmMerge.Slice(loaded, parts[i]);
            Assert.That(slice.Select(m => m.Key), Is.EquivalentTo(components[i].Adapter.Membranes.Select(m => m.Key)), "zero slices (layers it lacks) are left out");
            foreach (var m in slice)
            {
                var original = components[i].Adapter.FindByKey(m.Key)!;
                var d = Delta([m]) - Delta([original]);
                Assert.That(d.FrobeniusNorm(), Is.LessThan(1e-6 * Delta([original]).FrobeniusNorm()), $"{components[i].Concept}/{m.Key}");
                if (i == 0) Assert.That(m.Down.Data, Is.EqualTo(original.Down.Data), "the first SPM's scale is the file's: copied unchanged");
            }
        }
    }

    [Test]
    public void SvdAtFullRank_HasNoError_AndTheReportedErrorIsTheDirectOne()
    {
        var components = Components();
        var merged = SpmMerge.Compressed(components, 100);
        foreach (var layer in merged.Layers)
        {
            var exact = Delta(components.Select(c => c.Adapter.FindByKey(layer.Key)).Where(m => m is not null).Select(m => m!));
            var approx = Delta([merged.Adapter.FindByKey(layer.Key)!]);
            double direct = (exact - approx).FrobeniusNorm() / exact.FrobeniusNorm();
            Assert.That(layer.RelativeError, Is.LessThan(1e-9), layer.Key);
            Assert.That(direct, Is.LessThan(1e-6), $"{layer.Key}: float factors reproduce the delta");
            Assert.That(layer.Rank, Is.EqualTo(Math.Min(layer.FullRank, Math.Min(exact.RowCount, exact.ColumnCount))), layer.Key);
        }
        Assert.That(merged.Layers.Single(l => l.Key == "k4").FullRank, Is.EqualTo(6), "k4 (20 -> 16, total rank 6) goes through the QR path");
    }

    [TestCase(1)]
    [TestCase(2)]
    [TestCase(3)]
    public void SvdBelowTheTotalRank_GivesTheEckartYoungOptimum(int budget)
    {
        var components = Components(17);
        var merged = SpmMerge.Compressed(components, budget);
        Assert.That(merged.Adapter.Config.Rank, Is.EqualTo(budget));
        foreach (var layer in merged.Layers)
        {
            var parts = components.Select(c => c.Adapter.FindByKey(layer.Key)).Where(m => m is not null).Select(m => m!).ToList();
            var exact = Delta(parts);
            // The optimum from the full matrix's own SVD (not the merge's factor route).
            var s = exact.Svd(computeVectors: false).S;
            double all = s.Sum(v => v * v), tail = s.Skip(Math.Min(budget, s.Count)).Sum(v => v * v);
            double optimum = Math.Sqrt(tail / all);
            var approx = Delta([merged.Adapter.FindByKey(layer.Key)!]);
            double direct = (exact - approx).FrobeniusNorm() / exact.FrobeniusNorm();
            Assert.That(layer.RelativeError, Is.EqualTo(optimum).Within(1e-9), $"{layer.Key}: reported = Eckart-Young optimum");
            Assert.That(direct, Is.EqualTo(optimum).Within(1e-5), $"{layer.Key}: the written membrane achieves it");
            if (layer.FullRank > budget)
            {
                Assert.That(optimum, Is.GreaterThan(1e-3), $"{layer.Key}: something is dropped");
                // Any other rank-budget approximation does worse, e.g. keeping the first SPMs' columns only.
                var keep = new List<Membrane>();
                int left = budget;
                foreach (var m in parts)
                {
                    if (left == 0) break;
                    int r = Math.Min(left, m.Rank);
                    int fanIn = m.Down.Length / m.Rank;
                    var down = new FloatTensor([r, fanIn], m.Down.Data.AsSpan(0, r * fanIn).ToArray());
                    var up = new FloatTensor(m.OutFeatures, r);
                    for (int o = 0; o < m.OutFeatures; o++) m.Up.Data.AsSpan(o * m.Rank, r).CopyTo(up.Data.AsSpan(o * r));
                    keep.Add(new Membrane(m.Key, down, up, m.Scale * r));
                    left -= r;
                }
                double naive = (exact - Delta(keep)).FrobeniusNorm() / exact.FrobeniusNorm();
                Assert.That(naive, Is.GreaterThan(optimum), $"{layer.Key}: truncating the concatenation is worse");
            }
        }
    }

    [Test]
    public void MismatchedLayersAndDuplicates_AreRefused()
    {
        var components = Components();
        var other = new SpmAdapter(new SpmConfig(["x"], 1, 1f), [new Membrane("k1", new FloatTensor(1, 8), new FloatTensor(5, 1), 1f)]);
        var ex = Assert.Throws<SpmMismatchException>(() => SpmMerge.Exact([.. components, new MergeComponent("x", other)]))!;
        Assert.That(ex.Message, Does.Contain("'k1'").And.Contain("SPM 'x'").And.Contain("SPM 'circle'"));
        Assert.That(() => SpmMerge.Exact([components[0], components[0]]), Throws.ArgumentException.With.Message.Contains("given twice"));
        Assert.That(() => SpmMerge.Compressed(components, 0), Throws.InstanceOf<ArgumentOutOfRangeException>());
        Assert.That(SpmMerge.Components(components[0].Adapter), Is.Null, "an ordinary SPM has no merge record");
        Assert.That(SpmMerge.Components(SpmMerge.Compressed(components, 2).Adapter), Is.Null, "an SVD merge gates as one SPM");
    }
}
