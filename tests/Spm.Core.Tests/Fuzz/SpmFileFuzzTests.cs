using System.Diagnostics;
using Spm.Core.Membranes;
using Spm.Core.Randomness;
using Spm.Core.SafeTensors;
using Spm.Core.Tensors;
using Spm.Tests.Common;

namespace Spm.Core.Tests.Fuzz;

/// <summary>
/// Mutated SPM files: valid safetensors containers with damaged SPM metadata and keys (missing or hostile
/// <c>prompts</c>/<c>rank</c>/<c>alpha</c>, renamed, dropped, reshaped, retyped or non-finite tensors, unknown
/// tensors), plus byte-level damage. Loading either succeeds or raises <see cref="SpmFormatException"/> naming the
/// file; memory stays bounded (float32 conversion of an F16 file doubles its weights, hence the factor 2).
/// </summary>
[NonParallelizable]
public class SpmFileFuzzTests
{
    private const double AllocationFactor = 2.0;
    // Beyond the safetensors parse: the adapter's lists and dictionaries, LINQ in validation, module-path index, exception.
    private const long AllocationSlack = 128 * 1024;

    private string _dir = null!;

    [SetUp] public void SetUp() => _dir = FuzzRun.NewScratchDir();
    [TearDown] public void TearDown() => Directory.Delete(_dir, true);

    private static readonly string[] HostileValues =
    {
        "", " ", "abc", "-1", "0", "1", "4", "1.0", "1e309", "-1e309", "NaN", "Infinity", "-Infinity", "2147483648", " 4 ", "1,5", "0x10",
        ",,,", " , ", "\u0000", "é,ü", new string('9', 400), new string('a', 10_000), "1e-45", "3.4028235E+38",
    };

    private sealed record Spec(List<SafeTensorEntry> Entries, Dictionary<string, string> Metadata);

    private static Spec ValidSpec(SeededRandom rng)
    {
        int rank = 1 + rng.NextInt(0, 4);
        int count = 1 + rng.NextInt(0, 4);
        var ms = new List<Membrane>();
        for (int k = 0; k < count; k++)
        {
            bool conv = rng.NextInt(0, 3) == 0;
            int inF = 1 + rng.NextInt(0, 8), outF = 1 + rng.NextInt(0, 8), kh = 1 + rng.NextInt(0, 3);
            var down = conv ? new FloatTensor(rank, inF, kh, kh) : new FloatTensor(rank, inF);
            var up = conv ? new FloatTensor(outF, rank, 1, 1) : new FloatTensor(outF, rank);
            rng.FillGaussian(down.Span);
            rng.FillGaussian(up.Span);
            ms.Add(new Membrane(SpmKeys.KeyFor($"up_blocks.{k}.attentions.0.transformer_blocks.0.ff.net.2"), down, up, rng.NextInt(0, 3)));
        }
        var dtype = new[] { SafeTensorDType.F32, SafeTensorDType.F32, SafeTensorDType.F16, SafeTensorDType.BF16 }[rng.NextInt(0, 4)];
        var entries = new List<SafeTensorEntry>();
        foreach (var m in ms)
        {
            entries.Add(SafeTensorEntry.FromFloat(m.Key + SpmKeys.DownSuffix, m.Down, dtype));
            entries.Add(SafeTensorEntry.FromFloat(m.Key + SpmKeys.UpSuffix, m.Up, dtype));
            entries.Add(SafeTensorEntry.FromFloat(m.Key + SpmKeys.AlphaSuffix, new FloatTensor(Array.Empty<int>(), new[] { m.Alpha })));
        }
        var md = new SpmConfig(new[] { "cat", "dog" }, rank, 1f, new Dictionary<string, string> { ["base"] = "sd15" }).ToMetadata();
        return new Spec(entries, md);
    }

