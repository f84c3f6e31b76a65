// Usage: dotnet run --project samples/QuickStart -- [MODEL_FOLDER] [SPM_FILE ...]   (PNGs go to ./quickstart-output)
// Defaults (relative to the repository): ../shared/fixtures/tiny-sd1 and the reference SPM of its all-layers case.
using Spm.Samples.QuickStart;

var repo = FindRepo() ?? Directory.GetCurrentDirectory();
var model = args.Length > 0 ? args[0] : Path.Combine(repo, "..", "shared", "fixtures", "tiny-sd1");
string[] spmFiles = args.Length > 1
    ? args[1..]
    : [Path.Combine(repo, "..", "shared", "fixtures", "tiny-sd1-reference", "all-layers", "spm.safetensors")];

// The reference SPM erases "reference concept": the first prompt holds all its tokens (gate 1); the second gets the
// gate its similarity gives (on the tiny random fixture CLIP embeddings are all alike, so it is high there too).
var written = await QuickStart.RunAsync(
    new QuickStartOptions(model, spmFiles, ["a photo of the reference concept", "a cat on a sofa"], "quickstart-output"),
    Console.Out);
Console.WriteLine($"wrote {written.Count} images");

// The repository holding Spm.sln, above the working directory or above the program.
static string? FindRepo()
{
    foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
        for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Spm.sln"))) return dir.FullName;
    return null;
}
