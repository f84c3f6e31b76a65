using Spm.Core;
using Spm.Diffusion.Onnx;

namespace Spm.Diffusion.Membranes;

/// <summary>What to bake and where (see <see cref="BakeJob.Run"/>).</summary>
/// <param name="ModelPath">A pipeline folder (with <c>unet/model.onnx</c>), a UNet folder or a UNet .onnx file.</param>
/// <param name="SpmPaths">The SPM files, in order.</param>
/// <param name="Multipliers">One fixed multiplier per SPM (or a single one for all).</param>
/// <param name="Mode">Merge into the weights or keep constant branches.</param>
/// <param name="OutPath">For a pipeline folder: the output folder. Otherwise: the output .onnx file, or a folder to put <c>model.onnx</c> in.</param>
/// <param name="Overwrite">Replace an existing output (off: an existing output is an error and stays untouched).</param>
/// <param name="AllowPartial">Apply the matching membranes of an SPM that does not fully fit (with warnings).</param>
public sealed record BakeRequest(
    string ModelPath,
    IReadOnlyList<string> SpmPaths,
    IReadOnlyList<float> Multipliers,
    BakeMode Mode,
    string OutPath,
    bool Overwrite = false,
    bool AllowPartial = false);

/// <summary>What a bake wrote.</summary>
/// <param name="ModelFile">The baked UNet .onnx file.</param>
/// <param name="OutPath">The output folder (pipeline) or file.</param>
/// <param name="LayerCount">Layers that received membranes.</param>
/// <param name="Warnings">Skipped membranes (with <see cref="BakeRequest.AllowPartial"/>).</param>
/// <param name="IsPipelineFolder">Whether a complete pipeline folder was written.</param>
public sealed record BakeResult(string ModelFile, string OutPath, int LayerCount, IReadOnlyList<string> Warnings, bool IsPipelineFolder);

/// <summary>
/// Bakes SPM files into a model on disk. A pipeline folder bakes into a complete pipeline folder: every other file is
/// hard-linked (copied where linking is impossible), the UNet keeps its original external data (linked) and the
/// changed or added weights go to a new data file (<see cref="MembraneBaker.BakedDataFileName"/>). The folder is
/// assembled under a temporary name beside the destination and renamed into place at the end, so an interrupted bake
/// leaves no half-written output, and an existing output is replaced only with <see cref="BakeRequest.Overwrite"/>.
/// </summary>
public static class BakeJob
{
    /// <summary>Runs the bake.</summary>
    /// <exception cref="SpmMismatchException">An SPM does not fit the model (nothing is written).</exception>
    /// <exception cref="Spm.Core.SpmFormatException">A model or SPM file is malformed.</exception>
    /// <exception cref="IOException">The output exists and <see cref="BakeRequest.Overwrite"/> is off, or the output is the input.</exception>
    public static BakeResult Run(BakeRequest request, IProgress<(int Done, int Total)>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (request.SpmPaths.Count == 0) throw new ArgumentException("Give at least one SPM file.", nameof(request));
        var multipliers = ExpandMultipliers(request.Multipliers, request.SpmPaths.Count);
        CheckOutput(request);
        bool pipeline = IsPipelineFolder(request.ModelPath);

        var unet = OnnxModel.Load(request.ModelPath);
        var layers = AdaptableLayerFinder.FindAll(unet);
        var sets = request.SpmPaths.Select(p => MembraneSetLoader.Load(p, layers)).ToList();
        var layout = MembraneLayout.Create(layers, sets, request.AllowPartial);
        cancellationToken.ThrowIfCancellationRequested();
        var baked = MembraneBaker.Bake(unet, layout, multipliers, request.Mode, progress, cancellationToken);
        var saveOptions = new OnnxSaveOptions(
            ExternalizeAboveBytes: unet.ExternalDataFiles.Count > 0 ? 1024 : null,
            NewDataFileName: FreeDataFileName(unet),
            Overwrite: true);

        if (pipeline)
        {
            var modelFile = WritePipelineFolder(request, unet, baked, saveOptions, cancellationToken);
            return new BakeResult(modelFile, Path.GetFullPath(request.OutPath), layout.Layers.Count, layout.Warnings, true);
        }

        var outFile = Directory.Exists(request.OutPath) || request.OutPath.EndsWith(Path.DirectorySeparatorChar) || request.OutPath.EndsWith('/')
            ? Path.Combine(request.OutPath, OnnxModel.DefaultFileName)
            : request.OutPath;
        outFile = Path.GetFullPath(outFile);
        if (string.Equals(outFile, Path.GetFullPath(unet.FilePath), StringComparison.Ordinal))
            throw new IOException($"'{request.OutPath}' is the input model; bake into another file.");
        if (File.Exists(outFile) && !request.Overwrite)
            throw new IOException($"'{outFile}' already exists (use --force to overwrite).");
        baked.Save(outFile, saveOptions);
        return new BakeResult(outFile, outFile, layout.Layers.Count, layout.Warnings, false);
    }

