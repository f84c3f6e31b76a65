using System.CommandLine;
using System.Reflection;

using Spm.Cli.Rendering;

namespace Spm.Cli.Commands;

/// <summary><c>spm version</c>: prints the tool version.</summary>
internal static class VersionCommand
{
    public static Command Create(CliConsole console)
    {
        var cmd = new Command("version", "Print the spm version.");
        cmd.SetAction(_ =>
        {
            var v = typeof(VersionCommand).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "unknown";
            console.Out.WriteLine($"spm {v}");
            return 0;
        });
        return cmd;
    }
}
