using Spectre.Console;

namespace Spm.Cli.Rendering;

/// <summary>
/// Where a verb writes: results to <see cref="Output"/> (stdout), warnings, notes and progress to <see cref="Messages"/>
/// (stderr). Every verb receives one when it is created, so the tool writes to the process's streams and a test to its
/// own writers, and several tests can run verbs at once without sharing the process-wide <see cref="Console"/>.
/// </summary>
internal sealed class CliConsole
{
    private CliConsole(IAnsiConsole output, IAnsiConsole messages, bool outputIsTerminal, bool messagesAreTerminal)
    {
        Output = output;
        Messages = messages;
        OutputIsTerminal = outputIsTerminal;
        MessagesAreTerminal = messagesAreTerminal;
    }

    /// <summary>The console of results (stdout): tables and anything a script may read.</summary>
    public IAnsiConsole Output { get; }

    /// <summary>The console of messages (stderr): warnings, notes, progress bars.</summary>
    public IAnsiConsole Messages { get; }

    /// <summary>
    /// Plain text to stdout, written as given: no markup, and no wrapping at the console width (JSON lines and file
    /// paths must stay whole when the output goes to a file or a pipe).
    /// </summary>
    public TextWriter Out => Output.Profile.Out.Writer;

    /// <summary>Plain text to stderr, written as given.</summary>
    public TextWriter Error => Messages.Profile.Out.Writer;

    /// <summary>Whether stdout is a terminal (else tables get a fixed width instead of the terminal's).</summary>
    public bool OutputIsTerminal { get; }

    /// <summary>Whether stderr is an interactive terminal, where live progress bars can redraw (else plain progress lines).</summary>
    public bool MessagesAreTerminal { get; }

    /// <summary>The width of output that is not a terminal (a file, a pipe, a test's writer).</summary>
    public const int RedirectedWidth = 200;

    /// <summary>The process's stdout and stderr (what <c>spm</c> runs with).</summary>
    public static CliConsole ForProcess()
    {
        var output = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(Console.Out),
            Ansi = AnsiSupport.Detect,
            ColorSystem = ColorSystemSupport.Detect,
        });
        var messages = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
        // Redirected output goes to a file or a pipe: wide, so tables and trees are not wrapped at 80 columns.
        if (Console.IsOutputRedirected) output.Profile.Width = RedirectedWidth;
        return new CliConsole(output, messages, !Console.IsOutputRedirected,
            !Console.IsErrorRedirected && messages.Profile.Capabilities.Interactive);
    }

    /// <summary>
    /// Two writers, neither a terminal (tests, or a host capturing the output). The writers are synchronized, as the
    /// process's streams are: progress reports arrive from worker threads while the verb writes.
    /// </summary>
    public static CliConsole ForWriters(TextWriter output, TextWriter messages)
    {
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(messages);
        IAnsiConsole Create(TextWriter writer)
        {
            var console = AnsiConsole.Create(new AnsiConsoleSettings
            {
                Out = new AnsiConsoleOutput(TextWriter.Synchronized(writer)),
                Ansi = AnsiSupport.No,
                ColorSystem = ColorSystemSupport.NoColors,
                Interactive = InteractionSupport.No,
            });
            console.Profile.Width = RedirectedWidth; // as the process's redirected stdout
            return console;
        }
        return new CliConsole(Create(output), Create(messages), outputIsTerminal: false, messagesAreTerminal: false);
    }
}
