using System.CommandLine;
using Spm.Cli.Rendering;

namespace Spm.Cli.Tests;

/// <summary>
/// Runs spm verbs in-process the way Program does (same error policy through <see cref="CliGlobals.RunAsync"/>),
/// capturing stdout and stderr. The verbs write to a <see cref="CliConsole"/> of the harness's own writers, so fixtures
/// using <see cref="Run(Func{CliConsole, IEnumerable{Command}}, string[])"/> share no process-wide state and may run in
/// parallel. Verbs still on the static <see cref="Console"/> (train, attack) go through <see cref="RunOnProcessConsole"/>,
/// whose callers are [NonParallelizable].
/// </summary>
internal static class CliHarness
{
    /// <summary>Runs the verbs <paramref name="commands"/> creates on the harness's console.</summary>
    public static (int Code, string Out, string Err) Run(Func<CliConsole, IEnumerable<Command>> commands, params string[] args)
        => RunRoot(console => Root(commands(console)), args);

    /// <summary>Runs the root command <paramref name="root"/> creates (e.g. <see cref="CliGlobals.CreateRoot"/>, the whole tool).</summary>
    public static (int Code, string Out, string Err) RunRoot(Func<CliConsole, RootCommand> root, params string[] args)
    {
        using var o = new StringWriter();
        using var e = new StringWriter();
        var console = CliConsole.ForWriters(o, e);
        int code = CliGlobals.RunAsync(root(console), args, console).GetAwaiter().GetResult();
        return (code, o.ToString(), e.ToString());
    }

    /// <summary>
    /// Runs verbs some of which write to the static <see cref="Console"/>: the process's Console is redirected to the
    /// harness's writers for the call, and the verbs given a console get one on the same writers (so the output of both
    /// kinds interleaves as it would in the tool). Callers are [NonParallelizable] because Console is process-wide.
    /// </summary>
    public static (int Code, string Out, string Err) RunOnProcessConsole(Func<CliConsole, IEnumerable<Command>> commands, params string[] args)
        => RunRootOnProcessConsole(console => Root(commands(console)), args);

    /// <summary><see cref="RunOnProcessConsole"/> for a root command (the whole tool, which holds verbs of both kinds).</summary>
    public static (int Code, string Out, string Err) RunRootOnProcessConsole(Func<CliConsole, RootCommand> root, params string[] args)
    {
        var (oldOut, oldErr) = (Console.Out, Console.Error);
        using var o = new StringWriter();
        using var e = new StringWriter();
        Console.SetOut(o);
        Console.SetError(e);
        try
        {
            // Console.Out/Error are now synchronized wrappers of o and e; the console's writers are the same wrappers.
            var console = CliConsole.ForWriters(Console.Out, Console.Error);
            int code = CliGlobals.RunAsync(root(console), args, console).GetAwaiter().GetResult();
            return (code, o.ToString(), e.ToString());
        }
        finally
        {
            Console.SetOut(oldOut);
            Console.SetError(oldErr);
        }
    }

    private static RootCommand Root(IEnumerable<Command> commands)
    {
        var root = new RootCommand();
        foreach (var c in commands) root.Subcommands.Add(c);
        return root;
    }
}
