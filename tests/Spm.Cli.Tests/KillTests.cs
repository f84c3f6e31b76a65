using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using Spm.Core.Membranes;
using Spm.Core.Randomness;
using Spm.Core.SafeTensors;
using Spm.Tests.Common;

namespace Spm.Cli.Tests;

/// <summary>
/// SIGKILL at random moments of <c>spm bake</c> (a pipeline folder replacing an older bake) and of <c>spm train</c>
/// (checkpointing every iteration, an older output in place): afterwards every output is either the old one or a
/// complete new one, byte for byte where the expected bytes are known, and every file that exists loads.
/// CI runs <c>SPM_KILL_TRIALS</c> (default 3) trials; <c>scripts/kill-test.sh 50</c> runs the long version, which
/// also resumes every fifth killed training and compares the result with an uninterrupted run.
/// </summary>
[TestFixture]
[NonParallelizable] // spawns CPU-heavy processes
public class KillTests
{
    private const int TrainIterations = 8;
    private string _dir = "";

    [SetUp]
    public void SetUp() => _dir = TestPaths.NewTempDir("spm-kill");

    [TearDown]
    public void TearDown()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    private static int Trials => int.TryParse(Environment.GetEnvironmentVariable("SPM_KILL_TRIALS"), out var n) && n > 0 ? n : 3;

    private static ulong Seed => ulong.TryParse(Environment.GetEnvironmentVariable("SPM_KILL_SEED"), out var s) ? s : 8;

    private static string Spm(string name) => Path.Combine(TestPaths.Reference(name), "spm.safetensors");

