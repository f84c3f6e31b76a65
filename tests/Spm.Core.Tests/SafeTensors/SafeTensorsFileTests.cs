using System.Buffers.Binary;
using System.Text;
using Spm.Core.SafeTensors;
using Spm.Core.Tensors;
using Spm.Tests.Common;
using static Spm.Core.Tests.SafeTensors.SafeTensorsTestFiles;

namespace Spm.Core.Tests.SafeTensors;

public class SafeTensorsFileTests
{
    private string _dir = null!;

    [SetUp] public void SetUp() => _dir = TestPaths.NewTempDir("spm-st");
    [TearDown] public void TearDown() => Directory.Delete(_dir, true);

    [Test]
    public void ReadsHandBuiltFile()
    {
        var data = Floats(1f, -2.5f, 3.25f, 0f, 7f, 8f).Concat(new byte[] { 5, 250 }).ToArray();
        var json = "{\"__metadata__\":{\"format\":\"pt\",\"x\":\"é\"},"
                 + "\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                 + "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[24,26],\"extra\":{\"ignored\":[1]}}}";
        var path = WriteTemp(_dir, Raw(json, data, 8));
        using var f = SafeTensorsFile.Open(path);
        Assert.That(f.Metadata, Is.EquivalentTo(new Dictionary<string, string> { ["format"] = "pt", ["x"] = "é" }));
        Assert.That(f.Tensors.Select(t => t.Name), Is.EqualTo(new[] { "w", "b" }));
        var w = f.ReadFloat("w");
        Assert.That(w.Shape, Is.EqualTo(new[] { 2, 3 }));
        Assert.That(w.Data, Is.EqualTo(new[] { 1f, -2.5f, 3.25f, 0f, 7f, 8f }));
        Assert.That(f.GetBytes("b").ToArray(), Is.EqualTo(new byte[] { 5, 250 }));
        Assert.That(f.GetSpan<float>("w")[2], Is.EqualTo(3.25f));
        Assert.That(f.GetInfo("b").DType, Is.EqualTo(SafeTensorDType.U8));
        Assert.That(f.Contains("w") && !f.Contains("nope"));
        Assert.That(() => f.ReadFloat("b"), Throws.TypeOf<SpmFormatException>().With.Message.Contains("'b'"));
        Assert.That(() => f.GetSpan<double>("w"), Throws.TypeOf<SpmFormatException>());
    }

    [Test]
    public void ReadsReferenceSpmFiles()
    {
        // Expected figures computed with Python's struct module from the raw file bytes.
        using (var f = SafeTensorsFile.Open(Path.Combine(TestPaths.Reference("all-layers"), "spm.safetensors")))
        {
            Assert.That(f.Tensors, Has.Count.EqualTo(216));
            Assert.That(f.Metadata["prompts"], Is.EqualTo("reference concept"));
            Assert.That(f.Metadata["rank"], Is.EqualTo("1"));
            Assert.That(f.Metadata["alpha"], Is.EqualTo("1.0"));
            var first = f.ReadFloat("lora_unet_down_blocks_1_attentions_0_proj_in.lora_down.weight");
            Assert.That(first.Shape, Is.EqualTo(new[] { 1, 64, 1, 1 }));
            Assert.That(first.Data.Take(4), Is.EqualTo(new[] { 0.09804488718509674f, -0.050881460309028625f, -0.035648152232170105f, 0.09492142498493195f }));
            Assert.That(SumAbs(f), Is.EqualTo(658.838494490542).Within(1e-6));
        }
        using (var f = SafeTensorsFile.Open(Path.Combine(TestPaths.Reference("attn2-rank4"), "spm.safetensors")))
        {
            Assert.That(f.Tensors, Has.Count.EqualTo(72));
            Assert.That(SumAbs(f), Is.EqualTo(617.4795654090904).Within(1e-6));
        }
    }

    private static double SumAbs(SafeTensorsFile f)
    {
        double s = 0;
        foreach (var t in f.Tensors) foreach (var v in f.ReadFloat(t.Name).Data) s += Math.Abs(v);
        return s;
    }

