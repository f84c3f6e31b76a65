using System.Diagnostics;
using Google.Protobuf;
using Spm.Core;
using Spm.Core.Randomness;
using Spm.Diffusion.Onnx;
using Spm.Diffusion.Onnx.Proto;
using Spm.Tests.Common;

namespace Spm.Diffusion.Tests.Onnx;

/// <summary>
/// Mutation fuzzing of ONNX loading: truncations, bit flips, overwritten and inserted runs, and hostile external-data
/// references. Every case must either load (and then read its initializers and list its layers) or fail with an
/// <see cref="SpmFormatException"/> naming the file, within bounded allocation and time.
/// </summary>
[TestFixture]
public class OnnxFuzzTests
{
    /// <summary>Cases per run; SPM_FUZZ_SCALE multiplies them for long runs.</summary>
    private static int Scale => int.TryParse(Environment.GetEnvironmentVariable("SPM_FUZZ_SCALE"), out var s) && s > 0 ? s : 1;

    [Test]
    public void MutatedSmallModel_OnlyFormatErrors()
    {
        var dir = TestPaths.NewTempDir("spm-fuzz");
        var file = OnnxTestModels.WriteLinearModel(dir, out _);
        var stats = Fuzz(dir, File.ReadAllBytes(file), 10_000 * Scale, seed: 11, readLimit: int.MaxValue);
        TestContext.Out.WriteLine(stats);
        Assert.That(stats.Loaded, Is.GreaterThan(0), "some mutants must still parse, or the fuzzer only tests the parser's front door");
        Assert.That(stats.Rejected, Is.GreaterThan(0));
    }

    [Test]
    public void MutatedFixtureUnet_OnlyFormatErrors()
    {
        var dir = OnnxTestModels.CopyFixtureUnet();
        var stats = Fuzz(dir, File.ReadAllBytes(Path.Combine(dir, "model.onnx")), 150 * Scale, seed: 12, readLimit: 4);
        TestContext.Out.WriteLine(stats);
        Assert.That(stats.Loaded, Is.GreaterThan(0));
    }

    [Test]
    public void RandomExternalReferences_OnlyFormatErrors_AndNeverReadOutsideTheFolder()
    {
        var dir = TestPaths.NewTempDir("spm-fuzz-ext");
        var file = OnnxTestModels.WriteLinearModel(dir, out var weight);
        var outside = TestPaths.NewTempDir("spm-fuzz-outside");
        // A decoy outside the folder whose content differs from every legitimate read.
        File.WriteAllBytes(Path.Combine(outside, "decoy.bin"), Enumerable.Repeat((byte)0x7f, 4096).ToArray());
        File.CreateSymbolicLink(Path.Combine(dir, "link-out"), Path.Combine(outside, "decoy.bin"));
        Directory.CreateSymbolicLink(Path.Combine(dir, "dir-out"), outside);
        var baseProto = ModelProto.Parser.ParseFrom(File.ReadAllBytes(file));
        string[] locations =
        [
            "weights.bin", "./weights.bin", "link-out", "dir-out/decoy.bin", "../" + Path.GetFileName(outside) + "/decoy.bin",
            Path.Combine(outside, "decoy.bin"), "/dev/zero", "/proc/self/mem", "nonexistent.bin", "", ".", "dir-out", "a/../weights.bin",
            "weights.bin\0", "C:/x", "\\\\?\\C:\\x", "dir-out/../weights.bin", new string('a', 5000),
        ];
        string[] numbers = ["0", "16", "48", "64", "-1", "65", "18446744073709551615", "9223372036854775807", "1e3", " 16", "+16", "0x10", ""];
        var rng = new SeededRandom(13);
        int rejected = 0, ok = 0;
        for (int i = 0; i < 5000 * Scale; i++)
        {
            var proto = baseProto.Clone();
            var w = proto.Graph.Initializer.Single(t => t.Name == "onnx::MatMul_7");
            w.ExternalData.Clear();
            int entries = rng.NextInt(0, 5);
            for (int e = 0; e < entries; e++)
            {
                var key = new[] { "location", "offset", "length", "checksum", "bogus" }[rng.NextInt(0, 5)];
                var value = key == "location" ? locations[rng.NextInt(0, locations.Length)] : numbers[rng.NextInt(0, numbers.Length)];
                w.ExternalData.Add(new StringStringEntryProto { Key = key, Value = value });
            }
            try
            {
                var model = OnnxModel.Parse(proto.ToByteArray(), file);
                var data = model.ReadFloat("onnx::MatMul_7").Data;
                Assert.That(data, Has.None.EqualTo(BitConverter.ToSingle([0x7f, 0x7f, 0x7f, 0x7f])), $"case {i}: read the decoy outside the folder");
                ok++;
            }
            catch (SpmFormatException ex)
            {
                Assert.That(ex.Message, Does.Contain(file), $"case {i}");
                rejected++;
            }
        }
        TestContext.Out.WriteLine($"external references: {ok} read, {rejected} rejected");
        Assert.That(ok, Is.GreaterThan(0));
        Assert.That(rejected, Is.GreaterThan(0));
        _ = weight;
    }

