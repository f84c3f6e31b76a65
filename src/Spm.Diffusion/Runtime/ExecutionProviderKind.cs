namespace Spm.Diffusion.Runtime;

/// <summary>Where ONNX Runtime executes a model.</summary>
public enum ExecutionProviderKind
{
    /// <summary>The CPU execution provider (always available).</summary>
    Cpu,

    /// <summary>The CUDA execution provider; falls back to the CPU with a one-line reason when it cannot load.</summary>
    Cuda,
}