    [Test]
    public void ConvertsHalfBFloat16DoubleAndFloat8()
    {
        // Bit patterns and their values worked out by hand from the IEEE/bfloat16/OCP FP8 definitions.
        ushort[] halfBits = { 0x3C00, 0xC000, 0x7BFF, 0x0001, 0x3555, 0x7C00, 0xFC00, 0x8000 };
        float[] halfValues = { 1f, -2f, 65504f, 5.9604645e-8f, 0.333251953125f, float.PositiveInfinity, float.NegativeInfinity, -0f };
        ushort[] bfBits = { 0x3F80, 0x4049, 0xC2F7, 0x0001, 0x7F80 };
        float[] bfValues = { 1f, 3.140625f, -123.5f, 9.18355e-41f, float.PositiveInfinity };
        double[] doubles = { 0.1, -1e300, 1e-50, 3.0 };
        byte[] e4m3 = { 0x38, 0xC0, 0x7E, 0x01, 0x7F };
        float[] e4m3Values = { 1f, -2f, 448f, 0.001953125f, float.NaN };
        byte[] e5m2 = { 0x3C, 0x7B, 0x7C };
        float[] e5m2Values = { 1f, 57344f, float.PositiveInfinity };

        var data = new List<byte>();
        foreach (var h in halfBits) data.AddRange(BitConverter.GetBytes(h));
        foreach (var h in bfBits) data.AddRange(BitConverter.GetBytes(h));
        foreach (var d in doubles) data.AddRange(BitConverter.GetBytes(d));
        data.AddRange(e4m3);
        data.AddRange(e5m2);
        var json = "{\"h\":{\"dtype\":\"F16\",\"shape\":[8],\"data_offsets\":[0,16]},"
                 + "\"bf\":{\"dtype\":\"BF16\",\"shape\":[5],\"data_offsets\":[16,26]},"
                 + "\"d\":{\"dtype\":\"F64\",\"shape\":[2,2],\"data_offsets\":[26,58]},"
                 + "\"e4\":{\"dtype\":\"F8_E4M3\",\"shape\":[5],\"data_offsets\":[58,63]},"
                 + "\"e5\":{\"dtype\":\"F8_E5M2\",\"shape\":[3],\"data_offsets\":[63,66]}}";
        using var f = SafeTensorsFile.Open(WriteTemp(_dir, Raw(json, data.ToArray())));
        Assert.That(f.ReadFloat("h").Data, Is.EqualTo(halfValues));
        Assert.That(float.IsNegative(f.ReadFloat("h").Data[7]), "-0 keeps its sign");
        Assert.That(f.ReadFloat("bf").Data, Is.EqualTo(bfValues));
        Assert.That(f.ReadFloat("d").Data, Is.EqualTo(new[] { 0.1f, float.NegativeInfinity, 0f, 3f }));
        Assert.That(f.ReadFloat("e4").Data, Is.EqualTo(e4m3Values));
        Assert.That(f.ReadFloat("e5").Data, Is.EqualTo(e5m2Values));
    }

    [Test]
    public void NarrowingRoundsToNearestEven()
    {
        // bfloat16 keeps 7 mantissa bits: 1 + 2^-8 is a tie between 1 and 1 + 2^-7 -> even (1).
        Assert.That(FloatConversion.SingleToBFloat16Bits(1f + 1f / 256), Is.EqualTo((ushort)0x3F80));
        // 1 + 3*2^-8 is a tie between 1+2^-7 (odd mantissa 1) and 1+2^-6 (even mantissa 2) -> 0x3F82.
        Assert.That(FloatConversion.SingleToBFloat16Bits(1f + 3f / 256), Is.EqualTo((ushort)0x3F82));
        Assert.That(FloatConversion.SingleToBFloat16Bits(1f + 1.1f / 256), Is.EqualTo((ushort)0x3F81));
        Assert.That(FloatConversion.SingleToBFloat16Bits(float.MaxValue), Is.EqualTo((ushort)0x7F80), "overflow rounds to infinity");
        Assert.That(FloatConversion.SingleToBFloat16Bits(float.NaN) & 0x7FC0, Is.EqualTo(0x7FC0), "NaN stays NaN");
        var halves = new byte[4];
        FloatConversion.SingleToHalfBytes(new[] { 1f + 1f / 2048, 70000f }, halves);
        Assert.That(BinaryPrimitives.ReadUInt16LittleEndian(halves), Is.EqualTo((ushort)0x3C00));
        Assert.That(BinaryPrimitives.ReadUInt16LittleEndian(halves.AsSpan(2)), Is.EqualTo((ushort)0x7C00));
    }

