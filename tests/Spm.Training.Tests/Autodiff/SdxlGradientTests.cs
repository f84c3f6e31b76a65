using Spm.Core;
using Spm.Core.Membranes;
using Spm.Core.Randomness;
using Spm.Core.SafeTensors;
using Spm.Core.Tensors;
using Spm.Diffusion.Membranes;
using Spm.Diffusion.Onnx;
using Spm.Diffusion.Pipelines.Families;
using Spm.Tests.Common;
using Spm.Training.Autodiff;

namespace Spm.Training.Tests.Autodiff;

/// <summary>
/// <c>spm grad</c> on the tiny SDXL UNet (text_embeds and time_ids fed, two transformer layers per block, linear
/// projections): membrane gradients against central differences of <c>sum(out_sample * R)</c> computed by the plain
/// injected UNet (no gradient graph involved), and the inputs file must carry SDXL's extra inputs.
/// </summary>
[TestFixture]
public class SdxlGradientTests
{
    private const float Multiplier = 1.5f;
    private string _dir = "";

    [SetUp]
    public void SetUp() => _dir = TestPaths.NewTempDir("spm-sdxl-grad");

    [TearDown]
    public void TearDown()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    private string WriteSpm()
    {
        var layers = AdaptableLayerFinder.FindTransformerLayers(OnnxModel.Load(Path.Combine(TinySdxl.Folder, "unet", "model.onnx")));
        var rng = new SeededRandom(17);
        var membranes = new List<Membrane>();
        foreach (var l in layers.OrderBy(l => l.ModulePath, StringComparer.Ordinal))
        {
            var down = new FloatTensor(2, l.InFeatures);
            var up = new FloatTensor(l.OutFeatures, 2);
            rng.FillGaussian(down.Data);
            rng.FillGaussian(up.Data);
            // The trainer's scale for down (1/sqrt(fan in)) and a small up: a membrane in the range training reaches,
            // where the random UNet is smooth enough for difference quotients (larger ones saturate its attention).
            float d = 1f / MathF.Sqrt(l.InFeatures);
            for (int i = 0; i < down.Data.Length; i++) down.Data[i] *= d;
            for (int i = 0; i < up.Data.Length; i++) up.Data[i] *= 0.05f;
            membranes.Add(new Membrane(SpmKeys.KeyFor(l.ModulePath), down, up, 4f, l.ModulePath));
        }
        var path = Path.Combine(_dir, "spm.safetensors");
        SpmFile.Save(path, new SpmAdapter(new SpmConfig(["circle"], 2, 4f), membranes), overwrite: true);
        return path;
    }

    private static Dictionary<string, FloatTensor> Inputs()
    {
        var rng = new SeededRandom(23);
        FloatTensor Gaussian(params int[] shape)
        {
            var t = new FloatTensor(shape);
            rng.FillGaussian(t.Data);
            return t;
        }
        return new Dictionary<string, FloatTensor>(StringComparer.Ordinal)
        {
            ["sample"] = Gaussian(2, 4, 16, 16),
            ["timestep"] = new FloatTensor([2], [500f, 500f]),
            ["encoder_hidden_states"] = Gaussian(2, 77, 64),
            ["text_embeds"] = Gaussian(2, 32),
            ["time_ids"] = new FloatTensor([2, 6], [1024, 1024, 0, 0, 1024, 1024, 768, 512, 16, 32, 128, 128]),
            ["R"] = Gaussian(2, 4, 16, 16),
        };
    }

