using DataType = Spm.Diffusion.Onnx.Proto.TensorProto.Types.DataType;

namespace Spm.Shapes.Building;

/// <summary>
/// The encoder half of an SD-style autoencoder (diffusers <c>Encoder</c> module names: <c>encoder.conv_in</c>,
/// <c>encoder.down_blocks.N</c>, <c>encoder.mid_block</c>, <c>encoder.conv_out</c>, <c>quant_conv</c>), made
/// <b>deterministic</b>: <c>conv_out</c> writes the latent channels directly instead of SD's mean and log-variance,
/// because the project trains its own small autoencoders with a plain reconstruction loss (no sampling, no KL).
/// Pipelines the project builds ship it as <c>vae_encoder/</c> (<see cref="CreatePipelineEncoder"/>), so a later build can
/// continue from a pipeline with the very encoder its UNet was trained on.
/// </summary>
public static class VaeEncoderBuilder
{
    private const float Eps = 1e-6f;

    /// <summary>Name of the image input ([B, 3, H, W], values in [-1, 1]).</summary>
    public const string ImageInput = "image";

    /// <summary>Name of the latent output ([B, latent, H / f, W / f], not yet multiplied by the scaling factor).</summary>
    public const string LatentOutput = "latent";

    /// <summary>Name of the optional colour-matrix input of <see cref="CreateAutoencoder"/>.</summary>
    public const string ColourTransformInput = "colour_transform";

    /// <summary>Name of the optional output of <see cref="CreateAutoencoder"/>: the reconstruction times the colour matrix.</summary>
    public const string ColourOutput = "sample_colour";

    /// <summary>Name of the optional noise input of <see cref="CreateAutoencoder"/> (added to the latent the decoder reads).</summary>
    public const string LatentNoiseInput = "latent_noise";

    /// <summary>Name of the reconstruction output of <see cref="CreateAutoencoder"/>.</summary>
    public const string ReconstructionOutput = "sample";

    /// <summary>Name of the image input of a pipeline's <c>vae_encoder/model.onnx</c> (diffusers' ONNX export's name).</summary>
    public const string PipelineImageInput = "sample";

    /// <summary>Name of the latent output of a pipeline's <c>vae_encoder/model.onnx</c> (deterministic, not yet scaled).</summary>
    public const string PipelineLatentOutput = "latent_sample";

    /// <summary>The encoder alone: <c>image</c> → <c>latent</c>.</summary>
    public static GraphBuilder CreateEncoder(VaeDecoderConfig c, ulong seed) => CreateNamedEncoder(c, seed, ImageInput, LatentOutput);

    /// <summary>
    /// The encoder as a pipeline folder's <c>vae_encoder/model.onnx</c>: <c>sample</c> → <c>latent_sample</c>, the names of
    /// diffusers' ONNX export; the latent is the deterministic code (no mean/log-variance pair), not yet multiplied by
    /// the scaling factor. Initializer names equal <see cref="CreateEncoder"/>'s.
    /// </summary>
    public static GraphBuilder CreatePipelineEncoder(VaeDecoderConfig c, ulong seed) => CreateNamedEncoder(c, seed, PipelineImageInput, PipelineLatentOutput);

    private static GraphBuilder CreateNamedEncoder(VaeDecoderConfig c, ulong seed, string imageInput, string latentOutput)
    {
        ArgumentNullException.ThrowIfNull(c);
        c.Validate();
        var g = new GraphBuilder("main_graph", seed);
        var x = g.Input(imageInput, DataType.Float, "batch", c.OutChannels, "height", "width");
        Emit(g, c, x, latentOutput);
        g.Output(latentOutput, DataType.Float, "batch", c.LatentChannels, "latent_height", "latent_width");
        return g;
    }