    [Test]
    public void WriterOutputIsExactAndDeterministic()
    {
        var a = new FloatTensor(new[] { 2 }, new[] { 1f, 2f });
        var s = new FloatTensor(Array.Empty<int>(), new[] { 0.5f });
        var path = Path.Combine(_dir, "w.safetensors");
        SafeTensorsWriter.Write(path, new[] { SafeTensorEntry.FromFloat("z", a), SafeTensorEntry.FromFloat("a+b", s) },
            new Dictionary<string, string> { ["rank"] = "1", ["prompts"] = "cat, dog" });
        var json = "{\"__metadata__\":{\"prompts\":\"cat, dog\",\"rank\":\"1\"},"
                 + "\"z\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                 + "\"a+b\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[8,12]}}";
        var expected = Raw(json, Floats(1f, 2f, 0.5f), 8);
        var actual = File.ReadAllBytes(path);
        Assert.That(actual, Is.EqualTo(expected));
        Assert.That(BinaryPrimitives.ReadUInt64LittleEndian(actual) % 8, Is.EqualTo(0));

        var path2 = Path.Combine(_dir, "w2.safetensors");
        SafeTensorsWriter.WriteFloat(path2, new Dictionary<string, FloatTensor> { ["z"] = a, ["a"] = s });
        var path3 = Path.Combine(_dir, "w3.safetensors");
        SafeTensorsWriter.WriteFloat(path3, new Dictionary<string, FloatTensor> { ["a"] = s, ["z"] = a });
        Assert.That(File.ReadAllBytes(path2), Is.EqualTo(File.ReadAllBytes(path3)), "dictionary order does not matter");
        Assert.That(() => SafeTensorsWriter.WriteFloat(path3, new Dictionary<string, FloatTensor> { ["q"] = a }, overwrite: false),
            Throws.TypeOf<IOException>());
        Assert.That(File.ReadAllBytes(path3), Is.EqualTo(File.ReadAllBytes(path2)), "refused overwrite leaves the old file");
    }

    [Test]
    public void EveryDTypeRoundTrips()
    {
        var rng = new Spm.Core.Randomness.SeededRandom(7);
        var entries = new List<SafeTensorEntry>();
        foreach (var dt in Enum.GetValues<SafeTensorDType>())
        {
            var shape = new long[] { 3, 2 };
            var bytes = new byte[6 * SafeTensorDTypes.SizeOf(dt)];
            for (int i = 0; i < bytes.Length; i++) bytes[i] = (byte)rng.NextInt(0, 256);
            entries.Add(new SafeTensorEntry(SafeTensorDTypes.HeaderName(dt).ToLowerInvariant(), dt, shape, bytes));
        }
        entries.Add(new SafeTensorEntry("empty", SafeTensorDType.F32, new long[] { 0, 5 }, Array.Empty<byte>()));
        var path = Path.Combine(_dir, "all.safetensors");
        SafeTensorsWriter.Write(path, entries, new Dictionary<string, string> { ["k"] = "v" });
        using var f = SafeTensorsFile.Open(path);
        Assert.That(f.Tensors.Select(t => t.Name), Is.EqualTo(entries.Select(e => e.Name)));
        foreach (var e in entries)
        {
            var info = f.GetInfo(e.Name);
            Assert.That(info.DType, Is.EqualTo(e.DType));
            Assert.That(info.Shape, Is.EqualTo(e.Shape));
            Assert.That(f.GetBytes(e.Name).ToArray(), Is.EqualTo(e.Data.ToArray()), e.Name);
        }
        Assert.That(f.ReadFloat("empty").Shape, Is.EqualTo(new[] { 0, 5 }));
        Assert.That(f.Metadata["k"], Is.EqualTo("v"));
    }

