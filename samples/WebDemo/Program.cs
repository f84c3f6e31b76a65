// Usage: dotnet run --project samples/WebDemo -c Release -- [--model DIR] [--spm FILE ...] [--port 5080]
// then open http://127.0.0.1:5080/ . Model: --model, else $SPM_MODEL, else models/tiny-shapes; SPMs: --spm, else
// every MODEL/spm/*.safetensors.
using Spm.Core;
using Spm.Samples.WebDemo;

if (args is ["--help"] or ["-h"])
{
    Console.WriteLine(WebDemoOptions.Usage);
    return 0;
}
try
{
    var options = WebDemoOptions.Parse(args);
    Console.WriteLine($"loading {options.ModelFolder} with {options.SpmFiles.Count} SPM(s)...");
    await using var app = WebDemoApp.Build(options);
    await app.StartAsync();
    Console.WriteLine($"WebDemo on {WebDemoApp.Address(app)} (Ctrl+C to stop)");
    await app.WaitForShutdownAsync();
    return 0;
}
catch (SpmException ex)
{
    Console.Error.WriteLine($"error: {ex.Message}");
    return 1;
}