    [Test]
    [Category(TestCategories.Slow)]
    public void MembraneGradients_OnTheSdxlUNet_MatchFiniteDifferences()
    {
        var spm = WriteSpm();
        var inputs = Inputs();
        var inputsPath = Path.Combine(_dir, "inputs.safetensors");
        SafeTensorsWriter.WriteFloat(inputsPath, inputs, new Dictionary<string, string>(), overwrite: true);
        var (grads, loss) = SpmGradients.Compute(TinySdxl.Folder, spm, Multiplier, inputsPath, new GradientSessionSettings(IntraOpThreads: 1));
        Assert.That(grads, Has.Count.EqualTo(2 * 132));

        // The forward alone: the injected UNet as the pipeline runs it, membranes and gates as inputs.
        var spms = LoadedSpms.Load(TinySdxl.Folder, [spm]);
        using var pipeline = TinySdxl.Load(unet: spms.UNetSource);
        var text = new UNetTextInputs(inputs["encoder_hidden_states"], new Dictionary<string, FloatTensor>(StringComparer.Ordinal)
        {
            ["text_embeds"] = inputs["text_embeds"], ["time_ids"] = inputs["time_ids"],
        });
        var extras = new Dictionary<string, FloatTensor>(spms.Tensors.Inputs, StringComparer.Ordinal)
        {
            [MembraneNames.Gates] = spms.Tensors.Gates(2, [Multiplier]),
        };
        double scale = 0;
        double Loss()
        {
            var out_ = pipeline.UNet.Predict(inputs["sample"], 500, text, extras);
            double sum = 0;
            scale = 0;
            for (int i = 0; i < out_.Data.Length; i++)
            {
                sum += (double)out_.Data[i] * inputs["R"].Data[i];
                scale += Math.Abs((double)out_.Data[i] * inputs["R"].Data[i]);
            }
            return sum;
        }
        double forward = Loss();
        Assert.That(forward, Is.EqualTo(loss).Within(1e-4 * scale), $"the gradient graph's loss is the UNet's forward (sum of |terms| {scale})");

        // Layers of both transformer layers, cross- and self-attention, feed-forward and a linear projection; in each
        // tensor the element with the largest gradient (so the difference quotient is well above float noise).
        (string Path, MembranePart Part)[] probes =
        [
            ("up_blocks.0.attentions.2.transformer_blocks.1.attn2.to_k", MembranePart.Up),
            ("down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q", MembranePart.Down),
            ("mid_block.attentions.0.transformer_blocks.1.ff.net.0.proj", MembranePart.Down),
            ("down_blocks.1.attentions.1.proj_in", MembranePart.Up),
        ];
        foreach (var (path, part) in probes)
        {
            var g = grads[SpmGradients.KeyPrefix + SpmKeys.TensorName(SpmKeys.KeyFor(path), part)];
            int index = 0;
            for (int i = 1; i < g.Data.Length; i++) if (Math.Abs(g.Data[i]) > Math.Abs(g.Data[index])) index = i;
            // Single SPM, one alpha: the stacked input is the file's tensor (up [out, r] either way for linear layers).
            var values = spms.Tensors.Inputs[part == MembranePart.Down ? MembraneNames.Down(path) : MembraneNames.Up(path)].Data;
            float saved = values[index];
            // Central differences in float32: h = 0.03 keeps the truncation error and the float noise of the loss
            // (~1e-7 of the 400 summed |terms|) both below 0.1 % here.
            const float h = 3e-2f;
            values[index] = saved + h;
            double plus = Loss();
            values[index] = saved - h;
            double minus = Loss();
            values[index] = saved;
            double numeric = (plus - minus) / (2 * h);
            double analytic = g.Data[index];
            Assert.That(Math.Abs(analytic), Is.GreaterThan(0.05), $"{path} {part}");
            Assert.That(numeric, Is.EqualTo(analytic).Within(0.005 * Math.Abs(analytic) + 1e-4), $"{path} {part}[{index}]");
        }
    }

    [Test]
    public void InputsWithoutTextEmbeds_AreRefusedNamingTheFileAndKey()
    {
        var spm = WriteSpm();
        var inputs = Inputs();
        inputs.Remove("text_embeds");
        var inputsPath = Path.Combine(_dir, "inputs.safetensors");
        SafeTensorsWriter.WriteFloat(inputsPath, inputs, new Dictionary<string, string>(), overwrite: true);
        var ex = Assert.Throws<SpmFormatException>(() => SpmGradients.Compute(TinySdxl.Folder, spm, 1f, inputsPath))!;
        Assert.That(ex.Message, Does.Contain("inputs.safetensors").And.Contain("'text_embeds'").And.Contain("text_embeds, time_ids and R"));
    }
}
