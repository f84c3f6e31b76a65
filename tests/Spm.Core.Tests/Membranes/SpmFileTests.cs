using Spm.Core.Membranes;
using Spm.Core.SafeTensors;
using Spm.Core.Tensors;
using Spm.Tests.Common;
using static Spm.Core.Tests.SafeTensors.SafeTensorsTestFiles;

namespace Spm.Core.Tests.Membranes;

public class SpmFileTests
{
    private string _dir = null!;

    [SetUp] public void SetUp() => _dir = TestPaths.NewTempDir("spm-file");
    [TearDown] public void TearDown() => Directory.Delete(_dir, true);

    private static string RefSpm(string c) => Path.Combine(TestPaths.Reference(c), "spm.safetensors");

    /// <summary>The module paths of the tiny fixture UNet's transformer containers, written out by hand.</summary>
    internal static List<string> TinyUnetModulePaths()
    {
        var containers = new[]
        {
            "down_blocks.1.attentions.0", "down_blocks.1.attentions.1", "mid_block.attentions.0",
            "up_blocks.0.attentions.0", "up_blocks.0.attentions.1", "up_blocks.0.attentions.2",
        };
        var inner = new[]
        {
            "proj_in", "proj_out",
            "transformer_blocks.0.attn1.to_q", "transformer_blocks.0.attn1.to_k", "transformer_blocks.0.attn1.to_v", "transformer_blocks.0.attn1.to_out.0",
            "transformer_blocks.0.attn2.to_q", "transformer_blocks.0.attn2.to_k", "transformer_blocks.0.attn2.to_v", "transformer_blocks.0.attn2.to_out.0",
            "transformer_blocks.0.ff.net.0.proj", "transformer_blocks.0.ff.net.2",
        };
        var paths = containers.SelectMany(c => inner.Select(i => c + "." + i)).ToList();
        // Layers outside transformer containers, as a model also has them.
        paths.AddRange(new[] { "down_blocks.0.resnets.0.conv1", "conv_in", "time_embedding.linear_1" });
        return paths;
    }

    [Test]
    public void LoadsReferenceFiles()
    {
        var all = SpmFile.Load(RefSpm("all-layers"));
        Assert.That(all.Membranes, Has.Count.EqualTo(72));
        Assert.That(all.Config.Prompts, Is.EqualTo(new[] { "reference concept" }));
        Assert.That(all.Config.Rank, Is.EqualTo(1));
        Assert.That(all.Config.Alpha, Is.EqualTo(1f));
        Assert.That(all.Config.Extra, Is.Empty);
        Assert.That(all.StorageDType, Is.EqualTo(SafeTensorDType.F32));
        var projIn = all.FindByKey("lora_unet_down_blocks_1_attentions_0_proj_in")!;
        Assert.That(projIn.IsConv && projIn.Kernel == (1, 1) && projIn.InFeatures == 64 && projIn.OutFeatures == 64);
        Assert.That(projIn.ModulePath, Is.Null, "no model given: raw keys");
        Assert.That(all.Membranes.Count(m => m.IsConv), Is.EqualTo(12), "proj_in/proj_out are 1x1 convs in SD 1.x");
        Assert.That(all.Membranes.All(m => m.Rank == 1 && m.Scale == 1f));

        var r4 = SpmFile.Load(RefSpm("attn2-rank4"));
        Assert.That(r4.Membranes, Has.Count.EqualTo(24));
        Assert.That(r4.Membranes.All(m => m.Rank == 4 && m.Alpha == 2f && m.Scale == 0.5f && !m.IsConv));
        var toK = r4.FindByKey("lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k")!;
        Assert.That(toK.Down.Shape, Is.EqualTo(new[] { 4, 32 }), "attn2 to_k reads the 32-wide text embedding");
        Assert.That(toK.Up.Shape, Is.EqualTo(new[] { 64, 4 }));
        Assert.That(r4.ParameterCount, Is.EqualTo(10776 - 24), "all floats minus the 24 alphas (counted from the raw file)");
    }

