using Spm.Diffusion.Onnx.Proto;

namespace Spm.Training.Autodiff;

/// <summary>
/// Backward rule of one ONNX op: given the gradients of the node's outputs, emit nodes computing the gradients of
/// the inputs that need one. Rules are stateless; the context carries the graph being built.
/// </summary>
internal interface IGradientRule
{
    /// <summary>Returns one gradient name per node input (null where none is needed or it is zero).</summary>
    /// <param name="ctx">Emission helpers and forward shapes.</param>
    /// <param name="node">The forward node.</param>
    /// <param name="outputGrads">Accumulated gradient per node output, null when that output does not reach the loss.</param>
    /// <param name="needGrad">Which inputs need a gradient.</param>
    string?[] Backward(GradientContext ctx, NodeProto node, string?[] outputGrads, bool[] needGrad);
}
