using Spm.Core;
using Spm.Diffusion.Membranes;
using Spm.Diffusion.Onnx;
using Spm.Diffusion.Pipelines;
using Spm.Diffusion.Runtime;
using Spm.Tests.Common;

namespace Spm.Diffusion.Tests.Hub;

/// <summary><c>--model ORG/NAME</c> from a Hugging Face hub cache laid out like a real one (symbolic links into blobs/).</summary>
[TestFixture]
public sealed class HubCacheTests
{
    private string _cache = null!;
    private string _mainCommit = null!;
    private string _dataCommit = null!;

    [OneTimeSetUp]
    public void SetUp()
    {
        _cache = TestPaths.NewTempDir("spm-hub");
        _mainCommit = HubCacheBuilder.AddSnapshot(_cache, "test-org/tiny-sd1", "main", TestPaths.TinySd1);
        // The optimum layout: unet/model.onnx + model.onnx_data (the fixture has weights.pb), on another branch.
        var staging = Path.Combine(TestPaths.NewTempDir("spm-hub-src"), "p");
        foreach (var f in Directory.EnumerateFiles(TestPaths.TinySd1, "*", SearchOption.AllDirectories).Where(f => !f.Contains($"{Path.DirectorySeparatorChar}unet{Path.DirectorySeparatorChar}", StringComparison.Ordinal)))
        {
            var target = Path.Combine(staging, Path.GetRelativePath(TestPaths.TinySd1, f));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(f, target);
        }
        Directory.CreateDirectory(Path.Combine(staging, "unet"));
        File.Copy(Path.Combine(TestPaths.TinySd1, "unet", "config.json"), Path.Combine(staging, "unet", "config.json"));
        var unet = OnnxModel.Load(TestPaths.TinySd1);
        var inline = unet.Proto.Clone();
        foreach (var t in inline.Graph.Initializer.Where(t => t.DataLocation == Spm.Diffusion.Onnx.Proto.TensorProto.Types.DataLocation.External))
        {
            t.RawData = Google.Protobuf.ByteString.CopyFrom(unet.ReadBytes(t.Name));
            t.ExternalData.Clear();
            t.DataLocation = Spm.Diffusion.Onnx.Proto.TensorProto.Types.DataLocation.Default;
        }
        OnnxModel.FromProto(inline, unet.BaseDirectory).Save(Path.Combine(staging, "unet", "model.onnx"),
            new OnnxSaveOptions(ExternalizeAboveBytes: 1024, NewDataFileName: "model.onnx_data"));
        _dataCommit = HubCacheBuilder.AddSnapshot(_cache, "test-org/tiny-sd1", "onnx-data", staging);
        Directory.Delete(Path.GetDirectoryName(staging)!, true);
    }

    [OneTimeTearDown]
    public void TearDown()
    {
        try { Directory.Delete(_cache, true); } catch (IOException) { }
    }

