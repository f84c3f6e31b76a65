using System.CommandLine;
using Spm.Cli.Rendering;

namespace Spm.Cli.Tests;

/// <summary>
/// Runs spm verbs in-process the way Program does (same error policy through <see cref="CliGlobals.RunAsync"/>),
/// capturing stdout and stderr. The verbs write to a <see cref="CliConsole"/> of the harness's own writers, so fixtures
/// share no process-wide state and may run in parallel.
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

    private static RootCommand Root(IEnumerable<Command> commands)
    {
        var root = new RootCommand();
        foreach (var c in commands) root.Subcommands.Add(c);
        return root;
    }
}
