using DataType = Spm.Diffusion.Onnx.Proto.TensorProto.Types.DataType;

namespace Spm.Shapes.Building;

/// <summary>
/// Builds diffusers' <c>UNet2DConditionModel</c> (SD 1.x/2.x structure) as an ONNX graph with the module
/// names and node names of a PyTorch export: inputs <c>sample</c> [B,C,H,W], <c>timestep</c> [B] (float),
/// <c>encoder_hidden_states</c> [B,S,D], and for SDXL (<see cref="UNetConfig.HasTextTimeEmbedding"/>) <c>text_embeds</c>
/// [B,P] and <c>time_ids</c> [B,6]; output <c>out_sample</c>. Only ops our autodiff supports are used.
/// </summary>
public static class UNetBuilder
{
    /// <summary>Declares the whole UNet in a new <see cref="GraphBuilder"/> (weights are generated when it is saved/built).</summary>
    public static GraphBuilder Create(UNetConfig config, ulong seed)
    {
        config.Validate();
        var g = new GraphBuilder("main_graph", seed);
        new Emitter(g, config).Emit();
        return g;
    }

    private sealed class Emitter(GraphBuilder g, UNetConfig c)
    {
        private string _encoderHiddenStates = "";
        private string _temb = "";

        public void Emit()
        {
            var sample = g.Input("sample", DataType.Float, "batch", c.InChannels, "height", "width");
            var timestep = g.Input("timestep", DataType.Float, "batch");
            _encoderHiddenStates = g.Input("encoder_hidden_states", DataType.Float, "batch", "sequence", c.CrossAttentionDim);
            string? textEmbeds = null, timeIds = null;
            if (c.HasTextTimeEmbedding)
            {
                textEmbeds = g.Input("text_embeds", DataType.Float, "batch", c.TextEmbedsDim);
                timeIds = g.Input("time_ids", DataType.Float, "batch", 6);
            }

            _temb = TimeEmbedding(sample, timestep);
            if (textEmbeds is not null) _temb = g.Node("Add", [_temb, AddEmbedding(textEmbeds, timeIds!)]);
            var h = g.Conv("conv_in", sample, c.InChannels, c.BlockOutChannels[0], c.ConvInKernel);

            var skips = new Stack<(string Value, long Channels)>();
            skips.Push((h, c.BlockOutChannels[0]));
            int n = c.BlockOutChannels.Count;
            long outCh = c.BlockOutChannels[0];
            for (int i = 0; i < n; i++)
            {
                long inCh = outCh;
                outCh = c.BlockOutChannels[i];
                bool cross = c.DownBlockTypes[i] == "CrossAttnDownBlock2D";
                using var _ = g.Scope($"down_blocks.{i}");
                for (int j = 0; j < c.LayersPerBlock; j++)
                {
                    h = Resnet($"resnets.{j}", h, j == 0 ? inCh : outCh, outCh);
                    if (cross) h = Transformer($"attentions.{j}", h, outCh, c.HeadsOf(i), c.TransformerLayersOf(i));
                    skips.Push((h, outCh));
                }
                if (i < n - 1)
                {
                    using (g.Scope("downsamplers.0"))
                        h = g.Conv("conv", h, outCh, outCh, 3, stride: 2, padding: c.DownsamplePadding);
                    skips.Push((h, outCh));
                }
            }

            using (g.Scope("mid_block"))
            {
                long ch = c.BlockOutChannels[^1];
                h = Resnet("resnets.0", h, ch, ch);
                h = Transformer("attentions.0", h, ch, c.HeadsOf(n - 1), c.TransformerLayersOf(n - 1));
                h = Resnet("resnets.1", h, ch, ch);
            }

            long prevOut = c.BlockOutChannels[^1];
            for (int i = 0; i < n; i++)
            {
                long up = c.BlockOutChannels[n - 1 - i];
                long blockIn = c.BlockOutChannels[Math.Max(n - 2 - i, 0)];
                bool cross = c.UpBlockTypes[i] == "CrossAttnUpBlock2D";
                int heads = c.HeadsOf(n - 1 - i);
                int transformerLayers = c.TransformerLayersOf(n - 1 - i);
                using var _ = g.Scope($"up_blocks.{i}");
                int layers = c.LayersPerBlock + 1;
                for (int j = 0; j < layers; j++)
                {
                    var (skip, skipCh) = skips.Pop();
                    long expectedSkip = j == layers - 1 ? blockIn : up;
                    if (skipCh != expectedSkip) throw new InvalidOperationException($"Skip channels {skipCh} != {expectedSkip} in up_blocks.{i}.");
                    long resIn = j == 0 ? prevOut : up;
                    h = g.Node("Concat", [h, skip], Attr.Int("axis", 1));
                    h = Resnet($"resnets.{j}", h, resIn + skipCh, up);
                    if (cross) h = Transformer($"attentions.{j}", h, up, heads, transformerLayers);
                }
                if (i < n - 1)
                {
                    using (g.Scope("upsamplers.0"))
                    {
                        var scales = g.ConstFloat([1f, 1f, 2f, 2f], 4);
                        h = g.Node("Resize", [h, "", scales],
                            Attr.String("coordinate_transformation_mode", "asymmetric"), Attr.Float("cubic_coeff_a", -0.75f),
                            Attr.String("mode", "nearest"), Attr.String("nearest_mode", "floor"));
                        h = g.Conv("conv", h, up, up, 3);
                    }
                }
                prevOut = up;
            }

            h = g.GroupNorm("conv_norm_out", h, c.BlockOutChannels[0], c.NormNumGroups, c.NormEps);
            h = g.Silu("conv_act", h);
            g.Conv("conv_out", h, c.BlockOutChannels[0], c.OutChannels, c.ConvOutKernel, outputName: "out_sample");
            g.Output("out_sample", DataType.Float, "batch", c.OutChannels, "height", "width");
        }

