using System.CommandLine;

namespace Spm.Cli.Commands;

/// <summary>Every verb of the spm tool. Adding a verb = one file in Commands/ plus one line here.</summary>
internal static class CommandRegistry
{
    public static IEnumerable<Command> All()
    {
        yield return VersionCommand.Create();
        yield return GradCommand.Create();
        yield return TokenizeCommand.Create();
        yield return InspectCommand.Create();
        yield return BakeCommand.Create();
        yield return ExportAdapterCommand.Create();
        yield return ConvertFp16Command.Create();
        yield return GenerateCommand.Create();
        yield return BenchCommand.Create();
        yield return TrainCommand.Create();
        yield return ShapesCommand.Create();
        yield return BuildModelCommand.Create();
        yield return EvalCommand.Create();
        yield return GateCommand.Create();
        yield return AttackCommand.Create();
        yield return AtlasCommand.Create();
    }
}
