using Spm.Cli;
using Spm.Cli.Rendering;

// The spm command: thin verbs over the libraries. Each verb lives in Commands/ and is registered in CommandRegistry;
// all of them write through the one console made here (the process's stdout and stderr).
var console = CliConsole.ForProcess();
return await CliGlobals.RunAsync(CliGlobals.CreateRoot(console), args, console);
