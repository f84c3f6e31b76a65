using Spm.Core;
using Spm.Core.Membranes;
using Spm.Core.SafeTensors;
using Spm.Diffusion.Pipelines;
using Spm.Diffusion.Runtime;

namespace Spm.Training.LatentAnchoring;

/// <summary>How one shard of a manifest runs.</summary>
/// <param name="OutputDirectory">Where every concept's SPM file (and its checkpoint and loss log) goes; shared storage when several machines run shards.</param>
/// <param name="Shard">Which concepts this run trains.</param>
/// <param name="Runtime">ONNX Runtime settings (threads, provider); the same thread count gives byte-identical files.</param>
/// <param name="Force">Retrain a concept whose file exists with other settings (otherwise it is reported as failed and kept).</param>
public sealed record ManifestRunOptions(string OutputDirectory, ShardSpec Shard, OnnxRuntimeOptions? Runtime = null, bool Force = false);

/// <summary>What happened to one concept of a shard.</summary>
public enum ManifestConceptState
{
    /// <summary>Trained from the start.</summary>
    Trained,

    /// <summary>Continued from the checkpoint an earlier, interrupted run left.</summary>
    Resumed,

    /// <summary>Its file was already there with the same settings and base model: left as it is.</summary>
    Skipped,

    /// <summary>It failed; the others went on. <see cref="ManifestConceptResult.Error"/> says why.</summary>
    Failed,
}

/// <summary>One concept's outcome.</summary>
/// <param name="Concept">The manifest entry.</param>
/// <param name="OutputPath">Its SPM file.</param>
/// <param name="State">Trained, resumed, skipped or failed.</param>
/// <param name="Error">The error message when it failed.</param>
/// <param name="ResumedFrom">The checkpoint step a resumed run started from.</param>
public sealed record ManifestConceptResult(ManifestConcept Concept, string OutputPath, ManifestConceptState State, string? Error = null, int ResumedFrom = 0);

/// <summary>Progress of a shard: which concept (1-based among the shard's) and, while it trains, its last step.</summary>
/// <param name="Number">The concept's number within the shard (1-based).</param>
/// <param name="Count">The shard's concept count.</param>
/// <param name="Concept">The concept.</param>
/// <param name="Step">The training step just done, or null when the concept starts or ends.</param>
/// <param name="Result">The concept's outcome once it ends.</param>
public sealed record ManifestProgress(int Number, int Count, ManifestConcept Concept, TrainingProgress? Step, ManifestConceptResult? Result = null);

/// <summary>
/// Trains one shard of a <see cref="TrainingManifest"/> (<c>spm train --manifest --shard I/N</c>): each of its concepts
/// in turn, isolated (an error in one is recorded and the next one starts with a fresh trainer), resumable (a finished
/// file with the same settings is skipped; an interrupted concept continues from its checkpoint). Concepts of one run
/// share gradient graphs (<see cref="TrainingGraphCache"/>), which never changes a result.
/// </summary>
public static class ManifestTrainer
{
    /// <summary>Runs the shard's concepts; returns one result per concept, in manifest order.</summary>
    /// <param name="modelFolder">The pipeline folder every concept trains on.</param>
    /// <param name="manifest">The manifest.</param>
    /// <param name="run">Output folder, shard, runtime.</param>
    /// <param name="progress">Reports concept starts, training steps and outcomes.</param>
    /// <param name="cancellationToken">Stops after the current iteration; the concept keeps its checkpoint for a rerun.</param>
    public static IReadOnlyList<ManifestConceptResult> Run(string modelFolder, TrainingManifest manifest, ManifestRunOptions run,
        IProgress<ManifestProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(modelFolder);
        ArgumentNullException.ThrowIfNull(manifest);
        ArgumentNullException.ThrowIfNull(run);
        var folder = ModelFolder.Open(modelFolder);
        string baseModel = LatentAnchoringTrainer.BaseModelId(folder);
        Directory.CreateDirectory(run.OutputDirectory);
        var mine = manifest.ShardConcepts(run.Shard);
        var results = new List<ManifestConceptResult>(mine.Count);
        using var graphs = new TrainingGraphCache();
        for (int n = 0; n < mine.Count; n++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var c = mine[n];
            progress?.Report(new ManifestProgress(n + 1, mine.Count, c, null));
            var result = RunOne(folder.Root, c, run, baseModel, graphs, n + 1, mine.Count, progress, cancellationToken);
            results.Add(result);
            progress?.Report(new ManifestProgress(n + 1, mine.Count, c, null, result));
        }
        return results;
    }

    /// <summary>
    /// Whether <paramref name="path"/> is a finished SPM of these settings: its <c>training</c> metadata equals what a
    /// run of <paramref name="options"/> writes and its <c>base_model</c> is <paramref name="baseModel"/>.
    /// </summary>
    /// <returns>Null when it is; otherwise why not (missing, unreadable, other settings, other model).</returns>
    public static string? WhyNotFinished(string path, LatentAnchoringOptions options, string baseModel)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(options);
        if (!File.Exists(path)) return "no file yet";
        IReadOnlyDictionary<string, string> meta;
        try
        {
            using var file = SafeTensorsFile.Open(path);
            meta = file.Metadata;
        }
        catch (SpmException ex)
        {
            return $"the file does not read as safetensors ({ex.Message})";
        }
        if (!meta.TryGetValue(SpmMetadataKeys.Training, out var training)) return "the file records no training settings";
        if (training != LatentAnchoringTrainer.SettingsJson(options)) return "the file was trained with other settings";
        if (!meta.TryGetValue(SpmMetadataKeys.BaseModel, out var model) || model != baseModel)
            return $"the file was trained on another model ({(model ?? "not recorded")}, this run: {baseModel})";
        return null;
    }

    private static ManifestConceptResult RunOne(string modelFolder, ManifestConcept c, ManifestRunOptions run, string baseModel, TrainingGraphCache graphs,
        int number, int count, IProgress<ManifestProgress>? progress, CancellationToken ct)
    {
        string path = c.OutputPath(run.OutputDirectory);
        bool overwrite = false;
        try
        {
            if (File.Exists(path))
            {
                var why = WhyNotFinished(path, c.Options, baseModel);
                if (why is null) return new ManifestConceptResult(c, path, ManifestConceptState.Skipped);
                if (!run.Force)
                    return new ManifestConceptResult(c, path, ManifestConceptState.Failed,
                        $"'{path}' exists but {why}; it was kept. Remove it, or rerun with --force to retrain it.");
                overwrite = true;
            }
            // Without --force a checkpoint of another run's settings is refused by its fingerprint (and kept); with it,
            // the concept starts afresh and the stale checkpoint is replaced at the first save.
            var output = new TrainingOutput(path, Overwrite: overwrite, Resume: !run.Force);
            using var trainer = LatentAnchoringTrainer.Create(modelFolder, c.Options, run.Runtime, graphs);
            var steps = progress is null ? null : new Relay<TrainingProgress>(p => progress.Report(new ManifestProgress(number, count, c, p)));
            var result = trainer.Train(output, steps, ct);
            return new ManifestConceptResult(c, path, result.ResumedFrom > 0 ? ManifestConceptState.Resumed : ManifestConceptState.Trained, null, result.ResumedFrom);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            // Isolation: the error is this concept's; the shard goes on with the next one (and exits non-zero at the end).
            return new ManifestConceptResult(c, path, ManifestConceptState.Failed, $"{ex.GetType().Name}: {ex.Message}");
        }
    }

    /// <summary>Forwards reports on the reporting thread (Progress&lt;T&gt; would post them to a context).</summary>
    private sealed class Relay<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
