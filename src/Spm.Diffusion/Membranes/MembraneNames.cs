namespace Spm.Diffusion.Membranes;

/// <summary>
/// Names of the graph inputs an injected UNet gains. They are a contract with the trainer and <c>spm grad</c>
/// (which differentiate with respect to the down/up inputs), so they never change:
/// <list type="bullet">
/// <item><c>spm.&lt;module path&gt;.down</c>: float [R, in] (conv: [R, in, kh, kw]), the stacked <c>lora_down</c> rows, as stored in the files (unscaled).</item>
/// <item><c>spm.&lt;module path&gt;.up</c>: float [out, R], the stacked <c>lora_up</c> columns, as stored in the files (unscaled; conv [out, r, 1, 1] flattened).</item>
/// <item><c>spm.scales</c>: float [R], <c>alpha / rank</c> of the SPM owning each column.</item>
/// <item><c>spm.gates</c>: float [B, R], the multiplier of each batch row and column (a rank-r SPM repeats its gate over its r columns).</item>
/// </list>
/// R is the symbolic dimension <c>spm_rank</c>, B the model's batch dimension. The scale enters the graph as its own
/// input rather than being folded into <c>up</c> so that gradients with respect to <c>down</c>/<c>up</c> are exactly the
/// gradients with respect to the tensors in the SPM file.
/// </summary>
public static class MembraneNames
{
    /// <summary>Prefix of every name the injection adds to a graph (inputs, nodes, intermediate tensors).</summary>
    public const string Prefix = "spm.";

    /// <summary>The gates input [B, R].</summary>
    public const string Gates = "spm.gates";

    /// <summary>The per-column scale input [R] (alpha / rank of the owning SPM).</summary>
    public const string Scales = "spm.scales";

    /// <summary>Name of the symbolic total-rank dimension on the membrane inputs.</summary>
    public const string RankDim = "spm_rank";

    /// <summary>The down input of the layer at <paramref name="modulePath"/>.</summary>
    public static string Down(string modulePath) => $"spm.{modulePath}.down";

    /// <summary>The up input of the layer at <paramref name="modulePath"/>.</summary>
    public static string Up(string modulePath) => $"spm.{modulePath}.up";

    /// <summary>True when <paramref name="name"/> is a graph input added by the injection.</summary>
    public static bool IsMembraneInput(string name) => name.StartsWith(Prefix, StringComparison.Ordinal);
}