    [TestCase("all-layers")]
    [TestCase("attn2-rank4")]
    public void ReadWriteReadIsIdentical(string c)
    {
        var src = RefSpm(c);
        var adapter = SpmFile.Load(src);
        var copy = Path.Combine(_dir, "copy.safetensors");
        SpmFile.Save(copy, adapter);
        using (var a = SafeTensorsFile.Open(src))
        using (var b = SafeTensorsFile.Open(copy))
        {
            Assert.That(b.Metadata, Is.EquivalentTo(a.Metadata));
            Assert.That(b.Tensors.Select(t => t.Name), Is.EquivalentTo(a.Tensors.Select(t => t.Name)));
            foreach (var t in a.Tensors)
            {
                var u = b.GetInfo(t.Name);
                Assert.That(u.DType, Is.EqualTo(t.DType), t.Name);
                Assert.That(u.Shape, Is.EqualTo(t.Shape), t.Name);
                Assert.That(b.GetBytes(t.Name).SequenceEqual(a.GetBytes(t.Name)), t.Name);
            }
        }
        var again = SpmFile.Load(copy);
        Assert.That(again.Membranes.Select(m => m.Key), Is.EqualTo(adapter.Membranes.Select(m => m.Key)));
        // Saving is deterministic: the same adapter gives the same bytes.
        var copy2 = Path.Combine(_dir, "copy2.safetensors");
        SpmFile.Save(copy2, again);
        Assert.That(File.ReadAllBytes(copy2), Is.EqualTo(File.ReadAllBytes(copy)));
        Assert.That(() => SpmFile.Save(copy2, again), Throws.TypeOf<IOException>(), "no overwrite by default");
    }

    [Test]
    public void ResolvesKeysAgainstModulePathsWithoutSplitting()
    {
        var paths = TinyUnetModulePaths();
        var adapter = SpmFile.Load(RefSpm("all-layers"), new SpmLoadOptions { ModulePaths = paths, RequireAllResolved = true });
        Assert.That(adapter.UnresolvedKeys, Is.Empty);
        Assert.That(adapter.Membranes.Select(m => m.ModulePath), Is.EquivalentTo(paths.Take(72)));
        Assert.That(adapter.FindByModulePath("mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj")!.Key,
            Is.EqualTo("lora_unet_mid_block_attentions_0_transformer_blocks_0_ff_net_0_proj"));

        // A model lacking some layers: unresolved by default, an error on request naming the first one.
        var partial = paths.Where(p => !p.StartsWith("up_blocks.0.attentions.2")).ToList();
        var loose = SpmFile.Load(RefSpm("all-layers"), new SpmLoadOptions { ModulePaths = partial });
        Assert.That(loose.UnresolvedKeys.Count(), Is.EqualTo(12));
        var ex = Assert.Throws<SpmMismatchException>(() => SpmFile.Load(RefSpm("all-layers"), new SpmLoadOptions { ModulePaths = partial, RequireAllResolved = true }))!;
        Assert.That(ex.Layer, Is.EqualTo("lora_unet_up_blocks_0_attentions_2_proj_in"));
        Assert.That(ex.Message, Does.Contain("12 of 72"));
    }

    [Test]
    public void AcceptsLoConKeysForResnetConvsTheModelHas()
    {
        var path = Path.Combine(_dir, "locon.safetensors");
        var down = new FloatTensor(new[] { 2, 32, 3, 3 }, Enumerable.Range(0, 576).Select(i => i * 1e-3f).ToArray());
        var up = new FloatTensor(new[] { 32, 2, 1, 1 }, Enumerable.Range(0, 64).Select(i => -i * 1e-3f).ToArray());
        var adapter = new SpmAdapter(new SpmConfig(new[] { "cat", "dog" }, 2, 1f, new Dictionary<string, string> { ["surrogate"] = "" }),
            new[] { new Membrane(SpmKeys.KeyFor("down_blocks.0.resnets.0.conv1"), down, up, 1f) });
        SpmFile.Save(path, adapter);
        var loaded = SpmFile.Load(path, new SpmLoadOptions { ModulePaths = TinyUnetModulePaths(), RequireAllResolved = true });
        var m = loaded.Membranes.Single();
        Assert.That(m.ModulePath, Is.EqualTo("down_blocks.0.resnets.0.conv1"));
        Assert.That(m.Kernel, Is.EqualTo((3, 3)));
        Assert.That(m.Scale, Is.EqualTo(0.5f));
        Assert.That(m.Down.Data, Is.EqualTo(down.Data));
        Assert.That(loaded.Config.Prompts, Is.EqualTo(new[] { "cat", "dog" }));
        Assert.That(loaded.Config.Extra["surrogate"], Is.EqualTo(""));
        using var f = SafeTensorsFile.Open(path);
        Assert.That(f.Metadata["prompts"], Is.EqualTo("cat,dog"));
        Assert.That(f.Metadata["alpha"], Is.EqualTo("1.0"));
        Assert.That(f.GetInfo(m.Key + ".alpha").Shape, Is.Empty, "alpha written as a 0-d scalar by default");
    }

