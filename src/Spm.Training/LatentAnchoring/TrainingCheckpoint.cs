using System.Globalization;
using Spm.Core;
using Spm.Core.Randomness;
using Spm.Core.SafeTensors;
using Spm.Core.Tensors;
using Spm.Training.Optimizers;

namespace Spm.Training.LatentAnchoring;

/// <summary>
/// A resumable training state in one safetensors file: the membrane parameters (<c>param.*</c>), the optimizer
/// state (<c>optim.*</c>), and in the metadata the completed step, the generator state and a fingerprint of
/// the options (a resume with different options is refused). Written atomically.
/// </summary>
public static class TrainingCheckpoint
{
    private const string Format = "spm-train-checkpoint/1";

    /// <summary>Writes a checkpoint (atomically, replacing the previous one).</summary>
    public static void Save(string path, int step, IReadOnlyList<TrainableTensor> parameters, Optimizer optimizer, SeededRandom rng, string fingerprint)
    {
        var tensors = new Dictionary<string, FloatTensor>(StringComparer.Ordinal);
        var meta = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["format"] = Format,
            ["step"] = step.ToString(CultureInfo.InvariantCulture),
            ["rng"] = Convert.ToBase64String(rng.SaveState()),
            ["fingerprint"] = fingerprint,
        };
        foreach (var p in parameters) tensors["param." + p.Name] = new FloatTensor(p.Shape, p.Value);
        optimizer.ExportState(tensors, meta);
        SafeTensorsWriter.WriteFloat(path, tensors, meta, overwrite: true);
    }

    /// <summary>Restores parameters (in place) and the optimizer from <paramref name="path"/>; returns the step and generator.</summary>
    /// <exception cref="SpmFormatException">Not a checkpoint, another run's checkpoint, or parameters that do not fit.</exception>
    public static (int Step, SeededRandom Rng) Load(string path, IReadOnlyList<TrainableTensor> parameters, Optimizer optimizer, string fingerprint)
    {
        using var file = SafeTensorsFile.Open(path);
        string Meta(string key) => file.Metadata.TryGetValue(key, out var v) ? v : throw new SpmFormatException(path, key, "missing from the checkpoint metadata.");
        if (Meta("format") != Format) throw new SpmFormatException(path, "format", $"is '{Meta("format")}', expected '{Format}'.");
        if (Meta("fingerprint") != fingerprint)
            throw new SpmFormatException(path, "fingerprint", "was written by a run with other options (concept, seed, iterations, rank, ...); resume with the same options or start afresh.");
        if (!int.TryParse(Meta("step"), NumberStyles.None, CultureInfo.InvariantCulture, out int step))
            throw new SpmFormatException(path, "step", "is not a non-negative integer.");
        byte[] rngState;
        try { rngState = Convert.FromBase64String(Meta("rng")); }
        catch (FormatException) { throw new SpmFormatException(path, "rng", "is not base64."); }
        SeededRandom rng;
        try { rng = SeededRandom.RestoreState(rngState); }
        catch (SpmFormatException e) { throw new SpmFormatException(path, "rng", e.Detail); }
        foreach (var p in parameters)
        {
            var key = "param." + p.Name;
            if (!file.Contains(key)) throw new SpmFormatException(path, key, "missing from the checkpoint.");
            var t = file.ReadFloat(key);
            if (t.Length != p.Value.Length) throw new SpmFormatException(path, key, $"has {t.Length} values, the model's membrane has {p.Value.Length}.");
            t.Data.CopyTo(p.Value, 0);
        }
        optimizer.ImportState(file);
        return (step, rng);
    }
}