    [Test]
    public void StructurallyMutatedFixtureUnet_OnlyFormatErrors()
    {
        // Byte mutations of a large graph mostly break UTF-8 or framing; these mutate fields of a parsed graph
        // (shapes, types, attributes, wiring, external references) so the layer finder and readers see odd graphs.
        var dir = OnnxTestModels.CopyFixtureUnet();
        var file = Path.Combine(dir, "model.onnx");
        var baseProto = ModelProto.Parser.ParseFrom(File.ReadAllBytes(file));
        var rng = new SeededRandom(14);
        int loaded = 0, rejected = 0;
        long[] odd = [0, -1, 1, 3, 64, 1L << 31, 1L << 40, long.MaxValue];
        for (int i = 0; i < 150 * Scale; i++)
        {
            var proto = baseProto.Clone();
            var g = proto.Graph;
            for (int op = rng.NextInt(1, 4); op > 0; op--)
            {
                var init = g.Initializer[rng.NextInt(0, g.Initializer.Count)];
                var node = g.Node[rng.NextInt(0, g.Node.Count)];
                switch (rng.NextInt(0, 9))
                {
                    case 0: if (init.Dims.Count > 0) init.Dims[rng.NextInt(0, init.Dims.Count)] = odd[rng.NextInt(0, odd.Length)]; break;
                    case 1: init.Dims.Add(odd[rng.NextInt(0, odd.Length)]); break;
                    case 2: init.DataType = rng.NextInt(0, 25); break;
                    case 3: init.RawData = ByteString.CopyFrom(new byte[rng.NextInt(0, 64)]); init.DataLocation = TensorProto.Types.DataLocation.Default; init.ExternalData.Clear(); break;
                    case 4:
                        foreach (var e in init.ExternalData)
                            if (e.Key != "location" && rng.NextInt(0, 2) == 0) e.Value = odd[rng.NextInt(0, odd.Length)].ToString();
                        break;
                    case 5: if (node.Output.Count > 0) node.Output.RemoveAt(0); else node.Input.Clear(); break;
                    case 6: if (node.Input.Count > 0) node.Input[rng.NextInt(0, node.Input.Count)] = g.Initializer[rng.NextInt(0, g.Initializer.Count)].Name; break;
                    case 7:
                        foreach (var a in node.Attribute)
                        {
                            a.I = odd[rng.NextInt(0, odd.Length)] * (rng.NextInt(0, 2) == 0 ? 1 : -1);
                            for (int k = 0; k < a.Ints.Count; k++) a.Ints[k] = odd[rng.NextInt(0, odd.Length)];
                            if (rng.NextInt(0, 3) == 0) a.Ints.Add(7);
                            if (a.Name == "auto_pad") a.S = ByteString.CopyFromUtf8(new[] { "SAME_UPPER", "SAME_LOWER", "VALID", "BOGUS" }[rng.NextInt(0, 4)]);
                        }
                        break;
                    default: node.Name = new[] { "", "/", "//MatMul", "/a/MatMul", node.Name + "_1", "/x/attentions.0/Conv" }[rng.NextInt(0, 6)]; break;
                }
            }
            try
            {
                var model = OnnxModel.FromProto(proto, dir, file);
                foreach (var init in model.Graph.Initializer.Take(8))
                {
                    try { model.ReadBytes(init.Name); }
                    catch (SpmFormatException ex) { Assert.That(ex.Message, Does.Contain(file), $"case {i}"); }
                }
                try { AdaptableLayerFinder.FindAll(model); }
                catch (SpmFormatException ex) { Assert.That(ex.Message, Does.Contain(file), $"case {i}"); }
                loaded++;
            }
            catch (SpmFormatException ex)
            {
                Assert.That(ex.Message, Does.Contain(file), $"case {i}");
                rejected++;
            }
            catch (Exception ex)
            {
                Assert.Fail($"case {i} threw {ex.GetType().Name}: {ex.Message}\n{ex.StackTrace}");
            }
        }
        TestContext.Out.WriteLine($"structural: {loaded} loaded, {rejected} rejected");
        Assert.That(loaded, Is.GreaterThan(0));
        Assert.That(rejected, Is.GreaterThan(0));
    }

    internal sealed record FuzzStats(int Cases, int Loaded, int Rejected, long MaxAllocated, double MaxMilliseconds)
    {
        public override string ToString() =>
            $"{Cases} cases: {Loaded} loaded, {Rejected} rejected; max allocation {MaxAllocated / 1024} KiB, slowest case {MaxMilliseconds:0} ms";
    }

