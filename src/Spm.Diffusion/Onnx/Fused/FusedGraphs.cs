using Spm.Core;

namespace Spm.Diffusion.Onnx.Fused;

/// <summary>Facts about graphs fused by ONNX Runtime's transformer optimizer.</summary>
public static class FusedGraphs
{
    /// <summary>The first node in ONNX Runtime's contrib domain (<c>com.microsoft</c>), or null for a plain ONNX graph.</summary>
    public static Proto.NodeProto? FirstContribNode(OnnxModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return model.Graph.Node.FirstOrDefault(n => n.Domain == UnetFuser.MsDomain);
    }

    /// <summary>
    /// Refuses to train on a fused graph: the training engine differentiates standard ONNX ops only, and fused
    /// attention (MultiHeadAttention, GroupNorm, ...) has no gradient rule. The SPM trained on the unfused export has
    /// the same module paths and injects or bakes into the fused model unchanged.
    /// </summary>
    /// <exception cref="SpmException">The graph has a com.microsoft node (named in the message).</exception>
    public static void EnsureTrainable(OnnxModel model)
    {
        if (FirstContribNode(model) is { } node)
            throw new SpmException($"'{model.FilePath}' is fused by ONNX Runtime's optimizer (node '{node.Name}', {node.Domain}.{node.OpType}); training needs the unfused export of the same model. Train there: the SPM then injects into or bakes into this fused model as it is.");
    }
}
