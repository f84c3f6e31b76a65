using System.Text.Json.Nodes;
using Spm.Core;
using DataType = Spm.Diffusion.Onnx.Proto.TensorProto.Types.DataType;

namespace Spm.Shapes.Building;

/// <summary>Size of a CLIP-architecture text encoder.</summary>
public sealed record ClipTextConfig
{
    /// <summary>Vocabulary size (CLIP's BPE: 49,408).</summary>
    public int VocabSize { get; init; } = 49408;

    /// <summary>Positions (the prompt length, 77).</summary>
    public int MaxPositions { get; init; } = 77;

    /// <summary>Hidden width (SD 1.x: 768).</summary>
    public int Width { get; init; } = 768;

    /// <summary>Transformer layers (SD 1.x: 12).</summary>
    public int Layers { get; init; } = 12;

    /// <summary>Attention heads (SD 1.x: 12).</summary>
    public int Heads { get; init; } = 12;

    /// <summary>MLP width (SD 1.x: 3072).</summary>
    public int IntermediateSize { get; init; } = 3072;

    /// <summary>LayerNorm epsilon.</summary>
    public float LayerNormEps { get; init; } = 1e-5f;

    /// <summary>MLP activation: <c>quick_gelu</c> (CLIP ViT-L, SD 1.x) or <c>gelu</c> (OpenCLIP, SD 2.x).</summary>
    public string Activation { get; init; } = "quick_gelu";

    /// <summary>
    /// Width of <c>text_embeds</c>, the projection of the EOS token's final state (<c>CLIPTextModelWithProjection</c>,
    /// SDXL's second encoder: 1280); null for a plain <c>CLIPTextModel</c> with <c>pooler_output</c>.
    /// </summary>
    public int? ProjectionDim { get; init; }

    /// <summary>
    /// Whether the graph also outputs <c>hidden_states.0</c> (the embeddings) to <c>hidden_states.N</c> (after layer N),
    /// as optimum exports SDXL's encoders, whose penultimate states condition the UNet.
    /// </summary>
    public bool OutputHiddenStates { get; init; }

    /// <summary>The tiny fixture's text encoder: width 32, 2 layers, 4 heads, MLP 64.</summary>
    public static ClipTextConfig Tiny => new() { Width = 32, Layers = 2, Heads = 4, IntermediateSize = 64 };

    /// <summary>Checks the sizes, throwing <see cref="SpmFormatException"/> naming the field.</summary>
    public void Validate(string? source = null)
    {
        void Fail(string key, string detail) => throw new SpmFormatException(source, key, detail);
        if (VocabSize is <= 0 or > 1_000_000) Fail("vocab_size", $"out of range: {VocabSize}");
        if (MaxPositions is <= 0 or > 4096) Fail("max_position_embeddings", $"out of range: {MaxPositions}");
        if (Width is <= 0 or > 16384) Fail("hidden_size", $"out of range: {Width}");
        if (Layers is <= 0 or > 128) Fail("num_hidden_layers", $"out of range: {Layers}");
        if (Heads <= 0 || Width % Heads != 0) Fail("num_attention_heads", $"{Width} is not divisible into {Heads} heads");
        if (IntermediateSize is <= 0 or > 65536) Fail("intermediate_size", $"out of range: {IntermediateSize}");
        if (Activation is not ("quick_gelu" or "gelu")) Fail("hidden_act", $"unsupported activation '{Activation}'");
        if (ProjectionDim is <= 0 or > 16384) Fail("projection_dim", $"out of range: {ProjectionDim}");
    }

    /// <summary>The config as a transformers-style <c>CLIPTextConfig</c> JSON object.</summary>
    public JsonObject ToJson()
    {
        var o = new JsonObject
        {
        ["architectures"] = new JsonArray(ProjectionDim is null ? "CLIPTextModel" : "CLIPTextModelWithProjection"),
        ["model_type"] = "clip_text_model",
        ["vocab_size"] = VocabSize,
        ["max_position_embeddings"] = MaxPositions,
        ["hidden_size"] = Width,
        ["num_hidden_layers"] = Layers,
        ["num_attention_heads"] = Heads,
        ["intermediate_size"] = IntermediateSize,
        ["layer_norm_eps"] = LayerNormEps,
        ["hidden_act"] = Activation,
        ["bos_token_id"] = 49406,
        ["eos_token_id"] = 49407,
        ["pad_token_id"] = 49407,
        };
        if (ProjectionDim is { } p) o["projection_dim"] = p;
        return o;
    }
}