    /// <summary>
    /// Encoder and decoder in one graph, for training end to end: <c>image</c> → <c>latent</c> → <c>sample</c>.
    /// Initializer names are those of <see cref="CreateEncoder"/> and <see cref="VaeDecoderBuilder.Create"/>, so the
    /// trained values carry over to either by name.
    /// </summary>
    /// <param name="c">The decoder's configuration (the encoder mirrors it).</param>
    /// <param name="seed">Seed of the initial weights.</param>
    /// <param name="latentNoise">
    /// Add an input <see cref="LatentNoiseInput"/> (shaped like the latent) that is added to the latent before the
    /// decoder reads it. Fed with Gaussian noise during training, it makes the decoder tolerate small latent errors, so
    /// the encoder has to keep codes that decode differently (two close colours) further apart than the noise, as a
    /// VAE's sampling does: a diffusion model's small errors then stay within one code.
    /// </param>
    /// <param name="colourTransform">
    /// Add an input <see cref="ColourTransformInput"/> ([3, 3, 1, 1], a per-pixel 3x3 colour matrix) and an output
    /// <see cref="ColourOutput"/>: the reconstruction in that colour basis, for a reconstruction loss that weighs colour
    /// directions unequally (say hue over lightness).
    /// </param>
    public static GraphBuilder CreateAutoencoder(VaeDecoderConfig c, ulong seed, bool latentNoise = false, bool colourTransform = false)
    {
        ArgumentNullException.ThrowIfNull(c);
        c.Validate();
        var g = new GraphBuilder("main_graph", seed);
        var x = g.Input(ImageInput, DataType.Float, "batch", c.OutChannels, "height", "width");
        var z = Emit(g, c, x, LatentOutput);
        if (latentNoise)
        {
            var noise = g.Input(LatentNoiseInput, DataType.Float, "batch", c.LatentChannels, "latent_height", "latent_width");
            using (g.Scope("latent_noise"))
                z = g.Node("Add", [z, noise]);
        }
        VaeDecoderBuilder.Emit(g, c, z, ReconstructionOutput);
        g.Output(LatentOutput, DataType.Float, "batch", c.LatentChannels, "latent_height", "latent_width");
        g.Output(ReconstructionOutput, DataType.Float, "batch", c.OutChannels, "sample_height", "sample_width");
        if (colourTransform)
        {
            var m = g.Input(ColourTransformInput, DataType.Float, c.OutChannels, c.OutChannels, 1, 1);
            using (g.Scope("colour_transform"))
                g.NodeNamed("Conv", [ReconstructionOutput, m], ColourOutput);
            g.Output(ColourOutput, DataType.Float, "batch", c.OutChannels, "sample_height", "sample_width");
        }
        return g;
    }

    private static string Emit(GraphBuilder g, VaeDecoderConfig c, string x, string outputName)
    {
        int n = c.BlockOutChannels.Count;
        long top = c.BlockOutChannels[^1];
        string h;
        using (g.Scope("encoder"))
        {
            h = g.Conv("conv_in", x, c.OutChannels, c.BlockOutChannels[0], 3);
            long prev = c.BlockOutChannels[0];
            for (int i = 0; i < n; i++)
            {
                long outCh = c.BlockOutChannels[i];
                using var _ = g.Scope($"down_blocks.{i}");
                for (int j = 0; j < c.LayersPerBlock; j++)
                    h = VaeDecoderBuilder.Resnet(g, c, $"resnets.{j}", h, j == 0 ? prev : outCh, outCh);
                if (i < n - 1)
                {
                    using (g.Scope("downsamplers.0"))
                        h = g.Conv("conv", h, outCh, outCh, 3, stride: 2, padding: 1);
                }
                prev = outCh;
            }
            using (g.Scope("mid_block"))
            {
                h = VaeDecoderBuilder.Resnet(g, c, "resnets.0", h, top, top);
                h = VaeDecoderBuilder.Attention(g, c, "attentions.0", h, top);
                h = VaeDecoderBuilder.Resnet(g, c, "resnets.1", h, top, top);
            }
            h = g.GroupNorm("conv_norm_out", h, top, c.NormNumGroups, Eps);
            h = g.Silu("conv_act", h);
            h = g.Conv("conv_out", h, top, c.LatentChannels, 3);
        }
        return g.Conv("quant_conv", h, c.LatentChannels, c.LatentChannels, 1, outputName: outputName);
    }
}