    [Test]
    public void F16AndBF16WritesReadBackWithinPrecision()
    {
        var values = new[] { 0.1f, -3.7f, 1000.5f, 1e-3f };
        var t = new FloatTensor(new[] { 4 }, values);
        foreach (var (dt, tol) in new[] { (SafeTensorDType.F16, 1e-3), (SafeTensorDType.BF16, 8e-3), (SafeTensorDType.F64, 0.0) })
        {
            var path = Path.Combine(_dir, $"{dt}.safetensors");
            SafeTensorsWriter.WriteFloat(path, new Dictionary<string, FloatTensor> { ["t"] = t }, dtype: dt);
            using var f = SafeTensorsFile.Open(path);
            Assert.That(f.GetInfo("t").DType, Is.EqualTo(dt));
            var back = f.ReadFloat("t").Data;
            for (int i = 0; i < values.Length; i++)
                Assert.That(back[i], Is.EqualTo(values[i]).Within(Math.Abs(values[i]) * tol), $"{dt}[{i}]");
        }
    }

    [Test]
    public void DisposeUnmapsAndClosesTheFile()
    {
        var path = Path.Combine(_dir, "closed.safetensors");
        SafeTensorsWriter.WriteFloat(path, new Dictionary<string, FloatTensor> { ["t"] = new FloatTensor(new[] { 3 }, new[] { 1f, 2f, 3f }) });
        var full = Path.GetFullPath(path);
        var f = SafeTensorsFile.Open(path);
        Assert.That(IsMapped(full), Is.True, "mapped while open");
        Assert.That(HasOpenFd(full), Is.False, "only the mapping stays; the stream was handed over");
        f.Dispose();
        Assert.That(IsMapped(full), Is.False, "unmapped after Dispose");
        Assert.That(HasOpenFd(full), Is.False);
        Assert.That(() => f.ReadFloat("t"), Throws.TypeOf<ObjectDisposedException>());
        f.Dispose(); // idempotent

        // A failed open leaks nothing either.
        File.WriteAllBytes(path, Raw("{\"t\":{\"dtype\":\"F32\",\"shape\":[9],\"data_offsets\":[0,36]}}", Floats(1, 2, 3)));
        Assert.That(() => SafeTensorsFile.Open(path), Throws.TypeOf<SpmFormatException>());
        Assert.That(IsMapped(full) || HasOpenFd(full), Is.False);
    }

    private static bool IsMapped(string full) => File.ReadAllText("/proc/self/maps").Contains(full);

    private static bool HasOpenFd(string full)
    {
        foreach (var fd in Directory.GetFiles("/proc/self/fd"))
        {
            try { if (new FileInfo(fd).LinkTarget == full) return true; } catch (IOException) { }
        }
        return false;
    }


