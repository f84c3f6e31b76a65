using System.Diagnostics;
using Spm.Core.Membranes;
using Spm.Core.Randomness;
using Spm.Core.SafeTensors;
using Spm.Core.Tensors;
using Spm.Tests.Common;

namespace Spm.Core.Tests.Fuzz;

/// <summary>
/// Issue 2 acceptance 3 / issue 8: mutated safetensors files end in <see cref="SpmFormatException"/> naming the file
/// (or load), never anything else; opening allocates at most the file's size plus a small constant; no case hangs.
/// </summary>
[NonParallelizable]
public class SafeTensorsFuzzTests
{
    /// <summary>Allocation allowed beyond the file's size for one open: mapping objects, the exception and its stack trace.</summary>
    internal const long AllocationSlack = 64 * 1024;

    private string _dir = null!;

    [SetUp] public void SetUp() => _dir = FuzzRun.NewScratchDir();
    [TearDown] public void TearDown() => Directory.Delete(_dir, true);

    /// <summary>Valid files to mutate: every dtype with metadata, float types, small SPMs, the reference SPMs.</summary>
    internal static List<byte[]> Seeds(string dir)
    {
        var rng = new SeededRandom(99);
        var seeds = new List<byte[]>();
        string P(string n) => Path.Combine(dir, n);

        var entries = new List<SafeTensorEntry>();
        foreach (var dt in Enum.GetValues<SafeTensorDType>())
        {
            var bytes = new byte[3 * SafeTensorDTypes.SizeOf(dt)];
            for (int i = 0; i < bytes.Length; i++) bytes[i] = (byte)rng.NextInt(0, 256);
            entries.Add(new SafeTensorEntry("t_" + SafeTensorDTypes.HeaderName(dt), dt, new long[] { 3 }, bytes));
        }
        entries.Add(new SafeTensorEntry("scalar", SafeTensorDType.F32, Array.Empty<long>(), new byte[4]));
        entries.Add(new SafeTensorEntry("empty", SafeTensorDType.F32, new long[] { 0, 4 }, Array.Empty<byte>()));
        SafeTensorsWriter.Write(P("all.safetensors"), entries, new Dictionary<string, string> { ["format"] = "pt", ["note"] = "seed" });
        seeds.Add(File.ReadAllBytes(P("all.safetensors")));

        var floats = new FloatTensor(new[] { 2, 3 }, new[] { 1f, -2f, 0.5f, 3f, 1e-3f, 100f });
        foreach (var dt in new[] { SafeTensorDType.F16, SafeTensorDType.BF16, SafeTensorDType.F64 })
        {
            SafeTensorsWriter.WriteFloat(P($"{dt}.safetensors"), new Dictionary<string, FloatTensor> { ["w"] = floats, ["b"] = new FloatTensor(new[] { 3 }, new[] { 1f, 2f, 3f }) }, dtype: dt);
            seeds.Add(File.ReadAllBytes(P($"{dt}.safetensors")));
        }

        foreach (var (rank, conv, dt) in new[] { (1, false, SafeTensorDType.F32), (2, true, SafeTensorDType.F32), (3, false, SafeTensorDType.F16) })
        {
            var ms = new List<Membrane>();
            for (int k = 0; k < 3; k++)
            {
                var down = conv && k == 0 ? new FloatTensor(rank, 4, 3, 3) : new FloatTensor(rank, 5);
                var up = conv && k == 0 ? new FloatTensor(6, rank, 1, 1) : new FloatTensor(6, rank);
                rng.FillGaussian(down.Span);
                rng.FillGaussian(up.Span);
                ms.Add(new Membrane(SpmKeys.KeyFor($"down_blocks.0.attentions.{k}.transformer_blocks.0.attn2.to_k"), down, up, rank / 2f));
            }
            var adapter = new SpmAdapter(new SpmConfig(new[] { "cat", "van gogh" }, rank, rank / 2f, new Dictionary<string, string> { ["surrogate"] = "" }), ms);
            var p = P($"spm{rank}.safetensors");
            SpmFile.Save(p, adapter, dtype: dt);
            seeds.Add(File.ReadAllBytes(p));
        }
        seeds.Add(File.ReadAllBytes(Path.Combine(TestPaths.Reference("attn2-rank4"), "spm.safetensors")));
        seeds.Add(File.ReadAllBytes(Path.Combine(TestPaths.Reference("all-layers"), "spm.safetensors")));
        return seeds;
    }

