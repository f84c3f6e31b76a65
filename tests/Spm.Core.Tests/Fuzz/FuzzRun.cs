using System.Diagnostics;
using System.Globalization;

namespace Spm.Core.Tests.Fuzz;

/// <summary>Shared settings and bookkeeping of the fuzz suites.</summary>
internal sealed class FuzzRun
{
    /// <summary>Cases per suite: <c>SPM_FUZZ_CASES</c> (default 10,000; set 1000000+ for a long run by hand).</summary>
    public static int Cases(int fallback = 10_000)
        => int.TryParse(Environment.GetEnvironmentVariable("SPM_FUZZ_CASES"), NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) && n > 0 ? n : fallback;

    /// <summary>Base seed: <c>SPM_FUZZ_SEED</c> (default fixed, so CI runs are reproducible).</summary>
    public static ulong Seed(ulong fallback)
        => ulong.TryParse(Environment.GetEnvironmentVariable("SPM_FUZZ_SEED"), NumberStyles.Integer, CultureInfo.InvariantCulture, out var s) ? s : fallback;

    /// <summary>
    /// A scratch folder for the case files: in RAM (/dev/shm) where there is one, since the suite writes one file per
    /// case and disk writes would dominate its time; the system temp folder otherwise.
    /// </summary>
    public static string NewScratchDir()
    {
        const string shm = "/dev/shm";
        if (Directory.Exists(shm))
        {
            try { return Directory.CreateDirectory(Path.Combine(shm, $"spm-fuzz-{Environment.ProcessId}-{Guid.NewGuid():N}")).FullName; }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
        return Directory.CreateTempSubdirectory("spm-fuzz").FullName;
    }

    /// <summary>With <c>SPM_FUZZ_KEEP=DIR</c>, failing case files are copied there for replay.</summary>
    public static void Keep(string path, int caseIndex)
    {
        var dir = Environment.GetEnvironmentVariable("SPM_FUZZ_KEEP");
        if (string.IsNullOrEmpty(dir)) return;
        Directory.CreateDirectory(dir);
        File.Copy(path, Path.Combine(dir, $"case-{caseIndex}-{Path.GetFileName(path)}"), overwrite: true);
    }

    /// <summary>
    /// No single case may use more CPU than this: a hang guard, not a performance target. CPU time rather than wall
    /// time, because on a loaded machine a case can wait seconds for a core without doing any work.
    /// </summary>
    public static readonly TimeSpan CaseCpuLimit = TimeSpan.FromSeconds(5);

    private readonly Process _process = Process.GetCurrentProcess();
    private TimeSpan _cpuAtStart;

    /// <summary>Call just before a case (outside any allocation measurement).</summary>
    public void StartCase()
    {
        _process.Refresh();
        _cpuAtStart = _process.TotalProcessorTime;
    }

    /// <summary>Process CPU time used since <see cref="StartCase"/>.</summary>
    public TimeSpan CaseCpu()
    {
        _process.Refresh();
        return _process.TotalProcessorTime - _cpuAtStart;
    }

    public int Accepted, Rejected;
    public long MaxOverheadBytes = long.MinValue;
    public double MaxRatio;
    public TimeSpan MaxCaseTime, MaxCaseCpu;
    public readonly List<string> Failures = new();
    private readonly Stopwatch _total = Stopwatch.StartNew();

    public void Fail(int i, string description, string why)
    {
        if (Failures.Count < 20) Failures.Add($"case {i} [{description}]: {why}");
        else if (Failures.Count == 20) Failures.Add("...");
    }

    public void Record(long allocated, long fileLength, TimeSpan elapsed, TimeSpan cpu)
    {
        if (cpu > MaxCaseCpu) MaxCaseCpu = cpu;
        MaxOverheadBytes = Math.Max(MaxOverheadBytes, allocated - fileLength);
        if (fileLength > 0) MaxRatio = Math.Max(MaxRatio, (double)allocated / fileLength);
        if (elapsed > MaxCaseTime) MaxCaseTime = elapsed;
    }

    public string Summary(string name, int cases)
        => $"{name}: {cases} cases in {_total.Elapsed.TotalSeconds:F1} s, {Accepted} accepted, {Rejected} rejected, "
         + $"max allocation over file size {MaxOverheadBytes} B (max ratio {MaxRatio:F2}), slowest case {MaxCaseTime.TotalMilliseconds:F1} ms wall / {MaxCaseCpu.TotalMilliseconds:F1} ms CPU, failures {Failures.Count}";
}
