using Spm.Core;
using Spm.Diffusion.Runtime;

namespace Spm.Cli.Commands;

/// <summary>The <c>--provider</c> value every verb takes, read in one place.</summary>
internal static class ProviderOption
{
    /// <summary>
    /// <c>cpu</c> or <c>cuda</c> (case-insensitive; null means cpu). CUDA that cannot load falls back to the CPU with a
    /// warning later, when the sessions are made.
    /// </summary>
    /// <exception cref="SpmException">Any other value.</exception>
    public static ExecutionProviderKind Parse(string? text) => text?.Trim().ToLowerInvariant() switch
    {
        null or "cpu" => ExecutionProviderKind.Cpu,
        "cuda" => ExecutionProviderKind.Cuda,
        var p => throw new SpmException($"unknown provider '{p}' (cpu or cuda)."),
    };
}