    /// <summary>Picks a seed, preferring the small ones (the large reference files mostly add data bytes).</summary>
    internal static byte[] Pick(List<byte[]> seeds, SeededRandom rng)
        => rng.NextInt(0, 20) == 0 ? seeds[seeds.Count - 1 - rng.NextInt(0, 2)] : seeds[rng.NextInt(0, seeds.Count - 2)];

    [Test]
    public void MutatedFilesFailOnlyWithFormatErrorsWithinBoundedMemoryAndTime()
    {
        var seeds = Seeds(_dir);
        foreach (var s in seeds) Assert.That(() => SafeTensorsFile.Open(WriteCase(s)).Dispose(), Throws.Nothing, "seeds are valid");
        int cases = FuzzRun.Cases();
        var rng = new SeededRandom(FuzzRun.Seed(20261126));
        var mutator = new FileMutator(rng);
        var run = new FuzzRun();
        var sw = new Stopwatch();
        for (int i = 0; i < cases; i++)
        {
            var bytes = mutator.Mutate(Pick(seeds, rng));
            var path = WriteCase(bytes);
            run.StartCase();
            sw.Restart();
            long before = GC.GetAllocatedBytesForCurrentThread();
            SafeTensorsFile? file = null;
            try
            {
                file = SafeTensorsFile.Open(path);
                foreach (var t in file.Tensors) _ = file.GetBytes(t.Name).Length;
                run.Accepted++;
            }
            catch (SpmFormatException ex)
            {
                run.Rejected++;
                if (!ex.Message.Contains(path)) run.Fail(i, mutator.LastDescription, $"message does not name the file: {ex.Message}");
                if (ex.Key is null) run.Fail(i, mutator.LastDescription, $"no key named: {ex.Message}");
            }
            catch (Exception ex)
            {
                run.Fail(i, mutator.LastDescription, $"{ex.GetType().Name}: {ex.Message}");
                FuzzRun.Keep(path, i);
            }
            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            sw.Stop();
            var cpu = run.CaseCpu();
            run.Record(allocated, bytes.Length, sw.Elapsed, cpu);
            if (allocated > bytes.Length + AllocationSlack) { run.Fail(i, mutator.LastDescription, $"allocated {allocated} B for a {bytes.Length}-byte file"); FuzzRun.Keep(path, i); }
            if (cpu > FuzzRun.CaseCpuLimit) run.Fail(i, mutator.LastDescription, $"used {cpu} of CPU ({sw.Elapsed} wall)");

            // Whatever was accepted must also convert without surprises.
            if (file is not null)
            {
                try
                {
                    foreach (var t in file.Tensors) if (SafeTensorDTypes.IsFloat(t.DType)) file.ReadFloat(t.Name);
                }
                catch (SpmFormatException ex) when (ex.Message.Contains(path) && ex.Key is not null)
                {
                    // Valid safetensors that a FloatTensor cannot hold (e.g. a [0, 2^32] shape): a clean refusal.
                }
                catch (Exception ex) { run.Fail(i, mutator.LastDescription, $"accepted file failed to convert: {ex.GetType().Name}: {ex.Message}"); }
                file.Dispose();
            }
        }
        TestContext.Out.WriteLine(run.Summary("safetensors fuzz", cases));
        Assert.That(run.Failures, Is.Empty, string.Join("\n", run.Failures));
        Assert.That(run.Rejected, Is.GreaterThan(cases / 2), "the mutations must mostly produce invalid files, or the fuzz tests nothing");
        Assert.That(run.Accepted, Is.GreaterThan(0), "some mutations (data bit flips) keep files valid");
    }