    /// <summary>Runs <paramref name="cases"/> mutants of <paramref name="original"/> as <c>model.onnx</c> in <paramref name="dir"/>.</summary>
    internal static FuzzStats Fuzz(string dir, byte[] original, int cases, ulong seed, int readLimit)
    {
        var file = Path.Combine(dir, "model.onnx");
        long dataBytes = Directory.GetFiles(dir).Where(f => f != file).Sum(f => new FileInfo(f).Length);
        var rng = new SeededRandom(seed);
        int loaded = 0, rejected = 0;
        long maxAlloc = 0;
        double maxMs = 0;
        for (int i = 0; i < cases; i++)
        {
            var mutant = Mutate(original, rng);
            long before = GC.GetAllocatedBytesForCurrentThread();
            var sw = Stopwatch.StartNew();
            try
            {
                // The same path as Load after File.ReadAllBytes, without a disk write per case.
                var model = OnnxModel.Parse(mutant, file);
                foreach (var init in model.Graph.Initializer.Take(readLimit))
                {
                    try
                    {
                        if (OnnxDataTypes.IsFloatingPoint(init.DataType)) model.ReadFloat(init.Name);
                        else model.ReadBytes(init.Name);
                    }
                    catch (SpmFormatException ex) { Assert.That(ex.Message, Does.Contain(file), $"case {i}"); }
                }
                try { AdaptableLayerFinder.FindAll(model); }
                catch (SpmFormatException ex) { Assert.That(ex.Message, Does.Contain(file), $"case {i}"); }
                _ = model.Inputs; _ = model.Outputs; _ = model.ExternalDataBytes;
                loaded++;
            }
            catch (SpmFormatException ex)
            {
                Assert.That(ex.Message, Does.Contain(file), $"case {i}");
                rejected++;
            }
            catch (Exception ex)
            {
                File.WriteAllBytes(Path.Combine(dir, $"crash-{i}.onnx"), mutant);
                Assert.Fail($"case {i} (seed {seed}) threw {ex.GetType().Name}: {ex.Message}\n{ex.StackTrace}");
            }
            sw.Stop();
            long alloc = GC.GetAllocatedBytesForCurrentThread() - before;
            maxAlloc = Math.Max(maxAlloc, alloc);
            maxMs = Math.Max(maxMs, sw.Elapsed.TotalMilliseconds);
            // Parsed objects cost a small multiple of the file; data reads cost at most the data files.
            Assert.That(alloc, Is.LessThan(32L * mutant.Length + 2 * dataBytes + (1 << 20)), $"case {i}: allocation not bounded by the input size");
            Assert.That(sw.Elapsed, Is.LessThan(TimeSpan.FromSeconds(20)), $"case {i}: hang guard");
        }
        return new FuzzStats(cases, loaded, rejected, maxAlloc, maxMs);
    }

    private static byte[] Mutate(byte[] original, SeededRandom rng)
    {
        var bytes = (byte[])original.Clone();
        int ops = rng.NextInt(1, 3);
        for (int op = 0; op < ops; op++)
        {
            if (bytes.Length == 0) break;
            switch (rng.NextInt(0, 6))
            {
                case 0: // truncate
                    Array.Resize(ref bytes, rng.NextInt(0, bytes.Length));
                    break;
                case 1: // flip bits
                    for (int k = rng.NextInt(1, 9); k > 0; k--)
                        bytes[rng.NextInt(0, bytes.Length)] ^= (byte)(1 << rng.NextInt(0, 8));
                    break;
                case 2: // overwrite a run with random bytes
                {
                    int at = rng.NextInt(0, bytes.Length), len = Math.Min(rng.NextInt(1, 17), bytes.Length - at);
                    for (int k = 0; k < len; k++) bytes[at + k] = (byte)rng.NextInt(0, 256);
                    break;
                }
                case 3: // insert random bytes
                {
                    int at = rng.NextInt(0, bytes.Length + 1), len = rng.NextInt(1, 9);
                    var ins = new byte[len];
                    for (int k = 0; k < len; k++) ins[k] = (byte)rng.NextInt(0, 256);
                    bytes = [.. bytes.AsSpan(0, at), .. ins, .. bytes.AsSpan(at)];
                    break;
                }
                case 4: // huge varint (length prefixes, dims, offsets)
                {
                    int at = rng.NextInt(0, bytes.Length), len = Math.Min(rng.NextInt(2, 10), bytes.Length - at);
                    for (int k = 0; k < len; k++) bytes[at + k] = k == len - 1 ? (byte)rng.NextInt(0, 128) : (byte)(0x80 | rng.NextInt(0, 128));
                    break;
                }
                default: // duplicate a chunk (repeated fields, duplicate names)
                {
                    int at = rng.NextInt(0, bytes.Length), len = Math.Min(rng.NextInt(1, 256), bytes.Length - at);
                    int to = rng.NextInt(0, bytes.Length + 1);
                    bytes = [.. bytes.AsSpan(0, to), .. bytes.AsSpan(at, len), .. bytes.AsSpan(to)];
                    break;
                }
            }
        }
        return bytes;
    }
}
