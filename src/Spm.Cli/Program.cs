using Spm.Cli;

// The spm command: thin verbs over the libraries. Each verb lives in Commands/ and is registered in CommandRegistry.
return await CliGlobals.RunAsync(CliGlobals.CreateRoot(), args);
