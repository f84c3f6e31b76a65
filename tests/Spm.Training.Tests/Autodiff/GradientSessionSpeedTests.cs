using Microsoft.ML.OnnxRuntime;
using Spm.Core.Randomness;
using Spm.Diffusion.Runtime;
using Spm.Training.Autodiff;
using Spm.Training.LatentAnchoring;
using Spm.Tests.Common;

namespace Spm.Training.Tests.Autodiff;

/// <summary>
/// What makes opening a gradient graph faster must not change a single bit of what it computes: the shape probe
/// without graph optimization builds the same graph, skipping ONNX Runtime's quantization passes on a float graph and
/// loading the optimized graph from the cache give the very same loss and gradients as the plain session.
/// </summary>
[TestFixture]
[Category(TestCategories.Slow)]
public class GradientSessionSpeedTests
{
    private static readonly string[] Wrt = ["conv_in.weight", "onnx::MatMul_3644", "up_blocks.1.resnets.0.conv1.weight"];

    private GradientGraph _graph = null!;
    private Dictionary<string, OrtValue> _feeds = null!;
    private string[] _outputs = null!;

    [OneTimeSetUp]
    public void BuildTheGraph()
    {
        var withLoss = MembraneTrainingGraph.AddRowLoss(UnetFixture.Model);
        var inputs = UnetFixture.Inputs(seed: 5, batch: 2, h: 16, w: 16);
        var target = new float[2 * 4 * 16 * 16];
        new SeededRandom(11).FillGaussian(target);
        inputs[MembraneTrainingGraph.TargetInput] = (target, [2, 4, 16, 16]);
        inputs[MembraneTrainingGraph.RowWeightsInput] = ([1f, 0.25f], [2]);
        _feeds = UnetFixture.ToOrt(inputs);
        _graph = MembraneTrainingGraph.BuildGradient(withLoss, Wrt, _feeds, new GradientSessionSettings(UnetFixture.Folder, IntraOpThreads: 1));
        _outputs = [_graph.LossOutput, MembraneTrainingGraph.RowLossOutput, .. Wrt.Select(w => _graph.GradientOutputs[w])];
    }

    [OneTimeTearDown]
    public void Release()
    {
        foreach (var v in _feeds.Values) v.Dispose();
    }

    [Test]
    public void TheProbe_OpensWithoutGraphOptimization_AndGivesTheSameShapes()
    {
        var withLoss = MembraneTrainingGraph.AddRowLoss(UnetFixture.Model);
        var probeFeeds = _feeds.Where(kv => kv.Key != MembraneTrainingGraph.RowWeightsInput).ToDictionary(kv => kv.Key, kv => kv.Value);
        var settings = new GradientSessionSettings(UnetFixture.Folder, IntraOpThreads: 1);
        var probed = TensorShapes.Probe(withLoss, probeFeeds, settings);

        // The same probe on a fully optimized session, as the probe was opened before.
        var optimized = OptimizedProbe(withLoss, probeFeeds);
        Assert.That(probed.Count, Is.EqualTo(optimized.Count));
        foreach (var (name, (type, dims)) in optimized)
        {
            Assert.That(probed.TryGet(name, out var t, out var d), Is.True, name);
            Assert.That((t, d), Is.EqualTo((type, dims)), name);
        }
    }

    [Test]
    public void AQuantizedGraph_KeepsEveryPass()
    {
        var model = _graph.Model.Clone();
        model.Graph.Node.Add(Spm.Diffusion.Onnx.OnnxNodes.Node("DequantizeLinear", "dq", ["q", "scale"], ["dq_out"]));
        Assert.That(GradientSessionFactory.TuningFor(model).DisabledOptimizers, Is.Empty);
    }

