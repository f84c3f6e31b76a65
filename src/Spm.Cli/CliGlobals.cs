using System.CommandLine;
using System.CommandLine.Invocation;
using Spm.Cli.Rendering;

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

    /// <summary>The root command with every verb writing to <paramref name="console"/>: what <c>spm</c> runs (and what tests run in-process).</summary>
    public static RootCommand CreateRoot(CliConsole console)
    {
        var root = new RootCommand("spm: train, inspect, inject and bake SPM concept-erasure membranes for ONNX diffusion models.\n\n" + ExitCodes.HelpText);
        root.Options.Add(Verbose);
        foreach (var command in Commands.CommandRegistry.All(console))
            root.Subcommands.Add(command);
        return root;
    }

    /// <summary>The help of every --model option that falls back to the default model, in the order it is looked for.</summary>
    public static readonly string ModelHelp =
        $"Model folder (diffusers/optimum ONNX layout), or ORG/NAME of a model in the local Hugging Face cache (never downloaded). Default: ${Spm.Diffusion.Pipelines.DefaultModel.EnvironmentVariable}, else ./{Spm.Diffusion.Pipelines.DefaultModel.RelativePath} (or in a folder above), else the built-in model installed with spm.";

    /// <summary>
    /// Runs the parsed command. Errors end with the exit code of <see cref="ExitCodes"/> and a one-line cause on
    /// stderr (<paramref name="console"/>'s messages); the stack trace is shown only with --verbose. Ctrl+C cancels the
    /// token the verbs receive.
    /// </summary>
    public static async Task<int> RunAsync(RootCommand root, string[] args, CliConsole console)
    {
        ArgumentNullException.ThrowIfNull(console);
        NumberOptions.Install(root);
        var parse = root.Parse(args);
        bool verbose = parse.GetValue(Verbose);
        // Parse errors (unknown options, bad numbers, missing required options) are usage errors; --help with a
        // mistake beside it still shows the help.
        if (parse.Errors.Count > 0 && parse.Action is ParseErrorAction)
        {
            // One line per error; the last one says where the options are described.
            for (int i = 0; i < parse.Errors.Count; i++)
                console.Error.WriteLine($"spm: error: {parse.Errors[i].Message}" + (i == parse.Errors.Count - 1 ? $" See '{CommandPath(parse)} --help'." : ""));
            return ExitCodes.UsageError;
        }
        try
        {
            // Help and System.CommandLine's own messages go to the same writers as the verbs' output.
            return await parse.InvokeAsync(new InvocationConfiguration { EnableDefaultExceptionHandler = false, Output = console.Out, Error = console.Error });
        }
        catch (OperationCanceledException)
        {
            console.Error.WriteLine("spm: cancelled.");
            return ExitCodes.Cancelled;
        }
        catch (Exception ex)
        {
            console.Error.WriteLine($"spm: error: {OneLine(ex)}");
            if (verbose) console.Error.WriteLine(ex);
            return ExitCodes.For(ex);
        }
    }

    private static string CommandPath(ParseResult parse)
    {
        var names = new List<string>();
        for (var c = parse.CommandResult; c is not null; c = c.Parent as System.CommandLine.Parsing.CommandResult)
            names.Insert(0, c.Parent is null ? "spm" : c.Command.Name);
        return string.Join(' ', names);
    }

    private static string OneLine(Exception ex)
    {
        var msg = ex is Spm.Core.SpmException || ex.InnerException is null ? ex.Message : $"{ex.Message} ({ex.InnerException.Message})";
        return msg.ReplaceLineEndings(" ");
    }
}
