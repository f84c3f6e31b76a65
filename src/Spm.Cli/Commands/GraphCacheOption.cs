using System.CommandLine;
using Spm.Diffusion.Runtime;

namespace Spm.Cli.Commands;

/// <summary>The <c>--graph-cache DIR</c> / <c>--no-graph-cache</c> pair of the verbs that build gradient graphs.</summary>
internal sealed class GraphCacheOption
{
    public Option<string?> Folder { get; } = new("--graph-cache")
    {
        Description = "Folder that keeps ONNX Runtime's optimized gradient graph for the next run (default: $SPM_CACHE/ort-optimized, else ~/.cache/spm/ort-optimized).",
    };

    public Option<bool> Off { get; } = new("--no-graph-cache") { Description = "Neither read nor write the optimized-graph cache." };

    /// <summary>The cache folder to use; null when switched off.</summary>
    public string? Resolve(ParseResult parse)
    {
        if (parse.GetValue(Off)) return null;
        return parse.GetValue(Folder) is { Length: > 0 } folder ? folder : OptimizedModelCache.DefaultFolder();
    }
}