    private static string MutateSpec(Spec spec, SeededRandom rng)
    {
        var e = spec.Entries;
        var md = spec.Metadata;
        int kind = rng.NextInt(0, 9);
        int i = rng.NextInt(0, e.Count);
        var t = e[i];
        switch (kind)
        {
            case 0:
            {
                var field = new[] { "prompts", "rank", "alpha" }[rng.NextInt(0, 3)];
                md.Remove(field);
                return $"remove metadata {field}";
            }
            case 1:
            {
                var field = new[] { "prompts", "rank", "alpha", "base" }[rng.NextInt(0, 4)];
                md[field] = HostileValues[rng.NextInt(0, HostileValues.Length)];
                return $"metadata {field}='{Short(md[field])}'";
            }
            case 2:
            {
                var suffixes = new[] { ".lora_down.bias", ".lora_up", ".alpha.x", ".weight", "", SpmKeys.DownSuffix, SpmKeys.UpSuffix, SpmKeys.AlphaSuffix };
                SpmKeys.TrySplitTensorName(t.Name, out var key, out _);
                var keys = new[] { key, "", "lora_unet_", "lora_te_text_model_encoder_layers_0_mlp_fc1", key + "_x", "lora_unet_down_blocks_0_attentions_0_proj_in" };
                var name = keys[rng.NextInt(0, keys.Length)] + suffixes[rng.NextInt(0, suffixes.Length)];
                if (name.Length == 0 || name == "__metadata__" || e.Any(x => x.Name == name)) return "noop";
                e[i] = t with { Name = name };
                return $"rename {t.Name} -> {name}";
            }
            case 3:
                e.RemoveAt(i);
                return $"drop {t.Name}";
            case 4:
            {
                // Same element count, different shape: rank/in swapped, flattened, conv-ified, 5-D, scalar.
                long n = t.Shape.Aggregate(1L, (a, b) => a * b);
                var shapes = new List<long[]> { t.Shape.Reverse().ToArray(), new[] { n }, new[] { n, 1, 1, 1 }, new[] { 1, n }, new[] { 1L, 1, 1, 1, n }, t.Shape.Concat(new long[] { 1, 1 }).ToArray() };
                if (n == 1) shapes.Add(Array.Empty<long>());
                var s = shapes[rng.NextInt(0, shapes.Count)];
                e[i] = t with { Shape = s };
                return $"reshape {t.Name} [{string.Join(",", s)}]";
            }
            case 5:
            {
                // Reinterpret the bytes as another dtype of the same size, or as half the count of a wider one.
                int size = SafeTensorDTypes.SizeOf(t.DType);
                var same = Enum.GetValues<SafeTensorDType>().Where(d => SafeTensorDTypes.SizeOf(d) == size && d != t.DType).ToArray();
                e[i] = t with { DType = same[rng.NextInt(0, same.Length)] };
                return $"retype {t.Name} {e[i].DType}";
            }
            case 6:
            {
                var data = t.Data.ToArray();
                if (data.Length < 2) return "noop";
                int at = rng.NextInt(0, data.Length / 2) * 2;
                if (t.DType == SafeTensorDType.F32 && data.Length >= 4) { at = rng.NextInt(0, data.Length / 4) * 4; BitConverter.TryWriteBytes(data.AsSpan(at), new[] { float.NaN, float.PositiveInfinity, float.NegativeInfinity }[rng.NextInt(0, 3)]); }
                else { data[at] = 0x00; data[at + 1] = 0xFF; data[at] |= (byte)(t.DType == SafeTensorDType.F16 ? 0x7C : 0x80); data[at + 1] = 0x7F; }
                e[i] = t with { Data = data };
                return $"non-finite in {t.Name}";
            }
            case 7:
            {
                var name = t.Name + (rng.NextInt(0, 2) == 0 ? ".extra" : "");
                if (e.Any(x => x.Name == name)) name = "unknown_tensor";
                if (e.Any(x => x.Name == name)) return "noop";
                e.Add(new SafeTensorEntry(name, SafeTensorDType.F32, new long[] { 2 }, new byte[8]));
                return $"add {name}";
            }
            default:
            {
                // Alpha with two values or an integer alpha.
                var alpha = e.FindIndex(x => x.Name.EndsWith(SpmKeys.AlphaSuffix, StringComparison.Ordinal));
                if (alpha < 0) return "noop";
                e[alpha] = rng.NextInt(0, 2) == 0
                    ? e[alpha] with { DType = SafeTensorDType.F32, Shape = new long[] { 2 }, Data = new byte[8] }
                    : e[alpha] with { DType = SafeTensorDTypes.SizeOf(e[alpha].DType) switch { 1 => SafeTensorDType.U8, 2 => SafeTensorDType.I16, 4 => SafeTensorDType.I32, _ => SafeTensorDType.I64 } };
                return $"alpha {e[alpha].Shape.Length}-D {e[alpha].DType}";
            }
        }
    }