    [Test]
    [Category(TestCategories.Slow)]
    public void SigkillDuringBakeAndTraining_NeverLeavesATornFile()
    {
        var rng = new SeededRandom(Seed);
        int trials = Trials;
        int bakeTrials = (trials + 1) / 2, trainTrials = trials - bakeTrials;
        var stats = new List<string>();

        // ---- spm bake: a pipeline folder baked at multiplier 2 replaces one baked at 0.5.
        var oldRef = Path.Combine(_dir, "bake-old");
        var newRef = Path.Combine(_dir, "bake-new");
        string[] BakeArgs(string outDir, string mult) =>
            ["bake", "--model", TestPaths.TinySd1, "--spm", Spm("attn2-rank4"), "--multiplier", mult, "--out", outDir, "--force"];
        Assert.That(Cli.Run(BakeArgs(oldRef, "0.5")).Code, Is.EqualTo(0));
        var sw = Stopwatch.StartNew();
        var newRun = Cli.Run(BakeArgs(newRef, "2"));
        double bakeSeconds = sw.Elapsed.TotalSeconds;
        Assert.That(newRun.Code, Is.EqualTo(0), newRun.Err);
        var oldFiles = Snapshot(oldRef);
        var newFiles = Snapshot(newRef);
        Assert.That(newFiles, Is.Not.EqualTo(oldFiles), "the two bakes must differ for the test to tell them apart");
        Assert.That(Snapshot(newRef), Is.EqualTo(newFiles));

        int bakeOld = 0, bakeNew = 0, bakeStaging = 0;
        var outDir = Path.Combine(_dir, "bake-out");
        for (int t = 0; t < bakeTrials; t++)
        {
            CopyTree(oldRef, outDir);
            // Uniform over the whole run in half the trials; in the other half near its end, where the folder is written.
            double delay = (rng.NextDouble() < 0.5 ? rng.NextDouble() : 0.6 + 0.45 * rng.NextDouble()) * bakeSeconds;
            using var run = Cli.Start(BakeArgs(outDir, "2"));
            bool killed = run.KillAfter(TimeSpan.FromSeconds(delay));
            Assert.That(Directory.Exists(outDir), Is.True, $"bake trial {t}: the output folder vanished (kill at {delay:F2} s)");
            var now = Snapshot(outDir);
            bool isOld = Same(now, oldFiles), isNew = Same(now, newFiles);
            Assert.That(isOld || isNew, Is.True, $"bake trial {t}: killed at {delay:F2} s, the folder is neither the old bake nor the new one");
            if (!killed) Assert.That(isNew, Is.True, $"bake trial {t}: finished but the output is not the new bake");
            if (isOld) bakeOld++; else bakeNew++;
            Log($"bake trial {t}: {(killed ? $"killed at {delay:F2} s" : "finished")}, folder is the {(isOld ? "old" : "new")} bake");
            bakeStaging += CleanLeftovers(_dir, ".bake-out.spm-");
        }
        stats.Add($"bake: {bakeTrials} trials, {bakeOld} left the old folder, {bakeNew} the new one, {bakeStaging} left a staging folder behind (killed mid-assembly)");

        // ---- spm train: checkpoint every iteration, an older SPM in place of the output.
        if (trainTrials > 0)
        {
            var output = Path.Combine(_dir, "t.safetensors");
            var checkpoint = output + ".checkpoint.safetensors";
            var log = output + ".loss.csv";
            var oldSpm = File.ReadAllBytes(Spm("all-layers"));
            string[] TrainArgs(params string[] extra) =>
                ["train", "--model", TestPaths.TinySd1, "--concept", "cat", "--iterations", TrainIterations.ToString(CultureInfo.InvariantCulture),
                 "--checkpoint-every", "1", "--resolution", "128", "--fixed-resolution", "--threads", "1", "--warmup", "2", "--lr", "1e-3",
                 "--seed", "5", "--out", output, .. extra];
            byte[]? uninterrupted = null;
            int ckptPresent = 0, ckptTemp = 0, outNew = 0, outOld = 0, resumed = 0;
            for (int t = 0; t < trainTrials; t++)
            {
                File.WriteAllBytes(output, oldSpm);
                if (File.Exists(checkpoint)) File.Delete(checkpoint);
                if (File.Exists(log)) File.Delete(log);
                using var run = Cli.Start(TrainArgs("--force"));
                // Kill near a checkpoint write: wait for the line of a random iteration, then a random part of
                // the next iteration, biased to its end (where the checkpoint is written) in half the trials.
                int k = rng.NextInt(1, TrainIterations);
                double frac = rng.NextDouble() < 0.5 ? rng.NextDouble() : 0.85 + 0.2 * rng.NextDouble();
                bool killed = run.KillAfterLine($"step {k}/", frac);

                if (File.Exists(checkpoint))
                {
                    ckptPresent++;
                    CheckCheckpoint(checkpoint, t);
                }
                Assert.That(File.Exists(output), Is.True, $"train trial {t}: the old output vanished");
                var bytes = File.ReadAllBytes(output);
                if (bytes.AsSpan().SequenceEqual(oldSpm))
                {
                    outOld++;
                    Assert.That(killed, Is.True, $"train trial {t}: finished but left the old output");
                }
                else
                {
                    outNew++;
                    var adapter = SpmFile.Load(output);
                    Assert.That(adapter.Membranes, Has.Count.EqualTo(72), $"train trial {t}");
                    Assert.That(File.Exists(checkpoint), Is.False, $"train trial {t}: a finished run removes its checkpoint");
                }
                if (File.Exists(log)) CheckLossLog(log, t);
                int temps = CleanLeftovers(_dir, ".t.safetensors");
                ckptTemp += temps;
                Log($"train trial {t}: {(killed ? $"killed {frac:F2} of an iteration after step {k}" : "finished")}, checkpoint {(File.Exists(checkpoint) ? "valid" : "absent")}, " +
                    $"output {(bytes.AsSpan().SequenceEqual(oldSpm) ? "old" : "new")}{(temps > 0 ? $", {temps} temp file(s) left (killed mid-write)" : "")}");

                // The long run: every fifth killed training is resumed and must end exactly as an uninterrupted run.
                if (trials >= 10 && t % 5 == 0 && killed && File.Exists(checkpoint))
                {
                    uninterrupted ??= Uninterrupted(TrainArgs);
                    var r = Cli.Run(TrainArgs("--resume"));
                    Assert.That(r.Code, Is.EqualTo(0), r.Err);
                    Assert.That(File.ReadAllBytes(output), Is.EqualTo(uninterrupted), $"train trial {t}: resumed run differs from the uninterrupted one");
                    resumed++;
                    Log($"train trial {t}: resumed, equal to the uninterrupted run");
                }
            }
            stats.Add($"train: {trainTrials} trials, checkpoint present and valid after {ckptPresent}, a checkpoint temp file left (killed mid-write) in {ckptTemp}, " +
                      $"output old {outOld} / new {outNew}, resumed to the uninterrupted file {resumed}");
        }
        foreach (var s in stats) Log(s);
    }

