using Spm.Training.Autodiff.Rules;

namespace Spm.Training.Autodiff;

/// <summary>
/// The table of backward rules by ONNX op type (default domain). Adding an op = one rule class + one line here.
/// Ops in <see cref="NoGradient"/> never carry a gradient (shape arithmetic, comparisons, rounding).
/// </summary>
internal static class GradientRules
{
    private static readonly Dictionary<string, IGradientRule> Table = new(StringComparer.Ordinal)
    {
        ["Add"] = new AddRule(),
        ["Sub"] = new SubRule(),
        ["Mul"] = new MulRule(),
        ["Div"] = new DivRule(),
        ["Pow"] = new PowRule(),
        ["Sqrt"] = new SqrtRule(),
        ["Exp"] = new ExpRule(),
        ["Log"] = new LogRule(),
        ["Neg"] = new NegRule(),
        ["Erf"] = new ErfRule(),
        ["Sigmoid"] = new SigmoidRule(),
        ["Tanh"] = new TanhRule(),
        ["Softmax"] = new SoftmaxRule(),
        ["MatMul"] = new MatMulRule(),
        ["Gemm"] = new GemmRule(),
        ["Conv"] = new ConvRule(),
        ["InstanceNormalization"] = new InstanceNormalizationRule(),
        ["LayerNormalization"] = new LayerNormalizationRule(),
        ["GroupNormalization"] = new GroupNormalizationRule(),
        ["ReduceMean"] = new ReduceRule(mean: true),
        ["ReduceSum"] = new ReduceRule(mean: false),
        ["Transpose"] = new TransposeRule(),
        ["Reshape"] = new ReshapeRule(),
        ["Flatten"] = new ReshapeRule(),
        ["Squeeze"] = new ReshapeRule(),
        ["Unsqueeze"] = new ReshapeRule(),
        ["Concat"] = new ConcatRule(),
        ["Split"] = new SplitRule(),
        ["Slice"] = new SliceRule(),
        ["Gather"] = new GatherRule(),
        ["Expand"] = new ExpandRule(),
        ["Where"] = new WhereRule(),
        ["Cast"] = new CastRule(),
        ["Identity"] = new IdentityRule(),
        ["Dropout"] = new IdentityRule(),
        ["Resize"] = new ResizeRule(),
        ["Einsum"] = new EinsumRule(),
    };

    /// <summary>Ops whose outputs never depend differentiably on their inputs.</summary>
    public static readonly IReadOnlySet<string> NoGradient = new HashSet<string>(StringComparer.Ordinal)
    {
        "Shape", "Size", "ConstantOfShape", "Range", "Constant", "Equal", "Less", "Greater", "LessOrEqual",
        "GreaterOrEqual", "Not", "And", "Or", "Xor", "ArgMax", "ArgMin", "NonZero", "Floor", "Ceil", "Round",
        "Sign", "IsNaN", "IsInf", "EyeLike", "RandomNormalLike", "RandomUniformLike", "OneHot",
    };

    public static IGradientRule? Find(string opType) => Table.GetValueOrDefault(opType);

    /// <summary>Op types with a rule (for diagnostics and tests).</summary>
    public static IReadOnlyCollection<string> Supported => Table.Keys;
}
