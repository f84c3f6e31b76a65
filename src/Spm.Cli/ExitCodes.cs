using Spm.Core;

namespace Spm.Cli;

/// <summary>
/// The exit codes of every spm verb, one convention for the whole tool (shown by <c>spm --help</c>): what went wrong
/// decides the code, not which verb noticed it.
/// </summary>
internal static class ExitCodes
{
    /// <summary>Done.</summary>
    public const int Ok = 0;

    /// <summary>The work itself failed (ONNX Runtime, a refused or failed write, an unexpected error).</summary>
    public const int RuntimeFailure = 1;

    /// <summary>The command line is wrong: unknown option, bad number, value out of range, options that conflict.</summary>
    public const int UsageError = 2;

    /// <summary>A file or folder named on the command line (or by $SPM_MODEL) does not exist.</summary>
    public const int MissingInput = 3;

    /// <summary>An input exists but is broken or does not fit (malformed safetensors/ONNX/JSON, an SPM for another model).</summary>
    public const int BadInput = 4;

    /// <summary>Cancelled with Ctrl+C (128 + SIGINT, as shells report it).</summary>
    public const int Cancelled = 130;

    /// <summary>The table printed by <c>spm --help</c>.</summary>
    public const string HelpText =
        "Exit codes: 0 done; 1 runtime failure; 2 usage error (bad option or value); 3 missing input file or folder; " +
        "4 bad input file (malformed, or does not fit the model); 130 cancelled.";

    /// <summary>The exit code for an error that ended a verb.</summary>
    public static int For(Exception ex) => ex switch
    {
        OperationCanceledException => Cancelled,
        SpmInputNotFoundException or FileNotFoundException or DirectoryNotFoundException => MissingInput,
        SpmFormatException or SpmMismatchException => BadInput,
        SpmException or ArgumentException => UsageError,
        _ => RuntimeFailure,
    };
}
