using System.CommandLine;
using Spm.Cli;
using Spm.Cli.Commands;

// The spm command: thin verbs over the libraries. Each verb lives in Commands/ and is registered here.
var root = new RootCommand("spm: train, inspect, inject and bake SPM concept-erasure membranes for ONNX diffusion models.");
root.Options.Add(CliGlobals.Verbose);
foreach (var command in CommandRegistry.All())
    root.Subcommands.Add(command);

return await CliGlobals.RunAsync(root, args);