/// <summary>
/// Builds a CLIP-architecture text encoder as ONNX with the fixture's parameter names: token and position
/// embeddings (<c>tok.weight</c>, <c>pos.weight</c>), pre-LN layers (<c>layers.N.layer_norm1</c>,
/// <c>q_proj/k_proj/v_proj/out_proj</c>, <c>layer_norm2</c>, <c>fc1/fc2</c>) with a causal mask, and
/// <c>final_layer_norm</c>. Input <c>input_ids</c> [B, S] int32; outputs <c>last_hidden_state</c> [B, S, D] and
/// <c>pooler_output</c> [B, D] (the hidden state at the EOS token, found as the ArgMax of the ids, since EOS has
/// the largest id in CLIP's vocabulary). With <see cref="ClipTextConfig.ProjectionDim"/> the pooled state goes through
/// <c>text_projection</c> (no bias) and the outputs are optimum's for <c>CLIPTextModelWithProjection</c>:
/// <c>text_embeds</c> [B, P] then <c>last_hidden_state</c>; with <see cref="ClipTextConfig.OutputHiddenStates"/>,
/// <c>hidden_states.0..N</c> [B, S, D] follow (the residual stream before each layer and after the last, without the
/// final LayerNorm, as transformers returns them).
/// </summary>
public static class ClipTextEncoderBuilder
{
    /// <summary>Declares the text encoder in a new <see cref="GraphBuilder"/>.</summary>
    public static GraphBuilder Create(ClipTextConfig c, ulong seed)
    {
        c.Validate();
        var g = new GraphBuilder("main_graph", seed);
        int d = c.Width, heads = c.Heads, p = c.MaxPositions;
        var ids = g.Input("input_ids", DataType.Int32, "batch", "sequence");
        var ids64 = g.Node("Cast", [ids], Attr.Int("to", (long)DataType.Int64));
        var shape = g.Node("Shape", [ids64]);
        var seqLen = g.Node("Slice", [shape, g.ConstInt64([1]), g.ConstInt64([2]), g.ConstInt64([0])]);

        string tok, pos;
        using (g.Scope("tok"))
            tok = g.Node("Gather", [g.Parameter("weight", [c.VocabSize, d], TensorInit.Normal(0.02f), "tok.weight"), ids64]);
        using (g.Scope("pos"))
            pos = g.Node("Slice", [g.Parameter("weight", [p, d], TensorInit.Normal(0.01f), "pos.weight"), g.ConstInt64([0]), seqLen, g.ConstInt64([0])]);
        var x = g.NodeNamed("Add", [tok, pos], c.OutputHiddenStates ? "hidden_states.0" : null);

        // Causal mask: a constant [P, P] with a large negative value above the diagonal, cut to [S, S].
        var maskValues = new float[p * p];
        for (int i = 0; i < p; i++)
            for (int j = i + 1; j < p; j++) maskValues[i * p + j] = -1e9f;
        var square = g.Node("Concat", [seqLen, seqLen], Attr.Int("axis", 0));
        var mask = g.Node("Slice", [g.ConstFloat(maskValues, p, p), g.ConstInt64([0, 0]), square, g.ConstInt64([0, 1])]);

        long headDim = d / heads;
        float scale = (float)Math.Pow(headDim, -0.5);
        for (int layer = 0; layer < c.Layers; layer++)
        {
            using var _ = g.Scope($"layers.{layer}");
            var h = g.LayerNorm("layer_norm1", x, d, c.LayerNormEps);
            var q = g.Linear("q_proj", h, d, d);
            var k = g.Linear("k_proj", h, d, d);
            var v = g.Linear("v_proj", h, d, d);
            var o = g.Attend(g.SplitHeads(q, heads, headDim), g.SplitHeads(k, heads, headDim, keyLayout: true),
                g.SplitHeads(v, heads, headDim), scale, mask, scaleQueryFirst: true);
            x = g.Node("Add", [x, g.Linear("out_proj", g.MergeHeads(o, d), d, d)]);
            h = g.LayerNorm("layer_norm2", x, d, c.LayerNormEps);
            h = g.Linear("fc1", h, d, c.IntermediateSize);
            h = c.Activation == "quick_gelu"
                ? g.Node("Mul", [h, g.Node("Sigmoid", [g.Node("Mul", [h, g.ConstScalar(1.702f)])])])
                : g.Node("Mul", [g.Node("Mul", [h, g.Node("Add", [g.Node("Erf", [g.Node("Div", [h, g.ConstScalar(1.4142135f)])]), g.ConstScalar(1f)])]), g.ConstScalar(0.5f)]);
            x = g.NodeNamed("Add", [x, g.Linear("fc2", h, c.IntermediateSize, d)], c.OutputHiddenStates ? $"hidden_states.{layer + 1}" : null);
        }
        var last = g.LayerNorm("final_layer_norm", x, d, c.LayerNormEps, outputName: "last_hidden_state");

        // pooler_output: row b·S + argmax(ids[b]) of the [B·S, D] flattened hidden states.
        var eos = g.Node("ArgMax", [ids], Attr.Int("axis", -1), Attr.Int("keepdims", 0), Attr.Int("select_last_index", 0));
        var batchScalar = g.Node("Gather", [shape, g.ConstInt64([0], scalar: true)], Attr.Int("axis", 0));
        var seqScalar = g.Node("Gather", [shape, g.ConstInt64([1], scalar: true)], Attr.Int("axis", 0));
        var rows = g.Node("Range", [g.ConstInt64([0], scalar: true), batchScalar, g.ConstInt64([1], scalar: true)]);
        var flatIndex = g.Node("Add", [g.Node("Mul", [rows, seqScalar]), eos]);
        var flat = g.Node("Flatten", [last], Attr.Int("axis", 2));
        if (c.ProjectionDim is { } proj)
        {
            var pooled = g.Node("Gather", [flat, flatIndex], Attr.Int("axis", 0));
            using (g.Scope("text_projection"))
            {
                var w = g.MatMulWeight(d, proj, TensorInit.Uniform(NnLayers.DefaultBound(d)));
                g.NodeNamed("MatMul", [pooled, w], "text_embeds");
            }
            g.Output("text_embeds", DataType.Float, "batch", proj);
            g.Output("last_hidden_state", DataType.Float, "batch", "sequence", d);
        }
        else
        {
            g.NodeNamed("Gather", [flat, flatIndex], "pooler_output", Attr.Int("axis", 0));
            g.Output("last_hidden_state", DataType.Float, "batch", "sequence", d);
            g.Output("pooler_output", DataType.Float, "batch", d);
        }
        if (c.OutputHiddenStates)
            for (int i = 0; i <= c.Layers; i++) g.Output($"hidden_states.{i}", DataType.Float, "batch", "sequence", d);
        return g;
    }
}
