using Spm.Diffusion.Onnx.Building;

namespace Spm.Training.Tests.Shapes;

/// <summary>Sizes of the proposed built-in tiny-shapes model (docs/tiny-shapes.md), from the project's own builders.</summary>
[Explicit("diagnostic: prints the parameter budget of the planned model")]
public class TinyShapesSizing
{
    [Test]
    public void PrintBudget()
    {
        var unets = new (string Name, UNetConfig Config)[]
        {
            ("unet 32/64/64 lpb1 ca64", new UNetConfig
            {
                SampleSize = 16, BlockOutChannels = [32, 64, 64], LayersPerBlock = 1, NormNumGroups = 8, CrossAttentionDim = 64, AttentionHeadDim = [4],
                DownBlockTypes = ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"], UpBlockTypes = ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
            }),
            ("unet 48/96/96 lpb1 ca32", new UNetConfig
            {
                SampleSize = 16, BlockOutChannels = [48, 96, 96], LayersPerBlock = 1, NormNumGroups = 8, CrossAttentionDim = 32, AttentionHeadDim = [4],
                DownBlockTypes = ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"], UpBlockTypes = ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
            }),
            ("unet 64/96/96 lpb1 ca32", new UNetConfig
            {
                SampleSize = 16, BlockOutChannels = [64, 96, 96], LayersPerBlock = 1, NormNumGroups = 16, CrossAttentionDim = 32, AttentionHeadDim = [4],
                DownBlockTypes = ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"], UpBlockTypes = ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
            }),
            ("unet 64/96/128 lpb1 ca32", new UNetConfig
            {
                SampleSize = 16, BlockOutChannels = [64, 96, 128], LayersPerBlock = 1, NormNumGroups = 16, CrossAttentionDim = 32, AttentionHeadDim = [4],
                DownBlockTypes = ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"], UpBlockTypes = ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
            }),
        };
        foreach (var (name, config) in unets)
        {
            var g = UNetBuilder.Create(config, 1);
            TestContext.Out.WriteLine($"{name}: {g.ParameterCount:N0} parameters, {g.InitializerBytes / 1e6:F2} MB");
        }
        foreach (var width in new[] { 32, 64 })
        {
            var te = ClipTextEncoderBuilder.Create(new ClipTextConfig { Width = width, Layers = 2, Heads = 4, IntermediateSize = 4 * width }, 1);
            TestContext.Out.WriteLine($"text encoder width {width}, 2 layers: {te.ParameterCount:N0} parameters, {te.InitializerBytes / 1e6:F2} MB");
        }
        foreach (var channels in new[] { new[] { 32, 32, 64 }, new[] { 16, 32, 64 }, new[] { 32, 64, 64 } })
        {
            var vae = VaeDecoderBuilder.Create(new VaeDecoderConfig { BlockOutChannels = channels, LayersPerBlock = 1, NormNumGroups = 8 }, 1);
            TestContext.Out.WriteLine($"vae decoder {string.Join('/', channels)} (x4): {vae.ParameterCount:N0} parameters, {vae.InitializerBytes / 1e6:F2} MB");
        }
    }
}