    [TestCase("{" + "\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"t\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,8]}}", "t", "duplicate")]
    [TestCase("{\"__metadata__\":{\"a\":\"1\",\"a\":\"2\"}," + "\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", "__metadata__.a", "duplicate")]
    [TestCase("{\"__metadata__\":{\"a\":1}," + "\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", "__metadata__.a", "strings")]
    [TestCase("{\"t\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", "t", "duplicate field")]
    [TestCase("{\"t\":{\"dtype\":\"F31\",\"shape\":[2],\"data_offsets\":[0,8]}}", "t", "dtype")]
    [TestCase("{\"t\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", "t", "non-negative")]
    [TestCase("{\"t\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", "t", "non-negative")]
    [TestCase("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,8]}}", "t", "non-negative")]
    [TestCase("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", "t", "end before")]
    [TestCase("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,9]}}", "t", "exactly two")]
    [TestCase("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,16]}}", "t", "exceed")]
    [TestCase("{\"t\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", "t", "needs 12")]
    [TestCase("{\"t\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", "t", "overflows")]
    [TestCase("{\"t\":{\"dtype\":\"F64\",\"shape\":[1152921504606846976],\"data_offsets\":[0,8]}}", "t", "overflows")]
    [TestCase("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"u\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", "u", "overlaps")]
    [TestCase("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", "t", "gap")]
    [TestCase("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", "header", "cover 4 bytes")]
    [TestCase("{\"t\":{\"shape\":[2],\"data_offsets\":[0,8]}}", "t", "missing field 'dtype'")]
    [TestCase("{\"t\":[1,2]}", "t", "must be an object")]
    [TestCase("[1,2]", "header", "not a JSON object")]
    [TestCase("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}} x", "header", "not valid JSON")]
    [TestCase("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},}", "header", "not valid JSON")]
    [TestCase("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":[[[[[[[[1]]]]]]]]}}", "t", "not valid JSON")]
    [TestCase("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", "header", "not valid JSON")]
    [TestCase("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"\\ud800\":1}", "header", "invalid string")]
    public void RejectsHostileHeaders(string json, string key, string detail)
    {
        var path = WriteTemp(_dir, Raw(json, Floats(1f, 2f)));
        var ex = Assert.Throws<SpmFormatException>(() => SafeTensorsFile.Open(path).Dispose())!;
        Assert.That(ex.Message, Does.Contain(path));
        Assert.That(ex.Key, Is.EqualTo(key), ex.Message);
        Assert.That(ex.Message, Does.Contain(detail));
    }

    [Test]
    public void OverlongKeysAreRejectedWithAShortMessage()
    {
        var longName = new string('k', 5000);
        var path = WriteTemp(_dir, Raw("{\"" + longName + "\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", Floats(1f, 2f)));
        var ex = Assert.Throws<SpmFormatException>(() => SafeTensorsFile.Open(path).Dispose())!;
        Assert.That(ex.Message, Does.Contain("5000 bytes long"));
        Assert.That(ex.Message.Length, Is.LessThan(400), "the message quotes only the start of the key");
        var meta = WriteTemp(_dir, Raw("{\"__metadata__\":{\"" + longName + "\":\"v\"}}", Array.Empty<byte>()));
        Assert.That(() => SafeTensorsFile.Open(meta), Throws.TypeOf<SpmFormatException>().With.Message.Contains("limit 1024"));
        var entry = new SafeTensorEntry(longName, SafeTensorDType.U8, new long[] { 1 }, new byte[1]);
        Assert.That(() => SafeTensorsWriter.Write(Path.Combine(_dir, "w.safetensors"), new[] { entry }), Throws.ArgumentException, "the writer refuses what the reader would");
    }

    [Test]
    public void RejectsBadHeaderLengths()
    {
        foreach (var (len, detail) in new[] { (ulong.MaxValue, "exceeds the file"), (ulong.MaxValue - 7, "exceeds the file"), (1UL << 63, "exceeds the file"), (0UL, "too small") })
        {
            var bytes = Raw("{}", Array.Empty<byte>());
            BinaryPrimitives.WriteUInt64LittleEndian(bytes, len);
            var path = WriteTemp(_dir, bytes);
            var ex = Assert.Throws<SpmFormatException>(() => SafeTensorsFile.Open(path).Dispose())!;
            Assert.That(ex.Message, Does.Contain(path).And.Contain(detail));
        }
        foreach (var n in new[] { 0, 3, 7 })
        {
            var path = WriteTemp(_dir, new byte[n]);
            Assert.That(() => SafeTensorsFile.Open(path), Throws.TypeOf<SpmFormatException>().With.Message.Contains("shorter than"));
        }
        var big = WriteTemp(_dir, new byte[8]);
        using (var fs = new FileStream(big, FileMode.Open)) { fs.SetLength((SafeTensorsFile.MaxHeaderBytes + 16)); fs.Write(BitConverter.GetBytes(SafeTensorsFile.MaxHeaderBytes + 1)); }
        Assert.That(() => SafeTensorsFile.Open(big), Throws.TypeOf<SpmFormatException>().With.Message.Contains("limit"));
    }

    [Test]
    public void EmptyHeaderObjectIsAValidEmptyFile()
    {
        using var f = SafeTensorsFile.Open(WriteTemp(_dir, Raw("{}", Array.Empty<byte>(), 8)));
        Assert.That(f.Tensors, Is.Empty);
        Assert.That(f.Metadata, Is.Empty);
    }
}

public class SafeTensorsLargeFileTests
{
    [Test]
    public void MultiGigabyteTensorIsMappedNotCopied()
    {
        // A sparse 3 GiB file: opening maps it, allocates almost nothing, and slices reach past 2 GiB.
        var dir = TestPaths.NewTempDir("spm-big");
        try
        {
            var path = Path.Combine(dir, "big.safetensors");
            const long elements = 3L << 28; // 805,306,368 floats = 3 GiB
            var header = System.Text.Encoding.UTF8.GetBytes($"{{\"big\":{{\"dtype\":\"F32\",\"shape\":[{elements}],\"data_offsets\":[0,{elements * 4}]}}}}");
            using (var fs = new FileStream(path, FileMode.CreateNew))
            {
                fs.Write(BitConverter.GetBytes((ulong)header.Length));
                fs.Write(header);
                fs.SetLength(8 + header.Length + elements * 4);
                fs.Seek(8 + header.Length + elements * 4 - 4, SeekOrigin.Begin);
                fs.Write(BitConverter.GetBytes(42.5f));
            }
            SafeTensorsFile.Open(Path.Combine(TestPaths.Reference("attn2-rank4"), "spm.safetensors")).Dispose(); // warm up
            long before = GC.GetAllocatedBytesForCurrentThread();
            using var f = SafeTensorsFile.Open(path);
            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            Assert.That(allocated, Is.LessThan(64 * 1024), "opening a 3 GiB file copies nothing");
            Assert.That(f.GetInfo("big").ByteLength, Is.EqualTo(elements * 4));
            Assert.That(() => f.GetBytes("big"), Throws.TypeOf<NotSupportedException>());
            var last = f.GetBytes("big", elements * 4 - 4, 4);
            Assert.That(BitConverter.ToSingle(last), Is.EqualTo(42.5f));
            Assert.That(BitConverter.ToSingle(f.GetBytes("big", 1L << 31, 4)), Is.EqualTo(0f));
            Assert.That(() => f.GetBytes("big", elements * 4 - 2, 4), Throws.TypeOf<ArgumentOutOfRangeException>());
            var tail = new float[3];
            f.ReadFloatSlice("big", elements - 3, tail);
            Assert.That(tail, Is.EqualTo(new[] { 0f, 0f, 42.5f }), "conversion reaches past 2 GiB");
            Assert.That(() => f.ReadFloatSlice("big", elements - 2, tail), Throws.TypeOf<ArgumentOutOfRangeException>());
        }
        finally { Directory.Delete(dir, true); }
    }
}

public class SafeTensorsLifetimeTests
{
    [Test]
    public void ForgottenFileIsUnmappedByTheFinalizer()
    {
        var dir = TestPaths.NewTempDir("spm-final");
        try
        {
            var path = Path.GetFullPath(Path.Combine(dir, "f.safetensors"));
            SafeTensorsWriter.WriteFloat(path, new Dictionary<string, FloatTensor> { ["t"] = new FloatTensor(new[] { 2 }, new[] { 1f, 2f }) });
            OpenAndForget(path);
            Assert.That(File.ReadAllText("/proc/self/maps"), Does.Contain(path));
            GC.Collect();
            GC.WaitForPendingFinalizers();
            GC.Collect();
            Assert.That(File.ReadAllText("/proc/self/maps"), Does.Not.Contain(path));
        }
        finally { Directory.Delete(dir, true); }
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static void OpenAndForget(string path) => _ = SafeTensorsFile.Open(path).ReadFloat("t");

    [Test]
    public void ConcurrentReadersSeeTheSameData()
    {
        using var f = SafeTensorsFile.Open(Path.Combine(TestPaths.Reference("all-layers"), "spm.safetensors"));
        var expected = f.Tensors.Select(t => f.ReadFloat(t.Name).Data).ToArray();
        var mismatches = 0;
        Parallel.For(0, 8, new ParallelOptions { MaxDegreeOfParallelism = 8 }, _ =>
        {
            for (int rep = 0; rep < 5; rep++)
                for (int i = 0; i < f.Tensors.Count; i++)
                    if (!f.ReadFloat(f.Tensors[i].Name).Data.AsSpan().SequenceEqual(expected[i])) Interlocked.Increment(ref mismatches);
        });
        Assert.That(mismatches, Is.Zero);
    }
}
