namespace Spm.Training.Autodiff;

/// <summary>Kinds of scalar loss term the gradient builder can append to a forward graph.</summary>
public enum LossKind
{
    /// <summary><c>coefficient * sum(output * weights)</c>; the weights are a new graph input (e.g. the <c>R</c> of <c>spm grad</c>).</summary>
    WeightedSum,

    /// <summary><c>coefficient * mean((output - target)^2)</c> over all elements; the target is a new graph input.</summary>
    MeanSquaredError,

    /// <summary><c>coefficient * sum(output)</c>.</summary>
    Sum,
}

/// <summary>
/// One term of the scalar loss. The loss is the sum of all terms of a <see cref="GradientRequest"/>.
/// </summary>
/// <param name="Kind">What the term computes.</param>
/// <param name="Output">The forward tensor the term reads (usually a graph output, any tensor works).</param>
/// <param name="InputName">Name of the graph input holding the weights or the target (added when absent); unused for <see cref="LossKind.Sum"/>.</param>
/// <param name="Coefficient">Constant factor of the term.</param>
public sealed record LossTerm(LossKind Kind, string Output, string? InputName = null, double Coefficient = 1.0)
{
    /// <summary><c>coefficient * sum(output * weights)</c>.</summary>
    public static LossTerm WeightedSum(string output, string weightsInput, double coefficient = 1.0)
        => new(LossKind.WeightedSum, output, weightsInput, coefficient);

    /// <summary><c>coefficient * mean((output - target)^2)</c>.</summary>
    public static LossTerm MeanSquaredError(string output, string targetInput, double coefficient = 1.0)
        => new(LossKind.MeanSquaredError, output, targetInput, coefficient);

    /// <summary><c>coefficient * sum(output)</c>.</summary>
    public static LossTerm Sum(string output, double coefficient = 1.0) => new(LossKind.Sum, output, null, coefficient);
}

/// <summary>What to differentiate: the loss terms and the tensors whose gradients are wanted.</summary>
/// <param name="Loss">The loss terms (summed).</param>
/// <param name="Wrt">Graph inputs (membrane mode) or initializers (full mode) to differentiate with respect to.</param>
/// <param name="KeepForwardOutputs">Keep the forward graph's outputs as outputs of the gradient graph.</param>
/// <param name="LossOutputName">Name of the scalar loss output.</param>
/// <param name="GradientPrefix">Gradient outputs are named <c>prefix + wrt name</c>.</param>
public sealed record GradientRequest(
    IReadOnlyList<LossTerm> Loss,
    IReadOnlyList<string> Wrt,
    bool KeepForwardOutputs = true,
    string LossOutputName = "loss",
    string GradientPrefix = "grad/");

/// <summary>A built gradient graph: one ONNX model computing the loss, the gradients and (optionally) the forward outputs.</summary>
/// <param name="Model">The model to run.</param>
/// <param name="LossOutput">Name of the scalar loss output.</param>
/// <param name="GradientOutputs">Gradient output name for each wrt tensor.</param>
/// <param name="ExtraInputs">Graph inputs the loss added (weights, targets), to be fed at run time.</param>
/// <param name="BackwardNodeCount">Number of nodes the builder added (loss and backward).</param>
/// <param name="SavedActivationBytes">Bytes (at the probe's shapes) of the forward intermediates the backward nodes read:
/// what stays alive between the forward and the backward pass.</param>
public sealed record GradientGraph(
    Diffusion.Onnx.Proto.ModelProto Model,
    string LossOutput,
    IReadOnlyDictionary<string, string> GradientOutputs,
    IReadOnlyList<string> ExtraInputs,
    int BackwardNodeCount,
    long SavedActivationBytes = 0);