    /// <summary>
    /// One run through every way the factory opens a gradient graph, against the plain session (full optimization, no
    /// skipped pass, no cache): tuned (quantization passes skipped on a float graph) and stored in the cache, loaded from
    /// it, rebuilt over a damaged entry, loaded again. Each open of the 6,773-node graph at full optimization costs
    /// seconds, so the four cases share the opens.
    /// </summary>
    [Test]
    public void SkippingTheQuantizationPasses_AndTheOptimizedGraphCache_StoreLoadAndRebuild_LeaveEveryOutputBitIdentical()
    {
        Assert.That(GradientSessionFactory.TuningFor(_graph.Model).DisabledOptimizers, Is.EqualTo(GradientSessionFactory.QuantizationPasses),
            "the fixture's gradient graph has no quantized operator");
        var folder = TestPaths.NewTempDir();
        var settings = new GradientSessionSettings(UnetFixture.Folder, IntraOpThreads: 1) { OptimizedModelCacheFolder = folder };
        var reference = RunPlain();

        // Tuned, and stored: the cache holds the tuned graph.
        using (var first = GradientSessionFactory.CreateDetailed(_graph.Model, settings))
        {
            Assert.That(first.OptimizedModel, Is.EqualTo(OptimizedModelUse.Stored));
            AssertBitIdentical(Run(first.Session), reference);
        }
        var entry = Directory.GetDirectories(folder).Single();
        Assert.That(Directory.GetFiles(entry).Select(Path.GetFileName).Order(), Is.EqualTo(new[] { "model.onnx", "weights.bin" }),
            "one complete entry, no staging folder left behind");

        using (var second = GradientSessionFactory.CreateDetailed(_graph.Model, settings))
        {
            Assert.That(second.OptimizedModel, Is.EqualTo(OptimizedModelUse.Loaded));
            AssertBitIdentical(Run(second.Session), reference);
        }

        // A damaged entry is rebuilt, not trusted.
        File.WriteAllBytes(Path.Combine(entry, "model.onnx"), [1, 2, 3, 4]);
        using (var rebuilt = GradientSessionFactory.CreateDetailed(_graph.Model, settings))
        {
            Assert.That(rebuilt.OptimizedModel, Is.EqualTo(OptimizedModelUse.Stored));
            AssertBitIdentical(Run(rebuilt.Session), reference);
        }
        using var loaded = GradientSessionFactory.CreateDetailed(_graph.Model, settings);
        Assert.That(loaded.OptimizedModel, Is.EqualTo(OptimizedModelUse.Loaded));
    }

    [Test]
    public void TheCacheKey_FollowsTheModel_ItsWeightsFile_AndTheOptimizationChoices()
    {
        // A copy of the fixture UNet folder, whose weights file can be touched.
        var unet = TestPaths.NewTempDir();
        foreach (var file in Directory.GetFiles(UnetFixture.Folder)) File.Copy(file, Path.Combine(unet, Path.GetFileName(file)));
        var bytes = File.ReadAllBytes(Path.Combine(unet, "model.onnx"));
        var source = OnnxModelSource.FromBytes(bytes, unet, "unet");
        const GraphOptimizationLevel all = GraphOptimizationLevel.ORT_ENABLE_ALL;
        var key = OptimizedModelCache.EntryFor("/cache", source, all, []);

        Assert.That(key, Is.Not.Null);
        Assert.That(OptimizedModelCache.EntryFor("/cache", OnnxModelSource.FromBytes(bytes, unet, "again"), all, []), Is.EqualTo(key), "the display name does not matter");
        Assert.That(OptimizedModelCache.EntryFor("/cache", source, GraphOptimizationLevel.ORT_ENABLE_EXTENDED, []), Is.Not.EqualTo(key));
        Assert.That(OptimizedModelCache.EntryFor("/cache", source, all, ["ConstantFolding"]), Is.Not.EqualTo(key));
        var changed = (byte[])bytes.Clone();
        changed[^1] ^= 1;
        Assert.That(OptimizedModelCache.EntryFor("/cache", OnnxModelSource.FromBytes(changed, unet, "unet"), all, []), Is.Not.EqualTo(key));

        var weights = Path.Combine(unet, "weights.pb");
        File.SetLastWriteTimeUtc(weights, File.GetLastWriteTimeUtc(weights).AddSeconds(5));
        Assert.That(OptimizedModelCache.EntryFor("/cache", source, all, []), Is.Not.EqualTo(key), "new weights under the same model file must miss");
        File.Delete(weights);
        Assert.That(OptimizedModelCache.EntryFor("/cache", source, all, []), Is.Null, "missing external data: no entry (ONNX Runtime reports the error)");
        Assert.That(OptimizedModelCache.EntryFor("/cache", OnnxModelSource.FromFile(Path.Combine(UnetFixture.Folder, "model.onnx")), all, []), Is.Null,
            "only in-memory models are cached");
    }