        /// <summary>time_proj (sinusoidal) then time_embedding (linear_1, SiLU, linear_2), as [B, 4·C0].</summary>
        private string TimeEmbedding(string sample, string timestep)
        {
            // The timestep is broadcast to the batch of `sample`, as diffusers does (a single timestep is allowed).
            var batch = g.Node("Slice", [g.Node("Shape", [sample]), g.ConstInt64([0]), g.ConstInt64([1]), g.ConstInt64([0])]);
            var t = g.Node("Expand", [timestep, batch]);
            int c0 = c.BlockOutChannels[0];
            string emb;
            using (g.Scope("time_proj"))
                emb = Sinusoidal(t, c0);
            using (g.Scope("time_embedding"))
            {
                var h = g.Gemm("linear_1", emb, c0, 4L * c0);
                h = g.Silu("act", h);
                return g.Gemm("linear_2", h, 4L * c0, 4L * c0);
            }
        }

        /// <summary>
        /// SDXL's <c>text_time</c> addition: each time id through the sinusoidal <c>add_time_proj</c> (flattened to
        /// [B·6] and back to [B, 6·W]), concatenated after <c>text_embeds</c>, then <c>add_embedding</c> (linear_1, SiLU,
        /// linear_2) to the timestep embedding's width, as diffusers' UNet2DConditionModel does.
        /// </summary>
        private string AddEmbedding(string textEmbeds, string timeIds)
        {
            int w = c.AdditionTimeEmbedDim;
            long c4 = 4L * c.BlockOutChannels[0];
            string timeEmbeds;
            using (g.Scope("add_time_proj"))
            {
                var flat = g.Node("Reshape", [timeIds, g.ConstInt64([-1])], Attr.Int("allowzero", 0));
                var emb = Sinusoidal(flat, w);
                timeEmbeds = g.Node("Reshape", [emb, g.ConstInt64([-1, 6L * w])], Attr.Int("allowzero", 0));
            }
            var add = g.Node("Concat", [textEmbeds, timeEmbeds], Attr.Int("axis", -1));
            using (g.Scope("add_embedding"))
            {
                var h = g.Gemm("linear_1", add, c.ProjectionClassEmbeddingsInputDim!.Value, c4);
                h = g.Silu("act", h);
                return g.Gemm("linear_2", h, c4, c4);
            }
        }

        /// <summary>diffusers' get_timestep_embedding of a 1-D input [N] into [N, width] (max period 10000).</summary>
        private string Sinusoidal(string t, int width)
        {
            int half = width / 2;
            // Frequencies computed in float32 step by step, as torch does: exp(-ln(10000)·i / (half - shift)).
            var freqs = new float[half];
            float logMax = (float)-Math.Log(10000.0);
            for (int i = 0; i < half; i++) freqs[i] = MathF.Exp(logMax * i / (half - c.FreqShift));
            var arg = g.Node("Mul", [g.Node("Unsqueeze", [t, g.ConstInt64([1])]), g.ConstFloat(freqs, 1, half)]);
            var sin = g.Node("Sin", [arg]);
            var cos = g.Node("Cos", [arg]);
            return g.Node("Concat", c.FlipSinToCos ? [cos, sin] : [sin, cos], Attr.Int("axis", -1));
        }

        /// <summary>ResnetBlock2D with time conditioning; node names as the exporter gives them (nonlinearity, nonlinearity_1, ...).</summary>
        private string Resnet(string module, string x, long inCh, long outCh)
        {
            using var _ = g.Scope(module);
            var h = g.GroupNorm("norm1", x, inCh, c.NormNumGroups, c.NormEps);
            h = g.Silu("nonlinearity", h);
            h = g.Conv("conv1", h, inCh, outCh, 3);
            var t = g.Silu("nonlinearity_1", _temb);
            t = g.Gemm("time_emb_proj", t, 4L * c.BlockOutChannels[0], outCh);
            t = g.Node("Unsqueeze", [t, g.ConstInt64([2, 3])]);
            h = g.Node("Add", [h, t]);
            h = g.GroupNorm("norm2", h, outCh, c.NormNumGroups, c.NormEps);
            h = g.Silu("nonlinearity_2", h);
            h = g.Conv("conv2", h, outCh, outCh, 3);
            var shortcut = inCh == outCh ? x : g.Conv("conv_shortcut", x, inCh, outCh, 1);
            return g.Node("Add", [shortcut, h]);
        }

