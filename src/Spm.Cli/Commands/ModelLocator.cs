using Spm.Core;

namespace Spm.Cli.Commands;

/// <summary>Resolves the model folder of a verb: --model, else $SPM_MODEL, else the built-in model shipped in models/.</summary>
internal static class ModelLocator
{
    /// <summary>Environment variable naming the default model folder.</summary>
    public const string Variable = "SPM_MODEL";

    /// <summary>Folder name of the built-in model under models/.</summary>
    public const string BuiltInName = "tiny-shapes";

    public static string Resolve(string? model)
    {
        if (!string.IsNullOrEmpty(model)) return model;
        var env = Environment.GetEnvironmentVariable(Variable);
        if (!string.IsNullOrEmpty(env)) return env;
        var builtIn = FindBuiltIn();
        return builtIn ?? throw new SpmException($"No model given: pass --model DIR or set ${Variable} (the built-in model '{BuiltInName}' was not found).");
    }

    /// <summary>models/tiny-shapes next to the tool or above the working directory, if present.</summary>
    public static string? FindBuiltIn()
    {
        foreach (var start in new[] { AppContext.BaseDirectory, Directory.GetCurrentDirectory() })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, "models", BuiltInName);
                if (File.Exists(Path.Combine(candidate, "model_index.json"))) return candidate;
            }
        }
        return null;
    }
}