    [Test]
    public void AmbiguousModulePathsAreAnErrorNotAGuess()
    {
        var index = SpmKeys.BuildIndex(new[] { "a.b_c", "a_b.c", "x.y" }, out var ambiguous);
        Assert.That(index.Keys, Is.EquivalentTo(new[] { "lora_unet_x_y" }));
        Assert.That(ambiguous["lora_unet_a_b_c"], Is.EquivalentTo(new[] { "a.b_c", "a_b.c" }));
        var adapter = new SpmAdapter(new SpmConfig(new[] { "c" }, 1, 1f),
            new[] { new Membrane("lora_unet_a_b_c", new FloatTensor(1, 2), new FloatTensor(2, 1)) });
        Assert.That(() => adapter.Resolve(new[] { "a.b_c", "a_b.c" }), Throws.TypeOf<SpmMismatchException>().With.Message.Contains("several module paths"));
    }

    [Test]
    public void HalfAndBFloat16FilesLoad()
    {
        // down F16 [1,2] = {1, -2}; up BF16 [2,1] = {3.140625, -123.5}; alpha F16 scalar = 0.5 (bit patterns by hand).
        var data = new byte[] { 0x00, 0x3C, 0x00, 0xC0, 0x49, 0x40, 0xF7, 0xC2, 0x00, 0x38 };
        var json = "{\"__metadata__\":{\"prompts\":\"x\",\"rank\":\"1\",\"alpha\":\"0.5\"},"
                 + "\"k.lora_down.weight\":{\"dtype\":\"F16\",\"shape\":[1,2],\"data_offsets\":[0,4]},"
                 + "\"k.lora_up.weight\":{\"dtype\":\"BF16\",\"shape\":[2,1],\"data_offsets\":[4,8]},"
                 + "\"k.alpha\":{\"dtype\":\"F16\",\"shape\":[],\"data_offsets\":[8,10]}}";
        var a = SpmFile.Load(WriteTemp(_dir, Raw(json, data)));
        var m = a.Membranes.Single();
        Assert.That(a.StorageDType, Is.EqualTo(SafeTensorDType.F16));
        Assert.That(m.Down.Data, Is.EqualTo(new[] { 1f, -2f }));
        Assert.That(m.Up.Data, Is.EqualTo(new[] { 3.140625f, -123.5f }));
        Assert.That(m.Alpha, Is.EqualTo(0.5f));
        Assert.That(m.Scale, Is.EqualTo(0.5f));

        // And saving as F16/BF16 reloads within half/bfloat precision.
        var reference = SpmFile.Load(RefSpm("attn2-rank4"));
        foreach (var (dt, rel) in new[] { (SafeTensorDType.F16, 1.0 / 1024), (SafeTensorDType.BF16, 1.0 / 128) })
        {
            var p = Path.Combine(_dir, $"{dt}.safetensors");
            SpmFile.Save(p, reference, dtype: dt);
            var back = SpmFile.Load(p);
            Assert.That(back.StorageDType, Is.EqualTo(dt));
            for (int i = 0; i < back.Membranes.Count; i++)
            {
                var x = reference.Membranes[i].Down.Data;
                var y = back.Membranes[i].Down.Data;
                for (int j = 0; j < x.Length; j++)
                    Assert.That(y[j], Is.EqualTo(x[j]).Within(Math.Abs(x[j]) * rel + 1e-7));
            }
        }
    }

    [Test]
    public void AlphaAbsentOrZeroDefaultsToRank()
    {
        var m0 = new Membrane("k", new FloatTensor(4, 8), new FloatTensor(8, 4), 0f);
        var mNull = new Membrane("k", new FloatTensor(4, 8), new FloatTensor(8, 4));
        Assert.That(m0.Alpha, Is.EqualTo(4f));
        Assert.That(m0.Scale, Is.EqualTo(1f));
        Assert.That(mNull.Scale, Is.EqualTo(1f));
        var json = "{\"__metadata__\":{\"prompts\":\"x\",\"rank\":\"2\",\"alpha\":\"1.0\"},"
                 + "\"k.lora_down.weight\":{\"dtype\":\"F32\",\"shape\":[2,1],\"data_offsets\":[0,8]},"
                 + "\"k.lora_up.weight\":{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[8,16]}}";
        var a = SpmFile.Load(WriteTemp(_dir, Raw(json, Floats(1, 2, 3, 4))));
        Assert.That(a.Membranes[0].Alpha, Is.EqualTo(2f));
    }

    private const string Md = "\"__metadata__\":{\"prompts\":\"x\",\"rank\":\"1\",\"alpha\":\"1.0\"}";

