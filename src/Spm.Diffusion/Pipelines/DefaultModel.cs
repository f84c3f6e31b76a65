using Spm.Core;

namespace Spm.Diffusion.Pipelines;

/// <summary>
/// The one place that decides which model folder a tool uses when none is given: <c>$SPM_MODEL</c>, else the
/// built-in <c>models/tiny-shapes</c> looked up from the working directory and then from the folders above the
/// running program (so a repository checkout finds its own model).
/// </summary>
public static class DefaultModel
{
    /// <summary>Environment variable naming the default model folder.</summary>
    public const string EnvironmentVariable = "SPM_MODEL";

    /// <summary>The built-in model's folder, relative to the repository root.</summary>
    public static readonly string RelativePath = Path.Combine("models", "tiny-shapes");

    /// <summary>
    /// <paramref name="requested"/> when given; otherwise the default model folder.
    /// </summary>
    /// <exception cref="SpmException">Nothing was requested and no default model exists.</exception>
    public static string Resolve(string? requested)
    {
        if (!string.IsNullOrWhiteSpace(requested)) return requested;
        return TryFind() ?? throw new SpmException(
            $"no --model given, ${EnvironmentVariable} is not set and the default model '{RelativePath}' was not found; pass --model DIR.");
    }

    /// <summary>The default model folder if one exists, else null.</summary>
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