    /// <summary>The gradient graph as the factory opened it before: full optimization, no skipped pass, no cache.</summary>
    private InferenceSession PlainSession()
        => OnnxSessionFactory.Create(OnnxModelSource.FromModel(GradientSessionFactory.WithoutDeclaredShapes(_graph.Model), UnetFixture.Folder),
            new OnnxRuntimeOptions { IntraOpThreads = 1 }).Session;

    private static Dictionary<string, (int, long[])> OptimizedProbe(Spm.Diffusion.Onnx.Proto.ModelProto model, Dictionary<string, OrtValue> feeds)
    {
        var probe = model.Clone();
        var known = new HashSet<string>(probe.Graph.Output.Select(o => o.Name));
        foreach (var node in probe.Graph.Node)
            foreach (var o in node.Output)
                if (o.Length > 0 && known.Add(o)) probe.Graph.Output.Add(new Spm.Diffusion.Onnx.Proto.ValueInfoProto { Name = o });
        using var session = OnnxSessionFactory.Create(OnnxModelSource.FromModel(GradientSessionFactory.WithoutDeclaredShapes(probe), UnetFixture.Folder),
            new OnnxRuntimeOptions { IntraOpThreads = 1 }).Session;
        var names = feeds.Keys.ToArray();
        var outputs = session.OutputMetadata.Keys.ToArray();
        using var ro = new RunOptions();
        using var results = session.Run(ro, names, names.Select(n => feeds[n]).ToArray(), outputs);
        var map = new Dictionary<string, (int, long[])>();
        foreach (var init in probe.Graph.Initializer) map[init.Name] = (init.DataType, init.Dims.ToArray());
        foreach (var (n, v) in feeds) map[n] = ((int)v.GetTensorTypeAndShape().ElementDataType, v.GetTensorTypeAndShape().Shape);
        for (int i = 0; i < outputs.Length; i++)
            if (results[i].IsTensor)
                map[outputs[i]] = ((int)results[i].GetTensorTypeAndShape().ElementDataType, results[i].GetTensorTypeAndShape().Shape);
        return map;
    }

    private List<float[]> Run(InferenceSession session)
    {
        var names = _feeds.Keys.ToArray();
        using var ro = new RunOptions();
        using var results = session.Run(ro, names, names.Select(n => _feeds[n]).ToArray(), _outputs);
        return results.Select(r => r.GetTensorDataAsSpan<float>().ToArray()).ToList();
    }

    // The plain session's outputs, computed once: opening the 6,773-node graph at full optimization takes seconds.
    private List<float[]>? _plain;
    private readonly object _plainLock = new();

    private List<float[]> RunPlain()
    {
        lock (_plainLock)
        {
            if (_plain is null)
            {
                using var session = PlainSession();
                _plain = Run(session);
            }
            return _plain;
        }
    }

    private void AssertBitIdentical(List<float[]> actual, List<float[]> expected)
    {
        Assert.That(actual, Has.Count.EqualTo(expected.Count));
        for (int i = 0; i < expected.Count; i++)
        {
            Assert.That(expected[i].Any(v => v != 0), Is.True, $"'{_outputs[i]}' is not all zeros (the comparison would prove nothing)");
            Assert.That(actual[i].Select(BitConverter.SingleToInt32Bits), Is.EqualTo(expected[i].Select(BitConverter.SingleToInt32Bits)), _outputs[i]);
        }
    }
}
