using Spm.Core;

namespace Spm.Diffusion.Pipelines;

/// <summary>
/// The one place that decides which model folder a tool uses when none is given, in this order: <c>$SPM_MODEL</c>;
/// the built-in <c>models/tiny-shapes</c> in the working directory or a folder above it (so a repository checkout
/// finds its own model); then the copy beside the running program or above it (the <c>spm</c> tool package carries
/// one in its tool folder).
/// </summary>
public static class DefaultModel
{
    /// <summary>Environment variable naming the default model folder.</summary>
    public const string EnvironmentVariable = "SPM_MODEL";

    /// <summary>The built-in model's folder, relative to the repository root (and to the spm tool's folder).</summary>
    public static readonly string RelativePath = Path.Combine("models", "tiny-shapes");

    /// <summary>
    /// <paramref name="requested"/> when given; otherwise the default model folder (see <see cref="TryFind"/>).
    /// </summary>
    /// <exception cref="SpmInputNotFoundException">The requested folder (or file: some tools take a UNet .onnx), or the one <c>$SPM_MODEL</c> names, does not exist.</exception>
    /// <exception cref="SpmException">Nothing was requested and no default model exists.</exception>
    public static string Resolve(string? requested) => Resolve(requested, null);

    /// <summary>
    /// As <see cref="Resolve(string?)"/>, and a requested <c>ORG/NAME</c> that is not a local path is looked up in the
    /// local Hugging Face hub cache at <paramref name="revision"/> (default <c>main</c>; see <see cref="Runtime.HubCache"/>).
    /// Nothing is ever downloaded.
    /// </summary>
    /// <exception cref="SpmInputNotFoundException">The folder, or the hub model or revision in the cache, does not exist.</exception>
    public static string Resolve(string? requested, string? revision)
    {
        if (!string.IsNullOrWhiteSpace(requested))
        {
            if (Directory.Exists(requested) || File.Exists(requested)) return requested;
            if (Runtime.HubCache.IsRepoId(requested)) return Runtime.HubCache.Resolve(requested, revision);
            throw new SpmInputNotFoundException(requested, "model folder");
        }
        if (revision is not null) throw new SpmException("--revision needs --model ORG/NAME (a model in the Hugging Face cache).");
        var env = Environment.GetEnvironmentVariable(EnvironmentVariable);
        if (!string.IsNullOrWhiteSpace(env) && !Directory.Exists(env))
            throw new SpmInputNotFoundException(env, $"model folder (${EnvironmentVariable})");
        return TryFind() ?? throw new SpmInputNotFoundException(RelativePath, "default model",
            $"no --model given and ${EnvironmentVariable} is not set; pass --model DIR.");
    }

    /// <summary>
    /// The default model folder if one exists, else null: <c>$SPM_MODEL</c> when set, else the first
    /// <c>models/tiny-shapes</c> (holding a model_index.json) in the working directory or above it, else beside the
    /// running program or above it.
    /// </summary>
    public static string? TryFind()
    {
        var env = Environment.GetEnvironmentVariable(EnvironmentVariable);
        if (!string.IsNullOrWhiteSpace(env)) return env;
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, RelativePath);
                if (File.Exists(Path.Combine(candidate, "model_index.json"))) return candidate;
            }
        }
        return null;
    }
}
