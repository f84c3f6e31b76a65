using Spm.Core;
using Spm.Core.IO;
using Spm.Core.Tensors;
using Spm.Diffusion.Onnx;

namespace Spm.Diffusion.Membranes;

/// <summary>What <see cref="OnnxAdapterExport.Export"/> wrote.</summary>
/// <param name="ModelFile">The injected UNet whose membrane tensors are inputs.</param>
/// <param name="AdapterFile">The <c>.onnx_adapter</c> file holding those tensors at the chosen multipliers.</param>
/// <param name="LayerCount">Layers with a membrane branch.</param>
/// <param name="ParameterCount">Tensors in the adapter.</param>
public sealed record OnnxAdapterExportResult(string ModelFile, string AdapterFile, int LayerCount, int ParameterCount);

/// <summary>
/// Exports SPMs for apps that use ONNX Runtime's multi-LoRA API instead of this library: the injected UNet (branches
/// beside every covered layer, membrane tensors as graph inputs) plus an <c>.onnx_adapter</c> file holding every
/// membrane input (<c>spm.&lt;layer&gt;.down/up</c>, <c>spm.scales</c>) and the gates at fixed multipliers
/// (<c>spm.gates</c> [1, R], broadcast over the batch). An app loads it with <c>OrtLoraAdapter.Create</c> and activates
/// it per run with <c>RunOptions.AddActiveLoraAdapter</c>.
/// </summary>
/// <remarks>
/// Limits: the gate is fixed at export (no facilitated transport per prompt; export one adapter per strength, or feed
/// <c>spm.gates</c> yourself); adapters are run-option inputs, which ONNX Runtime does not combine with IOBinding.
/// </remarks>
public static class OnnxAdapterExport
{
    /// <summary>The adapter file's name in the output folder.</summary>
    public const string AdapterFileName = "spm.onnx_adapter";

    /// <summary>Writes <c>model.onnx</c> (external data linked) and <see cref="AdapterFileName"/> into <paramref name="outDir"/>.</summary>
    /// <exception cref="SpmMismatchException">An SPM does not fit the model.</exception>
    /// <exception cref="IOException">An output exists and <paramref name="overwrite"/> is off.</exception>
    public static OnnxAdapterExportResult Export(string modelPath, IReadOnlyList<string> spmPaths, IReadOnlyList<float> multipliers,
        string outDir, bool overwrite = false, bool allowPartial = false)
    {
        ArgumentNullException.ThrowIfNull(modelPath);
        ArgumentNullException.ThrowIfNull(spmPaths);
        ArgumentNullException.ThrowIfNull(outDir);
        if (spmPaths.Count == 0) throw new ArgumentException("Give at least one SPM file.", nameof(spmPaths));
        var mults = BakeJob.ExpandMultipliers(multipliers, spmPaths.Count);
        var modelFile = Path.GetFullPath(Path.Combine(outDir, OnnxModel.DefaultFileName));
        var adapterFile = Path.GetFullPath(Path.Combine(outDir, AdapterFileName));
        foreach (var f in new[] { modelFile, adapterFile })
            if (File.Exists(f) && !overwrite) throw new IOException($"'{f}' already exists (use --force to overwrite).");

        var unet = OnnxModel.Load(modelPath);
        if (string.Equals(Path.GetFullPath(unet.FilePath), modelFile, StringComparison.Ordinal))
            throw new IOException($"'{outDir}' holds the input model; export into another folder.");
        var layers = AdaptableLayerFinder.FindAll(unet);
        var layout = MembraneLayout.Create(layers, spmPaths.Select(p => MembraneSetLoader.Load(p, layers)).ToList(), allowPartial);
        var proto = MembraneInjector.Inject(unet.Proto, layout);
        // One gates row for every batch row: its first dimension gets its own name instead of the batch's.
        var gates = proto.Graph.Input.Single(i => i.Name == MembraneNames.Gates);
        gates.Type.TensorType.Shape.Dim[0].DimParam = "spm_gate_rows";

        var tensors = MembraneTensors.Build(layout);
        var parameters = tensors.Inputs.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => (kv.Key, kv.Value)).ToList();
        parameters.Add((MembraneNames.Gates, tensors.Gates(1, mults.ToArray())));

        Directory.CreateDirectory(outDir);
        var bytes = OnnxAdapterFile.Build(parameters);
        AtomicFile.Write(adapterFile, s => s.Write(bytes), overwrite);
        OnnxModel.FromProto(proto, unet.BaseDirectory, unet.FilePath).Save(modelFile, new OnnxSaveOptions(Overwrite: overwrite));
        return new OnnxAdapterExportResult(modelFile, adapterFile, layout.Layers.Count, parameters.Count);
    }
}
