using System.CommandLine;

namespace Spm.Cli.Tests;

/// <summary>
/// Runs spm verbs in-process the way Program does (same error policy through <see cref="CliGlobals.RunAsync"/>),
/// capturing stdout and stderr. Callers are [NonParallelizable] because Console is process-wide.
/// </summary>
internal static class CliHarness
{
    public static (int Code, string Out, string Err) Run(IEnumerable<Command> commands, params string[] args)
    {
        var root = new RootCommand();
        foreach (var c in commands) root.Subcommands.Add(c);
        return Run(root, args);
    }

    /// <summary>Runs <paramref name="root"/> (e.g. <see cref="CliGlobals.CreateRoot"/>, the whole tool).</summary>
    public static (int Code, string Out, string Err) Run(RootCommand root, params string[] args)
    {
        var (oldOut, oldErr) = (Console.Out, Console.Error);
        using var o = new StringWriter();
        using var e = new StringWriter();
        Console.SetOut(o);
        Console.SetError(e);
        try
        {
            int code = CliGlobals.RunAsync(root, args).GetAwaiter().GetResult();
            return (code, o.ToString(), e.ToString());
        }
        finally
        {
            Console.SetOut(oldOut);
            Console.SetError(oldErr);
        }
    }
}