    private static string Entry(string name, string dtype, string shape, int begin, int end)
        => $"\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":{shape},\"data_offsets\":[{begin},{end}]}}";

    [TestCase("{\"__metadata__\":{\"rank\":\"1\",\"alpha\":\"1.0\"},D,U}", "__metadata__.prompts", "missing required metadata field 'prompts'")]
    [TestCase("{\"__metadata__\":{\"prompts\":\"x\",\"alpha\":\"1.0\"},D,U}", "__metadata__.rank", "missing required metadata field 'rank'")]
    [TestCase("{\"__metadata__\":{\"prompts\":\"x\",\"rank\":\"1\"},D,U}", "__metadata__.alpha", "missing required metadata field 'alpha'")]
    [TestCase("{D,U}", "__metadata__.prompts", "missing required")]
    [TestCase("{\"__metadata__\":{\"prompts\":\" , \",\"rank\":\"1\",\"alpha\":\"1\"},D,U}", "__metadata__.prompts", "no concept")]
    [TestCase("{\"__metadata__\":{\"prompts\":\"x\",\"rank\":\"one\",\"alpha\":\"1\"},D,U}", "__metadata__.rank", "not an integer")]
    [TestCase("{\"__metadata__\":{\"prompts\":\"x\",\"rank\":\"-1\",\"alpha\":\"1\"},D,U}", "__metadata__.rank", "positive")]
    [TestCase("{\"__metadata__\":{\"prompts\":\"x\",\"rank\":\"1\",\"alpha\":\"NaN\"},D,U}", "__metadata__.alpha", "finite")]
    [TestCase("{\"__metadata__\":{\"prompts\":\"x\",\"rank\":\"1\",\"alpha\":\"a\"},D,U}", "__metadata__.alpha", "not a number")]
    public void MetadataErrorsNameTheField(string template, string key, string detail)
    {
        var json = template.Replace("D", Entry("k.lora_down.weight", "F32", "[1,2]", 0, 8)).Replace("U", Entry("k.lora_up.weight", "F32", "[2,1]", 8, 16));
        var path = WriteTemp(_dir, Raw(json, Floats(1, 2, 3, 4)));
        var ex = Assert.Throws<SpmFormatException>(() => SpmFile.Load(path))!;
        Assert.That(ex.Key, Is.EqualTo(key));
        Assert.That(ex.Message, Does.Contain(path).And.Contain(detail));
    }

    [Test]
    public void MissingMetadataCanBeSupplied()
    {
        var json = "{" + Entry("k.lora_down.weight", "F32", "[1,2]", 0, 8) + "," + Entry("k.lora_up.weight", "F32", "[2,1]", 8, 16) + "}";
        var path = WriteTemp(_dir, Raw(json, Floats(1, 2, 3, 4)));
        var a = SpmFile.Load(path, new SpmLoadOptions { Prompts = new[] { "van gogh" }, Rank = 1, Alpha = 1f });
        Assert.That(a.Config.Prompts, Is.EqualTo(new[] { "van gogh" }));
        Assert.That(a.Membranes[0].Up.Data, Is.EqualTo(new[] { 3f, 4f }));
    }

    [TestCase("[1,2]", "[2,2]", 8, 16, "k", "rank mismatch")]
    [TestCase("[1,2,1,1]", "[2,1]", 8, 8, "k", "conv/linear mismatch")]
    [TestCase("[1,2]", "[2,1,1,1]", 8, 8, "k", "conv/linear mismatch")]
    [TestCase("[1,1,1,2]", "[1,1,2,1]", 8, 8, "k", "1x1")]
    [TestCase("[2]", "[2,1]", 8, 8, "k", "2-D")]
    [TestCase("[0,2]", "[2,0]", 0, 0, "k", "empty dimension")]
    public void InconsistentShapesAreRejected(string downShape, string upShape, int downBytes, int upBytes, string key, string detail)
    {
        var json = "{" + Md + "," + Entry("k.lora_down.weight", "F32", downShape, 0, downBytes) + ","
                 + Entry("k.lora_up.weight", "F32", upShape, downBytes, downBytes + upBytes) + "}";
        var path = WriteTemp(_dir, Raw(json, new byte[downBytes + upBytes]));
        var ex = Assert.Throws<SpmFormatException>(() => SpmFile.Load(path))!;
        Assert.That(ex.Key, Is.EqualTo(key));
        Assert.That(ex.Message, Does.Contain(path).And.Contain(detail));
    }