        /// <summary>Transformer2DModel: GroupNorm, proj_in, BasicTransformerBlocks, proj_out, residual.</summary>
        private string Transformer(string module, string x, long channels, int heads, int layers)
        {
            using var _ = g.Scope(module);
            long inner = channels; // heads · (channels / heads)
            var h = g.GroupNorm("norm", x, channels, c.NormNumGroups, 1e-6f);
            var shape = g.Node("Shape", [x]);
            if (!c.UseLinearProjection)
            {
                h = g.Conv("proj_in", h, channels, inner, 1);
                h = ToTokens(h, inner);
            }
            else
            {
                h = ToTokens(h, channels);
                h = g.Linear("proj_in", h, channels, inner);
            }
            for (int b = 0; b < layers; b++)
                h = TransformerBlock($"transformer_blocks.{b}", h, inner, heads);
            if (!c.UseLinearProjection)
            {
                h = ToImage(h, shape);
                h = g.Conv("proj_out", h, inner, channels, 1);
            }
            else
            {
                h = g.Linear("proj_out", h, inner, channels);
                h = ToImage(h, shape);
            }
            return g.Node("Add", [h, x]);
        }

        private string ToTokens(string x, long channels)
        {
            var t = g.Node("Transpose", [x], Attr.Ints("perm", 0, 2, 3, 1));
            return g.Node("Reshape", [t, g.ConstInt64([0, -1, channels])], Attr.Int("allowzero", 0));
        }

        private string ToImage(string tokens, string shape)
        {
            var t = g.Node("Transpose", [tokens], Attr.Ints("perm", 0, 2, 1));
            return g.Node("Reshape", [t, shape], Attr.Int("allowzero", 0));
        }

        private string TransformerBlock(string module, string x, long dim, int heads)
        {
            using var _ = g.Scope(module);
            var n = g.LayerNorm("norm1", x, dim, 1e-5f);
            x = g.Node("Add", [Attention("attn1", n, n, dim, dim, heads), x]);
            n = g.LayerNorm("norm2", x, dim, 1e-5f);
            x = g.Node("Add", [Attention("attn2", n, _encoderHiddenStates, dim, c.CrossAttentionDim, heads), x]);
            n = g.LayerNorm("norm3", x, dim, 1e-5f);
            return g.Node("Add", [FeedForward("ff", n, dim), x]);
        }

        private string Attention(string module, string x, string context, long dim, long contextDim, int heads)
        {
            using var _ = g.Scope(module);
            long headDim = dim / heads;
            var q = g.Linear("to_q", x, dim, dim, bias: false);
            var k = g.Linear("to_k", context, contextDim, dim, bias: false);
            var v = g.Linear("to_v", context, contextDim, dim, bias: false);
            var o = g.Attend(g.SplitHeads(q, heads, headDim), g.SplitHeads(k, heads, headDim, keyLayout: true),
                g.SplitHeads(v, heads, headDim), (float)(1.0 / Math.Sqrt(headDim)));
            o = g.MergeHeads(o, dim);
            return g.Linear("to_out.0", o, dim, dim);
        }

        /// <summary>FeedForward with GEGLU: net.0.proj to 2·4·dim, hidden · gelu(gate), net.2 back to dim.</summary>
        private string FeedForward(string module, string x, long dim)
        {
            using var _ = g.Scope(module);
            long inner = 4 * dim;
            string geglu;
            using (g.Scope("net.0"))
            {
                var p = g.Linear("proj", x, dim, 2 * inner);
                var axis = g.ConstInt64([-1]);
                var hidden = g.Node("Slice", [p, g.ConstInt64([0]), g.ConstInt64([inner]), axis]);
                var gate = g.Node("Slice", [p, g.ConstInt64([inner]), g.ConstInt64([2 * inner]), axis]);
                // gelu(gate) = gate · 0.5 · (1 + erf(gate / √2)), exactly the exporter's sequence.
                var erf = g.Node("Erf", [g.Node("Div", [gate, g.ConstScalar(1.4142135f)])]);
                var gelu = g.Node("Mul", [g.Node("Mul", [gate, g.Node("Add", [erf, g.ConstScalar(1f)])]), g.ConstScalar(0.5f)]);
                geglu = g.Node("Mul", [hidden, gelu]);
            }
            return g.Linear("net.2", geglu, inner, dim);
        }
    }
}