    /// <summary>Progress lines: to the test output, and appended to <c>SPM_KILL_LOG</c> when set (long runs).</summary>
    private static void Log(string line)
    {
        TestContext.Progress.WriteLine("kill test: " + line);
        var log = Environment.GetEnvironmentVariable("SPM_KILL_LOG");
        if (!string.IsNullOrEmpty(log)) File.AppendAllText(log, $"{DateTime.UtcNow:HH:mm:ss} {line}\n");
    }

    private byte[] Uninterrupted(Func<string[], string[]> args)
    {
        var reference = Path.Combine(_dir, "ref", "t.safetensors");
        var a = args(["--force"]);
        a[Array.IndexOf(a, "--out") + 1] = reference;
        var r = Cli.Run(a);
        Assert.That(r.Code, Is.EqualTo(0), r.Err);
        return File.ReadAllBytes(reference);
    }

    private static void CheckCheckpoint(string path, int trial)
    {
        using var f = SafeTensorsFile.Open(path);
        Assert.That(f.Metadata["format"], Is.EqualTo("spm-train-checkpoint/1"), $"train trial {trial}");
        int step = int.Parse(f.Metadata["step"], CultureInfo.InvariantCulture);
        Assert.That(step, Is.InRange(1, TrainIterations - 1), $"train trial {trial}");
        int parameters = 0;
        foreach (var name in f.Tensors.Select(i => i.Name))
        {
            var t = f.ReadFloat(name);
            Assert.That(t.Data.All(float.IsFinite), Is.True, $"train trial {trial}: {name}");
            if (name.StartsWith("param.", StringComparison.Ordinal)) parameters++;
        }
        Assert.That(parameters, Is.EqualTo(144), $"train trial {trial}: 72 down + 72 up parameters");
    }

    private static void CheckLossLog(string path, int trial)
    {
        var lines = File.ReadAllLines(path);
        Assert.That(lines[0], Does.StartWith("step,"), $"train trial {trial}");
        int columns = lines[0].Split(',').Length;
        Assert.That(columns, Is.GreaterThanOrEqualTo(9), $"train trial {trial}: header");
        for (int i = 1; i < lines.Length; i++)
        {
            var cells = lines[i].Split(',');
            Assert.That(cells, Has.Length.EqualTo(columns), $"train trial {trial}: loss log line {i} is whole (as many cells as the header)");
            Assert.That(int.Parse(cells[0], CultureInfo.InvariantCulture), Is.EqualTo(i), $"train trial {trial}: loss log line {i}");
        }
    }

    /// <summary>Removes what killed runs leave beside the outputs (hidden temp files and folders); returns how many.</summary>
    private static int CleanLeftovers(string dir, string prefix)
    {
        int n = 0;
        foreach (var d in Directory.GetDirectories(dir, prefix + "*")) { Directory.Delete(d, true); n++; }
        foreach (var f in Directory.GetFiles(dir, prefix + "*.tmp")) { File.Delete(f); n++; }
        return n;
    }