    private static string Short(string s) => s.Length > 20 ? s[..20] + "..." : s;

    [Test]
    public void MutatedSpmFilesFailOnlyWithFormatErrors()
    {
        int cases = FuzzRun.Cases();
        var rng = new SeededRandom(FuzzRun.Seed(20261127));
        var bytesMutator = new FileMutator(rng);
        var run = new FuzzRun();
        var path = Path.Combine(_dir, "case.safetensors");
        var modulePaths = Enumerable.Range(0, 4).Select(k => $"up_blocks.{k}.attentions.0.transformer_blocks.0.ff.net.2").ToList();
        var sw = new Stopwatch();
        int skipped = 0;
        var reference = File.ReadAllBytes(Path.Combine(TestPaths.Reference("attn2-rank4"), "spm.safetensors"));
        for (int i = 0; i < cases; i++)
        {
            string description;
            var spec = ValidSpec(rng);
            int semantic = 1 + rng.NextInt(0, 3);
            var what = new List<string>();
            for (int k = 0; k < semantic; k++) what.Add(MutateSpec(spec, rng));
            try
            {
                using var fs = new FileStream(path, FileMode.Create, FileAccess.Write);
                SafeTensorsWriter.Write(fs, spec.Entries, spec.Metadata);
            }
            catch (ArgumentException)
            {
                // The generator built something the writer refuses (e.g. two mutations combined into a duplicate
                // name): not a case for the reader. Counted, and kept rare by the assertion below.
                skipped++;
                continue;
            }
            description = string.Join("; ", what);
            // One case in five also gets byte-level damage (of this file or of a reference SPM).
            if (rng.NextInt(0, 5) == 0)
            {
                var bytes = bytesMutator.Mutate(rng.NextInt(0, 10) == 0 ? reference : File.ReadAllBytes(path));
                File.WriteAllBytes(path, bytes);
                description += "; bytes: " + bytesMutator.LastDescription;
            }
            long length = new FileInfo(path).Length;
            var options = new SpmLoadOptions
            {
                ModulePaths = rng.NextInt(0, 2) == 0 ? modulePaths : null,
                AllowNonFinite = rng.NextInt(0, 4) == 0,
                IgnoreUnknownTensors = rng.NextInt(0, 4) == 0,
            };
            run.StartCase();
            sw.Restart();
            long before = GC.GetAllocatedBytesForCurrentThread();
            try
            {
                var adapter = SpmFile.Load(path, options);
                run.Accepted++;
                foreach (var m in adapter.Membranes)
                {
                    if (Membrane.ShapeProblem(m.Down.Shape, m.Up.Shape) is { } p) run.Fail(i, description, $"accepted an inconsistent membrane: {p}");
                    if (!options.AllowNonFinite && (m.Down.Data.Any(v => !float.IsFinite(v)) || m.Up.Data.Any(v => !float.IsFinite(v)) || !float.IsFinite(m.Alpha)))
                        run.Fail(i, description, "accepted non-finite weights");
                }
            }
            catch (SpmFormatException ex)
            {
                run.Rejected++;
                if (!ex.Message.Contains(path)) run.Fail(i, description, $"message does not name the file: {ex.Message}");
            }
            catch (Exception ex)
            {
                run.Fail(i, description, $"{ex.GetType().Name}: {ex.Message}");
                FuzzRun.Keep(path, i);
            }
            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            sw.Stop();
            var cpu = run.CaseCpu();
            run.Record(allocated, length, sw.Elapsed, cpu);
            if (allocated > AllocationFactor * length + AllocationSlack) { run.Fail(i, description, $"allocated {allocated} B for a {length}-byte file"); FuzzRun.Keep(path, i); }
            if (cpu > FuzzRun.CaseCpuLimit) run.Fail(i, description, $"used {cpu} of CPU ({sw.Elapsed} wall)");
        }
        TestContext.Out.WriteLine(run.Summary("SPM fuzz", cases) + $", {skipped} generator cases skipped");
        Assert.That(skipped, Is.LessThan(cases / 100 + 1), "the generator must rarely build unwritable files");
        Assert.That(run.Failures, Is.Empty, string.Join("\n", run.Failures));
        Assert.That(run.Rejected, Is.GreaterThan(cases / 2));
        Assert.That(run.Accepted, Is.GreaterThan(0));
    }
}