    private string WriteCase(byte[] bytes)
    {
        var path = Path.Combine(_dir, "case.safetensors");
        File.WriteAllBytes(path, bytes);
        return path;
    }
}

/// <summary>Hand-made hostile files whose cost could scale with something other than the file.</summary>
[NonParallelizable]
public class SafeTensorsHostileAllocationTests
{
    private string _dir = null!;

    [SetUp] public void SetUp() => _dir = FuzzRun.NewScratchDir();
    [TearDown] public void TearDown() => Directory.Delete(_dir, true);

    private long AllocatedByOpen(byte[] bytes, out Exception? error)
    {
        var path = Path.Combine(_dir, "h.safetensors");
        File.WriteAllBytes(path, bytes);
        SafeTensorsFile.Open(Path.Combine(TestPaths.Reference("attn2-rank4"), "spm.safetensors")).Dispose(); // warm up
        error = null;
        long before = GC.GetAllocatedBytesForCurrentThread();
        try { SafeTensorsFile.Open(path).Dispose(); }
        catch (Exception ex) { error = ex; }
        return GC.GetAllocatedBytesForCurrentThread() - before;
    }

    [Test]
    public void DeclaredSizesNeverDriveAllocation()
    {
        // 1 TiB declared, 4 TiB shape, deep nesting, a near-2^64 header length: all tiny files.
        var cases = new[]
        {
            SafeTensors.SafeTensorsTestFiles.Raw("{\"t\":{\"dtype\":\"F32\",\"shape\":[274877906944],\"data_offsets\":[0,1099511627776]}}", new byte[8]),
            SafeTensors.SafeTensorsTestFiles.Raw("{\"t\":{\"dtype\":\"F64\",\"shape\":[1099511627776,1099511627776],\"data_offsets\":[0,8]}}", new byte[8]),
            SafeTensors.SafeTensorsTestFiles.Raw(new string('[', 100_000) + new string(']', 100_000), new byte[8]),
            SafeTensors.SafeTensorsTestFiles.Raw("{" + string.Concat(Enumerable.Repeat("\"a\":{\"b\":", 50_000)) + "1" + new string('}', 100_000), new byte[8]),
        };
        foreach (var bytes in cases)
        {
            long allocated = AllocatedByOpen(bytes, out var error);
            Assert.That(error, Is.TypeOf<SpmFormatException>());
            Assert.That(allocated, Is.LessThan(bytes.Length + SafeTensorsFuzzTests.AllocationSlack), error!.Message);
        }
        var huge = new byte[16];
        BitConverter.TryWriteBytes(huge, ulong.MaxValue - 3);
        Assert.That(AllocatedByOpen(huge, out var e2), Is.LessThan(SafeTensorsFuzzTests.AllocationSlack));
        Assert.That(e2, Is.TypeOf<SpmFormatException>());
    }

    [Test]
    public void ThousandsOfEmptyTensorsCostAFewTimesTheHeader()
    {
        // The degenerate valid file: 20,000 zero-size tensors. Parsed entries cost more than their JSON text, so the
        // bound here is a small multiple of the header (documented on SafeTensorsFile), not 1x the file.
        var sb = new System.Text.StringBuilder("{");
        for (int i = 0; i < 20_000; i++) sb.Append(i == 0 ? "" : ",").Append($"\"t{i}\":{{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}");
        sb.Append('}');
        var bytes = SafeTensors.SafeTensorsTestFiles.Raw(sb.ToString(), Array.Empty<byte>());
        long allocated = AllocatedByOpen(bytes, out var error);
        Assert.That(error, Is.Null);
        TestContext.Out.WriteLine($"20,000 empty tensors: file {bytes.Length} B, open allocated {allocated} B ({(double)allocated / bytes.Length:F2}x)");
        Assert.That(allocated, Is.LessThan(4L * bytes.Length + SafeTensorsFuzzTests.AllocationSlack));
    }
}