    private static SortedDictionary<string, string> Snapshot(string dir)
    {
        var map = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var f in Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories))
            map[Path.GetRelativePath(dir, f)] = Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(f)));
        return map;
    }

    private static bool Same(SortedDictionary<string, string> a, SortedDictionary<string, string> b) => a.SequenceEqual(b);

    private static void CopyTree(string from, string to)
    {
        if (Directory.Exists(to)) Directory.Delete(to, true);
        foreach (var f in Directory.EnumerateFiles(from, "*", SearchOption.AllDirectories))
        {
            var target = Path.Combine(to, Path.GetRelativePath(from, f));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(f, target);
        }
    }

    /// <summary>The built <c>spm</c> tool run as a child process (so SIGKILL hits a real process, not the test host).</summary>
    private static class Cli
    {
        private static string Dotnet => Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } p && File.Exists(p) ? p : "dotnet";

        public static Child Start(string[] args)
        {
            var psi = new ProcessStartInfo(Dotnet)
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "spm.dll"));
            foreach (var a in args) psi.ArgumentList.Add(a);
            return new Child(Process.Start(psi)!);
        }

        public static (int Code, string Err) Run(string[] args)
        {
            using var c = Start(args);
            c.Process.WaitForExit();
            return (c.Process.ExitCode, c.Stderr);
        }
    }

    private sealed class Child : IDisposable
    {
        private readonly BlockingCollection<(string Line, TimeSpan At)> _lines = new();
        private readonly System.Text.StringBuilder _err = new();
        private readonly Stopwatch _clock = Stopwatch.StartNew();

        public Child(Process p)
        {
            Process = p;
            p.OutputDataReceived += (_, _) => { };
            p.ErrorDataReceived += (_, e) =>
            {
                if (e.Data is null) { _lines.CompleteAdding(); return; }
                lock (_err) _err.AppendLine(e.Data);
                _lines.Add((e.Data, _clock.Elapsed));
            };
            p.BeginOutputReadLine();
            p.BeginErrorReadLine();
        }

        public Process Process { get; }

        public string Stderr { get { lock (_err) return _err.ToString(); } }

        /// <summary>SIGKILL after <paramref name="delay"/> unless the process ended before; returns whether it was killed.</summary>
        public bool KillAfter(TimeSpan delay)
        {
            bool exited = Process.WaitForExit(delay > TimeSpan.Zero ? delay : TimeSpan.Zero);
            if (!exited) Kill();
            Process.WaitForExit();
            if (exited) Assert.That(Process.ExitCode, Is.EqualTo(0), Stderr);
            return !exited;
        }

        /// <summary>
        /// Waits for a stderr line starting with <paramref name="prefix"/>, then kills <paramref name="fraction"/> of an
        /// iteration later (the iteration time measured from the two lines before); returns whether it was killed.
        /// </summary>
        public bool KillAfterLine(string prefix, double fraction)
        {
            TimeSpan? previous = null, interval = null;
            foreach (var (line, at) in _lines.GetConsumingEnumerable())
            {
                if (!line.StartsWith("step ", StringComparison.Ordinal)) continue;
                if (previous is { } p) interval = at - p;
                previous = at;
                if (!line.StartsWith(prefix, StringComparison.Ordinal)) continue;
                var wait = (interval ?? TimeSpan.FromSeconds(1)) * fraction;
                return KillAfter(wait - (_clock.Elapsed - at));
            }
            Process.WaitForExit();
            Assert.That(Process.ExitCode, Is.EqualTo(0), Stderr);
            return false;
        }

        private void Kill()
        {
            try { Process.Kill(entireProcessTree: false); } // SIGKILL on Unix
            catch (InvalidOperationException) { } // already gone
        }

        public void Dispose()
        {
            if (!Process.HasExited) Kill();
            Process.WaitForExit();
            Process.Dispose();
        }
    }
}
