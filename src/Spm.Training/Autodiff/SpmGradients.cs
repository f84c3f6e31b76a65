using Microsoft.ML.OnnxRuntime;
using Spm.Core;
using Spm.Core.Membranes;
using Spm.Core.SafeTensors;
using Spm.Core.Tensors;
using Spm.Diffusion.Membranes;
using Spm.Diffusion.Onnx;
using Spm.Diffusion.Onnx.Proto;
using Spm.Diffusion.Pipelines.Families;

namespace Spm.Training.Autodiff;

/// <summary>
/// What <c>spm grad</c> computes: d L / d tensor for every membrane tensor of an SPM file, with
/// <c>L = sum(out_sample * R)</c> on the membrane-injected UNet at a fixed multiplier — the check of a new export or
/// of the training engine against a reference framework.
/// </summary>
public static class SpmGradients
{
    /// <summary>Prefix of the output keys: <c>grad.&lt;key in the SPM file&gt;</c>.</summary>
    public const string KeyPrefix = "grad.";

    /// <summary>Computes the gradients.</summary>
    /// <param name="modelPath">A pipeline folder, a UNet folder or a UNet .onnx file.</param>
    /// <param name="spmPath">The SPM file.</param>
    /// <param name="multiplier">The membrane multiplier (gate) for every batch row.</param>
    /// <param name="inputsPath">
    /// A safetensors file with <c>sample</c>, <c>timestep</c>, <c>encoder_hidden_states</c> and <c>R</c>; for an SDXL
    /// UNet also <c>text_embeds</c> [B, P] and <c>time_ids</c> [B, 6] (the UNet's further conditioning inputs).
    /// </param>
    /// <param name="settings">Threads and provider.</param>
    /// <returns>Gradient tensors keyed <c>grad.&lt;key&gt;.lora_down.weight</c> / <c>.lora_up.weight</c>, shaped as in the SPM file, and the loss.</returns>
    /// <exception cref="SpmFormatException">A file is malformed or an input is missing or misshapen (the message names file and key).</exception>
    /// <exception cref="SpmMismatchException">The SPM does not fit the model.</exception>
    public static (Dictionary<string, FloatTensor> Gradients, double Loss) Compute(string modelPath, string spmPath, float multiplier,
        string inputsPath, GradientSessionSettings? settings = null)
    {
        var unet = OnnxModel.Load(modelPath);
        var layers = AdaptableLayerFinder.FindAll(unet);
        var adapter = SpmFile.Load(spmPath, new SpmLoadOptions { ModulePaths = layers.Select(l => l.ModulePath).Distinct().ToList() });
        var set = MembraneSetLoader.FromAdapter(adapter, Path.GetFileName(spmPath));
        var layout = MembraneLayout.Create(layers, [set]);
        var tensors = MembraneTensors.Build(layout);

        var feeds = ReadInputs(inputsPath, unet.Proto.Graph, out var r, out int batch);
        try
        {
            using var session = MembraneGradientSession.Create(unet, layout, [LossTerm.WeightedSum("out_sample", "R")],
                feeds.Where(kv => kv.Key != "R").ToDictionary(kv => kv.Key, kv => kv.Value), settings);
            var result = session.Run(feeds, tensors.Inputs, tensors.Gates(batch, [multiplier]));

            var grads = new Dictionary<string, FloatTensor>(StringComparer.Ordinal);
            float setScale = set.Membranes[0].Scale;
            foreach (var m in adapter.Membranes)
            {
                if (m.ModulePath is null) continue; // MembraneLayout.Create has already rejected unresolved keys
                var down = result.Gradients[MembraneNames.Down(m.ModulePath)];
                var up = result.Gradients[MembraneNames.Up(m.ModulePath)];
                // The stacked up input carries a per-layer alpha ratio folded in (MembraneTensors.Build): chain rule.
                float ratio = m.Scale / setScale;
                if (ratio != 1f) System.Numerics.Tensors.TensorPrimitives.Multiply(up.Span, ratio, up.Span);
                grads[KeyPrefix + SpmKeys.TensorName(m.Key, MembranePart.Down)] = new FloatTensor((int[])m.Down.Shape.Clone(), down.Data);
                grads[KeyPrefix + SpmKeys.TensorName(m.Key, MembranePart.Up)] = new FloatTensor((int[])m.Up.Shape.Clone(), up.Data);
            }
            return (grads, result.Loss);
        }
        finally
        {
            foreach (var v in feeds.Values) v.Dispose();
        }
    }

    /// <summary>Reads and validates the inputs file against the UNet's declared inputs.</summary>
    private static Dictionary<string, OrtValue> ReadInputs(string path, GraphProto graph, out FloatTensor r, out int batch)
    {
        using var f = SafeTensorsFile.Open(path);
        // SDXL UNets take text_embeds and time_ids beside the hidden states: the file must carry them too.
        var added = graph.Input.Select(i => i.Name).Where(ModelFamilies.SdxlUNetInputs.Contains).ToList();
        var needed = string.Join(", ", ["sample", "timestep", "encoder_hidden_states", .. added]) + " and R";
        FloatTensor Need(string key)
        {
            if (!f.Contains(key)) throw new SpmFormatException(path, key, $"missing (spm grad on this UNet needs {needed})");
            return f.ReadFloat(key);
        }
        var sample = Need("sample");
        var timestep = Need("timestep");
        var ehs = Need("encoder_hidden_states");
        r = Need("R");
        if (sample.Rank != 4) throw new SpmFormatException(path, "sample", $"expected [batch, channels, height, width], found {sample.ShapeString}");
        if (!r.Shape.SequenceEqual(sample.Shape))
            throw new SpmFormatException(path, "R", $"shape {r.ShapeString} differs from the output's shape {sample.ShapeString}");
        if (ehs.Rank != 3 || ehs.Shape[0] != sample.Shape[0])
            throw new SpmFormatException(path, "encoder_hidden_states", $"expected [{sample.Shape[0]}, tokens, width], found {ehs.ShapeString}");
        batch = sample.Shape[0];

        var feeds = new Dictionary<string, OrtValue>(StringComparer.Ordinal)
        {
            ["sample"] = MembraneGradientSession.ToOrt(sample),
            ["encoder_hidden_states"] = MembraneGradientSession.ToOrt(ehs),
            ["R"] = MembraneGradientSession.ToOrt(r),
        };
        foreach (var name in added)
        {
            var t = Need(name);
            if (t.Rank != 2 || t.Shape[0] != batch)
                throw new SpmFormatException(path, name, $"expected [{batch}, {(name == "time_ids" ? "6" : "width")}], found {t.ShapeString}");
            feeds[name] = MembraneGradientSession.ToOrt(t);
        }
        // Exporters differ in the timestep's type and rank (float [B], int64 [B], float scalar): follow the model.
        var declared = graph.Input.FirstOrDefault(i => i.Name == "timestep")
            ?? throw new SpmFormatException(null, "timestep", "the UNet has no 'timestep' input");
        var spec = Spm.Diffusion.Runtime.TensorSpec.FromValueInfo(declared, "UNet");
        feeds["timestep"] = Spm.Diffusion.Runtime.OrtTensors.TimestepRows(timestep.Data.Select(v => (double)v).ToArray(), spec, "UNet");
        return feeds;
    }
}
