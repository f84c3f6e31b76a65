using System.Diagnostics;
using System.Text;

namespace Spm.Cli.Tests;

/// <summary>The built spm tool (spm.dll is copied next to the tests by the project reference) as a child process.</summary>
internal sealed class SpmProcess
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();

    private SpmProcess(Process process) => _process = process;

    public bool HasExited => _process.HasExited;

    public string Output
    {
        get { lock (_output) return _output.ToString(); }
    }

    public static SpmProcess Start(IEnumerable<string> args, IReadOnlyDictionary<string, string?>? environment = null)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "spm.dll");
        Assert.That(File.Exists(dll), Is.True, dll);
        // dotnet test sets DOTNET_HOST_PATH to the host that runs it; fall back to dotnet on the PATH.
        var host = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } h ? h : "dotnet";
        var info = new ProcessStartInfo(host) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add(dll);
        foreach (var a in args) info.ArgumentList.Add(a);
        // A null value removes the variable (e.g. a shard index the test runner's own environment might carry).
        foreach (var (name, value) in environment ?? new Dictionary<string, string?>())
        {
            if (value is null) info.Environment.Remove(name);
            else info.Environment[name] = value;
        }
        var p = new SpmProcess(new Process { StartInfo = info });
        p._process.OutputDataReceived += (_, e) => p.Append(e.Data);
        p._process.ErrorDataReceived += (_, e) => p.Append(e.Data);
        p._process.Start();
        p._process.BeginOutputReadLine();
        p._process.BeginErrorReadLine();
        return p;
    }

    private void Append(string? line)
    {
        if (line is null) return;
        lock (_output) _output.AppendLine(line);
    }

    public void KillHard() => _process.Kill(entireProcessTree: false);

    public int WaitForExit(TimeSpan timeout)
    {
        if (!_process.WaitForExit(timeout))
        {
            _process.Kill();
            Assert.Fail("spm did not finish in time:\n" + Output);
        }
        _process.WaitForExit(); // drain the redirected streams
        return _process.ExitCode;
    }
}
