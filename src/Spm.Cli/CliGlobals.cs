using System.CommandLine;
using Spm.Core;

namespace Spm.Cli;

/// <summary>Options shared by every verb and the top-level error policy.</summary>
internal static class CliGlobals
{
    /// <summary>Print stack traces for errors.</summary>
    public static readonly Option<bool> Verbose = new("--verbose")
    {
        Description = "Show full stack traces on errors.",
        Recursive = true,
    };

    /// <summary>
    /// Runs the parsed command. Errors end with a non-zero exit code and a one-line cause on stderr;
    /// the stack trace is shown only with --verbose. Ctrl+C cancels the token the verbs receive.
    /// </summary>
    public static async Task<int> RunAsync(RootCommand root, string[] args)
    {
        var parse = root.Parse(args);
        bool verbose = parse.GetValue(Verbose);
        try
        {
            return await parse.InvokeAsync(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        }
        catch (OperationCanceledException)
        {
            Console.Error.WriteLine("spm: cancelled.");
            return 130;
        }
        catch (Exception ex) when (ex is SpmException or IOException or UnauthorizedAccessException or ArgumentException or InvalidOperationException or NotSupportedException || !verbose)
        {
            Console.Error.WriteLine($"spm: error: {OneLine(ex)}");
            if (verbose) Console.Error.WriteLine(ex);
            return ex is SpmException or ArgumentException ? 2 : 1;
        }
    }

    private static string OneLine(Exception ex)
    {
        var msg = ex is SpmException || ex.InnerException is null ? ex.Message : $"{ex.Message} ({ex.InnerException.Message})";
        return msg.ReplaceLineEndings(" ");
    }
}
