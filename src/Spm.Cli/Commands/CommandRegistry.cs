using System.CommandLine;
using Spm.Cli.Rendering;

namespace Spm.Cli.Commands;

/// <summary>Every verb of the spm tool. Adding a verb = one file in Commands/ plus one line here.</summary>
internal static class CommandRegistry
{
    /// <summary>The verbs, each writing to <paramref name="console"/>.</summary>
    public static IEnumerable<Command> All(CliConsole console)
    {
        yield return VersionCommand.Create(console);
        yield return GradCommand.Create(console);
        yield return TokenizeCommand.Create(console);
        yield return InspectCommand.Create(console);
        yield return BakeCommand.Create(console);
        yield return ExportAdapterCommand.Create(console);
        yield return ConvertFp16Command.Create(console);
        yield return GenerateCommand.Create(console);
        yield return BenchCommand.Create(console);
        // train and attack still write to the static Console (being changed elsewhere; their tests stay [NonParallelizable]).
        yield return TrainCommand.Create(console);
        yield return ShapesCommand.Create(console);
        yield return BuildModelCommand.Create(console);
        yield return EvalCommand.Create(console);
        yield return GateCommand.Create(console);
        yield return AttackCommand.Create(console);
        yield return AtlasCommand.Create(console);
        yield return LibraryCommand.Create(console);
    }
}