    [Test]
    public void BadTensorsAreRejectedByName()
    {
        void Expect(string entries, byte[] data, string key, string detail, SpmLoadOptions? o = null)
        {
            var path = WriteTemp(_dir, Raw("{" + Md + "," + entries + "}", data));
            var ex = Assert.Throws<SpmFormatException>(() => SpmFile.Load(path, o))!;
            Assert.That(ex.Key, Is.EqualTo(key), ex.Message);
            Assert.That(ex.Message, Does.Contain(path).And.Contain(detail));
        }
        var d = Entry("k.lora_down.weight", "F32", "[1,2]", 0, 8);
        var u = Entry("k.lora_up.weight", "F32", "[2,1]", 8, 16);
        Expect(d, Floats(1, 2), "k.lora_up.weight", "missing");
        Expect(u.Replace("8,16", "0,8"), Floats(1, 2), "k.lora_down.weight", "missing");
        Expect(d + "," + u + "," + Entry("k.lora_mid.weight", "F32", "[1]", 16, 20), Floats(1, 2, 3, 4, 5), "k.lora_mid.weight", "not a membrane tensor");
        Expect(d + "," + Entry("k.lora_up.weight", "I32", "[2,1]", 8, 16), Floats(1, 2, 3, 4), "k.lora_up.weight", "floating-point");
        Expect(d + "," + u, Floats(1, float.NaN, 3, 4), "k.lora_down.weight", "NaN or infinite");
        Expect(d + "," + u, Floats(1, 2, float.PositiveInfinity, 4), "k.lora_up.weight", "NaN or infinite");
        Expect(d + "," + u + "," + Entry("k.alpha", "F32", "[2]", 16, 24), Floats(1, 2, 3, 4, 1, 1), "k.alpha", "single value");
        Expect(d + "," + u + "," + Entry("k.alpha", "F32", "[]", 16, 20), Floats(1, 2, 3, 4, float.NaN), "k.alpha", "NaN");
        Expect(Entry("k.alpha", "F32", "[]", 0, 4), Floats(1), "k.lora_down.weight", "missing");
        var onlyMeta = WriteTemp(_dir, Raw("{" + Md + "}", Array.Empty<byte>()));
        Assert.That(() => SpmFile.Load(onlyMeta), Throws.TypeOf<SpmFormatException>().With.Message.Contains("no membranes"));

        // The non-finite policy can be relaxed, and unknown tensors skipped, on request.
        var path = WriteTemp(_dir, Raw("{" + Md + "," + d + "," + u + "," + Entry("k.lora_mid.weight", "F32", "[1]", 16, 20) + "}", Floats(1, float.NaN, 3, 4, 5)));
        var a = SpmFile.Load(path, new SpmLoadOptions { AllowNonFinite = true, IgnoreUnknownTensors = true });
        Assert.That(float.IsNaN(a.Membranes[0].Down.Data[1]));
    }

    [Test]
    public void TheWriterIsRead_FromWriter_OrFromTheOlderGeneratorKey()
    {
        // A file written before the key became `writer` (docs/spm-format.md; the first shipped SPMs were) still names its writer.
        var json = "{\"__metadata__\":{\"prompts\":\"striped\",\"rank\":\"1\",\"alpha\":\"1.0\",\"generator\":\"spm (Spm .NET)\"},"
                 + Entry("k.lora_down.weight", "F32", "[1,2]", 0, 8) + "," + Entry("k.lora_up.weight", "F32", "[2,1]", 8, 16) + "}";
        var older = SpmFile.Load(WriteTemp(_dir, Raw(json, Floats(1, 2, 3, 4))));
        Assert.That(older.Config.Extra.ContainsKey(SpmMetadataKeys.Writer), Is.False);
        Assert.That(older.Config.Writer, Is.EqualTo("spm (Spm .NET)"));
        // The shipped files are written by today's writer under today's key.
        var shipped = SpmFile.Load(Path.Combine(TestPaths.RepoRoot, "models", "tiny-shapes", "spm", "striped.safetensors"));
        Assert.That(shipped.Config.Writer, Does.StartWith("Spm "));

        var both = new Dictionary<string, string> { [SpmMetadataKeys.Writer] = "Spm 0.2.0", [SpmMetadataKeys.LegacyWriter] = "old" };
        Assert.That(SpmMetadataKeys.WriterOf(both), Is.EqualTo("Spm 0.2.0"), "writer wins over generator");
        Assert.That(SpmMetadataKeys.WriterOf(new Dictionary<string, string>()), Is.Null);
        Assert.That(SpmMetadataKeys.CurrentWriter, Does.Match(@"^Spm \d+\.\d+\.\d+$"));
    }
}