    /// <summary>
    /// Fails early (before any work) when the output exists without <see cref="BakeRequest.Overwrite"/>, or is the input.
    /// </summary>
    /// <exception cref="IOException">The output cannot be written.</exception>
    public static void CheckOutput(BakeRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        var dest = Path.GetFullPath(request.OutPath).TrimEnd(Path.DirectorySeparatorChar);
        if (IsPipelineFolder(request.ModelPath))
        {
            var source = Path.GetFullPath(request.ModelPath).TrimEnd(Path.DirectorySeparatorChar);
            if (string.Equals(source, dest, StringComparison.Ordinal) || dest.StartsWith(source + Path.DirectorySeparatorChar, StringComparison.Ordinal))
                throw new IOException($"'{request.OutPath}' is the input folder or inside it; bake into another folder.");
            if ((Directory.Exists(dest) || File.Exists(dest)) && !request.Overwrite)
                throw new IOException($"'{request.OutPath}' already exists (use --force to overwrite).");
        }
        else if (File.Exists(dest) && !request.Overwrite)
        {
            throw new IOException($"'{dest}' already exists (use --force to overwrite).");
        }
    }

    private static bool IsPipelineFolder(string path) =>
        Directory.Exists(path) && !File.Exists(Path.Combine(path, OnnxModel.DefaultFileName));

    /// <summary>One multiplier per SPM: the list as given, or a single value repeated; none means 1.</summary>
    public static IReadOnlyList<float> ExpandMultipliers(IReadOnlyList<float> multipliers, int count)
    {
        ArgumentNullException.ThrowIfNull(multipliers);
        if (multipliers.Count == 0) return Enumerable.Repeat(1f, count).ToArray();
        if (multipliers.Count == 1) return Enumerable.Repeat(multipliers[0], count).ToArray();
        if (multipliers.Count != count)
            throw new ArgumentException($"Give one multiplier per SPM ({count}) or a single one for all; got {multipliers.Count}.");
        return multipliers;
    }

    private static string FreeDataFileName(OnnxModel unet)
    {
        var used = unet.ExternalDataFiles.ToHashSet(StringComparer.Ordinal);
        var name = MembraneBaker.BakedDataFileName;
        for (int i = 2; used.Contains(name); i++) name = $"spm_baked_{i}.pb";
        return name;
    }

    private static string WritePipelineFolder(BakeRequest request, OnnxModel unet, OnnxModel baked, OnnxSaveOptions saveOptions, CancellationToken ct)
    {
        var source = Path.GetFullPath(request.ModelPath).TrimEnd(Path.DirectorySeparatorChar);
        var dest = Path.GetFullPath(request.OutPath).TrimEnd(Path.DirectorySeparatorChar);
        if (string.Equals(source, dest, StringComparison.Ordinal) || dest.StartsWith(source + Path.DirectorySeparatorChar, StringComparison.Ordinal))
            throw new IOException($"'{request.OutPath}' is the input folder or inside it; bake into another folder.");
        if ((Directory.Exists(dest) || File.Exists(dest)) && !request.Overwrite)
            throw new IOException($"'{request.OutPath}' already exists (use --force to overwrite).");

        var parent = Path.GetDirectoryName(dest)!;
        Directory.CreateDirectory(parent);
        var staging = Path.Combine(parent, $".{Path.GetFileName(dest)}.spm-bake-{Guid.NewGuid():N}");
        var unetFile = Path.GetFullPath(unet.FilePath);
        var unetDir = Path.GetDirectoryName(unetFile)!;
        // The UNet and its data files are written by Save (which links the kept data itself).
        var skip = new HashSet<string>(StringComparer.Ordinal) { unetFile };
        foreach (var loc in unet.ExternalDataFiles) skip.Add(Path.GetFullPath(Path.Combine(unetDir, loc)));
        try
        {
            Directory.CreateDirectory(staging);
            foreach (var file in Directory.EnumerateFiles(source, "*", SearchOption.AllDirectories))
            {
                ct.ThrowIfCancellationRequested();
                var full = Path.GetFullPath(file);
                if (skip.Contains(full)) continue;
                // Never follow links out of the source folder.
                var info = new FileInfo(full);
                if (info.LinkTarget is not null) continue;
                var target = Path.Combine(staging, Path.GetRelativePath(source, full));
                Directory.CreateDirectory(Path.GetDirectoryName(target)!);
                if (!HardLink.TryCreate(full, target)) File.Copy(full, target);
            }
            var bakedFile = Path.Combine(staging, Path.GetRelativePath(source, unetFile));
            Directory.CreateDirectory(Path.GetDirectoryName(bakedFile)!);
            baked.Save(bakedFile, saveOptions);
            ct.ThrowIfCancellationRequested();

            // One atomic exchange where the OS has it: a kill leaves the old folder or the new one at dest.
            var old = Path.Combine(parent, $".{Path.GetFileName(dest)}.spm-old-{Guid.NewGuid():N}");
            if (DirectorySwap.Replace(staging, dest, old)) DeleteQuietly(old);
            return Path.Combine(dest, Path.GetRelativePath(source, unetFile));
        }
        catch
        {
            DeleteQuietly(staging);
            throw;
        }
    }

    private static void DeleteQuietly(string path)
    {
        try
        {
            if (Directory.Exists(path)) Directory.Delete(path, recursive: true);
            else if (File.Exists(path)) File.Delete(path);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}
