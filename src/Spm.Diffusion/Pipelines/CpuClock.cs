using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Spm.Diffusion.Pipelines;

/// <summary>
/// Clocks for benchmarks on busy machines: CPU time of the calling thread (work on that thread only, immune to
/// waiting for a CPU) and of the whole process (includes ONNX Runtime's worker threads). Wall-clock fallback
/// where the thread clock is unavailable.
/// </summary>
public static partial class CpuClock
{
    private const int ClockThreadCpuTimeId = 3; // CLOCK_THREAD_CPUTIME_ID on Linux
    private static readonly bool HasThreadClock = OperatingSystem.IsLinux() && Probe();

    [StructLayout(LayoutKind.Sequential)]
    private struct TimeSpec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [LibraryImport("libc", EntryPoint = "clock_gettime")]
    private static partial int ClockGetTime(int clockId, out TimeSpec ts);

    private static bool Probe()
    {
        try { return ClockGetTime(ClockThreadCpuTimeId, out _) == 0; }
        catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException) { return false; }
    }

    /// <summary>CPU time consumed by the calling thread so far (wall clock when unavailable).</summary>
    public static TimeSpan Thread()
    {
        if (HasThreadClock && ClockGetTime(ClockThreadCpuTimeId, out var ts) == 0)
            return TimeSpan.FromTicks(ts.Seconds * TimeSpan.TicksPerSecond + ts.Nanoseconds / 100);
        return Stopwatch.GetElapsedTime(0);
    }

    /// <summary>CPU time consumed by the whole process so far.</summary>
    public static TimeSpan Process()
    {
        using var p = System.Diagnostics.Process.GetCurrentProcess();
        return p.TotalProcessorTime;
    }
}

/// <summary>Times pieces of a generation by wall clock, or by CPU time in benchmark mode (pieces: thread CPU; models: process CPU).</summary>
internal sealed class PieceTimer(bool cpu)
{
    private readonly Stopwatch _wall = new();
    private TimeSpan _start;
    private bool _process;

    /// <summary>Starts timing a piece of work done on this thread.</summary>
    public void Restart()
    {
        _process = false;
        if (cpu) _start = CpuClock.Thread();
        else _wall.Restart();
    }

    /// <summary>Starts timing a model run (which also uses ONNX Runtime's threads).</summary>
    public void RestartModel()
    {
        _process = true;
        if (cpu) _start = CpuClock.Process();
        else _wall.Restart();
    }

    /// <summary>Time since the last restart.</summary>
    public TimeSpan Elapsed => !cpu ? _wall.Elapsed : (_process ? CpuClock.Process() : CpuClock.Thread()) - _start;
}