    [Test]
    public void CacheRoot_FollowsHuggingFaceHubsOrder()
    {
        Dictionary<string, string> env = new() { ["HF_HUB_CACHE"] = "/a/hub", ["HF_HOME"] = "/b", ["XDG_CACHE_HOME"] = "/c" };
        Assert.That(HubCache.CacheRoot(k => env.GetValueOrDefault(k)), Is.EqualTo("/a/hub"));
        env.Remove("HF_HUB_CACHE");
        Assert.That(HubCache.CacheRoot(k => env.GetValueOrDefault(k)), Is.EqualTo(Path.Combine("/b", "hub")));
        env.Remove("HF_HOME");
        Assert.That(HubCache.CacheRoot(k => env.GetValueOrDefault(k)), Is.EqualTo(Path.Combine("/c", "huggingface", "hub")));
        env.Remove("XDG_CACHE_HOME");
        Assert.That(HubCache.CacheRoot(k => env.GetValueOrDefault(k)),
            Is.EqualTo(Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "huggingface", "hub")));
    }

    [Test]
    public void Resolve_MainByDefault_RevisionsByRefOrCommit()
    {
        var repo = Path.Combine(_cache, "models--test-org--tiny-sd1");
        Assert.That(HubCache.Resolve("test-org/tiny-sd1", cacheRoot: _cache), Is.EqualTo(Path.Combine(repo, "snapshots", _mainCommit)));
        Assert.That(HubCache.Resolve("test-org/tiny-sd1", "onnx-data", _cache), Is.EqualTo(Path.Combine(repo, "snapshots", _dataCommit)));
        Assert.That(HubCache.Resolve("test-org/tiny-sd1", _dataCommit, _cache), Is.EqualTo(Path.Combine(repo, "snapshots", _dataCommit)));
        Assert.That(HubCache.IsRepoId("test-org/tiny-sd1"), Is.True);
        Assert.That(HubCache.IsRepoId("models/tiny-shapes/x"), Is.False);
        Assert.That(HubCache.IsRepoId("../x"), Is.False);
    }

    [Test]
    public void Resolve_MissingRepoOrRevision_SaysSoAndNeverDownloads()
    {
        var ex = Assert.Throws<SpmInputNotFoundException>(() => HubCache.Resolve("test-org/other", cacheRoot: _cache))!;
        Assert.That(ex.Message, Does.Contain("'test-org/other' is not in the Hugging Face cache").And.Contain("never downloads").And.Contain("huggingface-cli download test-org/other"));
        ex = Assert.Throws<SpmInputNotFoundException>(() => HubCache.Resolve("test-org/tiny-sd1", "fp16", _cache))!;
        Assert.That(ex.Message, Does.Contain("revision 'fp16'").And.Contain("cached refs: main, onnx-data"));
        ex = Assert.Throws<SpmInputNotFoundException>(() => HubCache.Resolve("test-org/tiny-sd1", new string('a', 40), _cache))!;
        Assert.That(ex.Message, Does.Contain("snapshot is not in the cache"));
    }

    /// <summary>
    /// Both layouts load through the symbolic links (our external-data checks accept links into the same repository's
    /// blobs/, nothing else) and give the folder's own output; SPMs inject into the cached UNet.
    /// </summary>
    [TestCase("main")]
    [TestCase("onnx-data")]
    [Category(TestCategories.Slow)]
    public async Task CachedPipeline_GeneratesLikeTheFolder_WithAnSpm(string revision)
    {
        // The folder's own latents are the same for both revisions: generated once for the fixture.
        var snapshot = HubCache.Resolve("test-org/tiny-sd1", revision, _cache);
        var unet = OnnxModel.Load(snapshot);
        Assert.That(unet.ExternalDataFiles, Is.EqualTo(new[] { revision == "main" ? "weights.pb" : "model.onnx_data" }));
        Assert.That(new FileInfo(unet.FilePath).LinkTarget, Does.Contain("blobs"), "the cache's files are links into blobs/");
        Assert.That(unet.ReadFloat(unet.Graph.Initializer.First(t => t.Dims.Count == 4).Name).Length, Is.GreaterThan(0));

        var spm = Path.Combine(TestPaths.Reference("all-layers"), "spm.safetensors");
        async Task<float[]> Latents(string folder)
        {
            var spms = LoadedSpms.Load(folder, [spm]);
            using var p = StableDiffusionPipeline.Load(folder, new PipelineOptions { Runtime = new OnnxRuntimeOptions { IntraOpThreads = 1 }, UNetSource = spms.UNetSource });
            var r = await p.GenerateAsync(new GenerationRequest
            {
                Prompt = "a photo of a cat", Steps = 2, Seed = 3, Scheduler = "ddim", Width = 64, Height = 64, DecodeImages = false,
                Conditioner = spms.CreateConditioner(p, [new Spm.Core.Gating.GateSettings(FixedMultiplier: 1f)]),
            });
            return r.Latents.Data;
        }
        var cached = await Latents(snapshot);
        _folderLatents ??= await Latents(TestPaths.TinySd1);
        Assert.That(cached, Is.EqualTo(_folderLatents));
    }

    private float[]? _folderLatents;

    [Test]
    public void LinkOutOfTheRepository_IsStillRefused()
    {
        // A snapshot file linking outside its own repository's blobs/ is not the cache's layout: refused as before.
        var evilRoot = TestPaths.NewTempDir("spm-hub-evil");
        try
        {
            var commit = HubCacheBuilder.AddSnapshot(evilRoot, "evil/model", "main", Path.Combine(TestPaths.TinySd1, "unet"));
            var data = Path.Combine(evilRoot, "models--evil--model", "snapshots", commit, "weights.pb");
            File.Delete(data);
            File.CreateSymbolicLink(data, Path.Combine(TestPaths.TinySd1, "unet", "weights.pb"));
            var ex = Assert.Throws<SpmFormatException>(() => OnnxModel.Load(Path.Combine(evilRoot, "models--evil--model", "snapshots", commit)))!;
            Assert.That(ex.Message, Does.Contain("outside the model's folder"));
        }
        finally
        {
            Directory.Delete(evilRoot, true);
        }
    }
}
