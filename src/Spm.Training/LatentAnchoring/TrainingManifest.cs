using System.Globalization;
using System.Text;
using Spm.Core;
using YamlDotNet.RepresentationModel;

namespace Spm.Training.LatentAnchoring;

/// <summary>One concept of a <see cref="TrainingManifest"/>.</summary>
/// <param name="Index">Its position in the manifest (0-based): what decides its shard.</param>
/// <param name="Line">The manifest line its entry starts on (1-based), for messages.</param>
/// <param name="FileName">The output file's name without extension (the entry's <c>file</c>, else a slug of the concept).</param>
/// <param name="Options">Its training settings: the entry's keys over the manifest's <c>defaults</c> over the model's.</param>
public sealed record ManifestConcept(int Index, int Line, string FileName, LatentAnchoringOptions Options)
{
    /// <summary>The SPM file this concept is written to inside <paramref name="outputDirectory"/>.</summary>
    public string OutputPath(string outputDirectory) => Path.Combine(outputDirectory, FileName + ".safetensors");
}

/// <summary>
/// Which part of a manifest one machine trains: concept <c>i</c> (0-based, in manifest order) belongs to shard
/// <c>i mod Count</c>. The assignment depends only on the manifest and <see cref="Count"/>, so every machine computes
/// the same split without talking to the others.
/// </summary>
/// <param name="Index">This shard, 0 to <paramref name="Count"/> - 1.</param>
/// <param name="Count">The number of shards.</param>
public readonly record struct ShardSpec(int Index, int Count)
{
    /// <summary>The whole manifest as one shard.</summary>
    public static ShardSpec All => new(0, 1);

    /// <summary>Kubernetes Indexed Jobs set this to the pod's completion index (0-based).</summary>
    public const string KubernetesIndexVariable = "JOB_COMPLETION_INDEX";

    /// <summary>Slurm job arrays set this to the task's array index.</summary>
    public const string SlurmIndexVariable = "SLURM_ARRAY_TASK_ID";

    /// <summary>Slurm's lowest array index of the job (subtracted, so <c>--array=1-3</c> works as well as <c>0-2</c>).</summary>
    public const string SlurmMinVariable = "SLURM_ARRAY_TASK_MIN";

    /// <summary>Whether concept <paramref name="index"/> of the manifest is this shard's.</summary>
    public bool Owns(int index) => index % Count == Index;

    /// <summary>
    /// Parses <c>I/N</c> (0 &lt;= I &lt; N) or <c>auto/N</c>: I from <see cref="KubernetesIndexVariable"/>, else from
    /// <see cref="SlurmIndexVariable"/> minus <see cref="SlurmMinVariable"/> (when set).
    /// </summary>
    /// <param name="text">The option's value.</param>
    /// <param name="environment">Reads an environment variable (null when unset); null = the process environment.</param>
    /// <exception cref="SpmException">Not of that form, out of range, or <c>auto</c> without either variable.</exception>
    public static ShardSpec Parse(string text, Func<string, string?>? environment = null)
    {
        ArgumentNullException.ThrowIfNull(text);
        environment ??= Environment.GetEnvironmentVariable;
        var parts = text.Split('/');
        if (parts.Length != 2 || !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out int count) || count < 1)
            throw new SpmException($"--shard '{text}': expected I/N or auto/N, with N a whole number of shards >= 1 (e.g. 0/3).");
        int index;
        if (parts[0].Equals("auto", StringComparison.OrdinalIgnoreCase))
        {
            if (environment(KubernetesIndexVariable) is { Length: > 0 } k8s)
                index = ParseIndex(k8s, KubernetesIndexVariable);
            else if (environment(SlurmIndexVariable) is { Length: > 0 } slurm)
                index = ParseIndex(slurm, SlurmIndexVariable) - (environment(SlurmMinVariable) is { Length: > 0 } min ? ParseIndex(min, SlurmMinVariable) : 0);
            else
                throw new SpmException($"--shard {text}: neither {KubernetesIndexVariable} (Kubernetes Indexed Job) nor {SlurmIndexVariable} (Slurm job array) is set; give the shard as I/{count}.");
        }
        else if (!int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out index))
            throw new SpmException($"--shard '{text}': '{parts[0]}' is not a shard index (a whole number, or auto).");
        if (index < 0 || index >= count)
            throw new SpmException($"--shard {text}: the shard index is {index}, but shards are numbered 0 to {count - 1}.");
        return new ShardSpec(index, count);
    }

    private static int ParseIndex(string value, string variable) =>
        int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out int i)
            ? i : throw new SpmException($"${variable} is '{value}', not a whole number.");

    /// <inheritdoc />
    public override string ToString() => $"{Index}/{Count}";
}

/// <summary>
/// A list of concepts to train with their settings (<c>spm train --manifest</c>), in YAML or JSON (JSON is YAML too):
/// <code>
/// defaults:            # optional, over the model's spm_train_defaults.json
///   seed: 1
/// concepts:
///   - concept: circle
///     surrogate: square
///   - concept: red
///     surrogate: blue
///     iterations: 300
///     file: red-v2      # optional output name (default: the concept as a file name)
/// </code>
/// Keys (in <c>defaults</c> and in each concept): <see cref="Keys"/>. Unknown keys, a missing concept, duplicate
/// concepts or output names, and bad values are errors naming the file, the entry and its line.
/// </summary>
public sealed class TrainingManifest
{
    private const long MaxFileBytes = 4 << 20;
    private const int MaxDepth = 8;

    /// <summary>Every settings key a manifest entry may carry (besides <c>concept</c> and <c>file</c>).</summary>
    public static IReadOnlyList<string> Keys { get; } =
    [
        "surrogate", "positive", "unconditional", "eta", "anchor_strength", "no_anchoring", "anchors", "iterations", "lr",
        "adam_epsilon", "warmup", "rank", "alpha", "resolution", "fixed_resolution", "seed", "checkpoint_every",
    ];

    private TrainingManifest(string? path, IReadOnlyList<ManifestConcept> concepts)
    {
        Path = path;
        Concepts = concepts;
    }

    /// <summary>The manifest file, if it was loaded from one.</summary>
    public string? Path { get; }

    /// <summary>The concepts, in manifest order.</summary>
    public IReadOnlyList<ManifestConcept> Concepts { get; }

    /// <summary>The concepts <paramref name="shard"/> trains (manifest order).</summary>
    public IReadOnlyList<ManifestConcept> ShardConcepts(ShardSpec shard) => Concepts.Where(c => shard.Owns(c.Index)).ToList();

    /// <summary>
    /// The settings a manifest starts from for a model: the options' own defaults (those of <c>spm train</c>) with the
    /// model's <c>spm_train_defaults.json</c> (anchor strength, lr, iterations, warm-up) and its image size.
    /// </summary>
    public static LatentAnchoringOptions ModelDefaults(string modelFolder)
    {
        var folder = Spm.Diffusion.Pipelines.ModelFolder.Open(modelFolder);
        var d = ModelTrainingDefaults.Load(folder.Root);
        return new LatentAnchoringOptions
        {
            Concept = "",
            AnchorStrength = d?.AnchorStrength ?? 1000.0,
            Iterations = d?.Iterations ?? 3000,
            LearningRate = d?.LearningRate ?? 1e-4,
            WarmupSteps = d?.WarmupSteps ?? 500,
            Resolution = folder.DefaultImageSize,
        };
    }

    /// <summary>Reads a manifest file (see <see cref="Parse"/>).</summary>
    /// <exception cref="SpmInputNotFoundException">The file does not exist.</exception>
    /// <exception cref="SpmFormatException">Not a valid manifest (the message names the entry, key and line).</exception>
    public static TrainingManifest Load(string path, LatentAnchoringOptions defaults)
    {
        ArgumentNullException.ThrowIfNull(path);
        var info = new FileInfo(path);
        if (!info.Exists) throw new SpmInputNotFoundException(path, "manifest");
        if (info.Length > MaxFileBytes) throw new SpmFormatException(path, null, $"the manifest is {info.Length} bytes; at most {MaxFileBytes} are accepted.");
        return Parse(File.ReadAllText(path), defaults, path);
    }

    /// <summary>Parses manifest text layered over <paramref name="defaults"/> (usually <see cref="ModelDefaults"/>).</summary>
    /// <exception cref="SpmFormatException">Not a valid manifest (the message names the entry, key and line).</exception>
    public static TrainingManifest Parse(string text, LatentAnchoringOptions defaults, string? fileName = null)
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentNullException.ThrowIfNull(defaults);
        var stream = new YamlStream();
        try
        {
            YamlDepthGuard.Check(text, fileName, MaxDepth);
            stream.Load(new StringReader(text));
        }
        catch (Exception ex) when (ex is YamlDotNet.Core.YamlException or InvalidOperationException or ArgumentException)
        {
            throw new SpmFormatException(fileName, null, $"invalid YAML/JSON: {ex.Message}", ex);
        }
        if (stream.Documents.Count == 0) throw new SpmFormatException(fileName, null, "the manifest is empty: expected 'concepts:', a list of concepts.");
        var root = stream.Documents[0].RootNode;
        YamlSequenceNode list;
        var start = defaults;
        switch (root)
        {
            case YamlSequenceNode seq:
                list = seq;
                break;
            case YamlMappingNode map:
                YamlSequenceNode? found = null;
                foreach (var (k, v) in map.Children)
                {
                    string key = (k as YamlScalarNode)?.Value ?? throw Error(fileName, "(top level)", k, "keys must be plain strings.");
                    switch (key)
                    {
                        case "concepts":
                            found = v as YamlSequenceNode ?? throw Error(fileName, "concepts", v, "expected a list of concepts.");
                            break;
                        case "defaults":
                            if (v is not YamlMappingNode dm) throw Error(fileName, "defaults", v, "expected a mapping of settings.");
                            start = ApplyKeys(dm, start, fileName, "defaults", allowConcept: false);
                            break;
                        default:
                            throw Error(fileName, key, k, "unknown top-level key (expected 'concepts' and optionally 'defaults').");
                    }
                }
                list = found ?? throw Error(fileName, "concepts", root, "missing: the list of concepts to train.");
                break;
            default:
                throw Error(fileName, "(top level)", root, "expected 'concepts:' with a list of concepts (or a list at the top level).");
        }
        if (list.Children.Count == 0) throw Error(fileName, "concepts", list, "the list of concepts is empty.");

        var concepts = new List<ManifestConcept>(list.Children.Count);
        var byConcept = new Dictionary<string, ManifestConcept>(StringComparer.OrdinalIgnoreCase);
        var byFile = new Dictionary<string, ManifestConcept>(StringComparer.OrdinalIgnoreCase);
        for (int i = 0; i < list.Children.Count; i++)
        {
            var node = list.Children[i];
            string where = $"concepts[{i}]";
            if (node is not YamlMappingNode entry) throw Error(fileName, where, node, "each concept must be a mapping with at least 'concept'.");
            var options = ApplyKeys(entry, start with { Concept = "" }, fileName, where, allowConcept: true);
            if (string.IsNullOrWhiteSpace(options.Concept)) throw Error(fileName, where + ".concept", node, "missing: the concept to erase.");
            string file = FileOf(entry, fileName, where) ?? Slug(options.Concept);
            if (file.Length == 0) throw Error(fileName, where + ".file", node, $"the concept '{options.Concept}' gives no usable file name; set 'file'.");
            int line = (int)node.Start.Line;
            var concept = new ManifestConcept(i, line, file, options);
            if (byConcept.TryGetValue(options.Concept, out var first))
                throw Error(fileName, where + ".concept", node, $"'{options.Concept}' is already concepts[{first.Index}] (line {first.Line}); a library holds each concept once.");
            if (byFile.TryGetValue(file, out var same))
                throw Error(fileName, where + ".file", node, $"the output name '{file}' is already concepts[{same.Index}]'s (line {same.Line}); set 'file' to tell them apart.");
            try { options.Validate(); }
            catch (ArgumentException ex) { throw Error(fileName, where, node, ex.Message); }
            byConcept[options.Concept] = concept;
            byFile[file] = concept;
            concepts.Add(concept);
        }
        return new TrainingManifest(fileName, concepts);
    }

    /// <summary>A concept as a file name: lower case, runs of anything but letters and digits as one '-'.</summary>
    public static string Slug(string concept)
    {
        ArgumentNullException.ThrowIfNull(concept);
        var sb = new StringBuilder(concept.Length);
        foreach (char c in concept.Trim().ToLowerInvariant())
        {
            if (char.IsAsciiLetterOrDigit(c)) sb.Append(c);
            else if (sb.Length > 0 && sb[^1] != '-') sb.Append('-');
        }
        return sb.ToString().TrimEnd('-');
    }

    private static string? FileOf(YamlMappingNode entry, string? fileName, string where)
    {
        foreach (var (k, v) in entry.Children)
        {
            if ((k as YamlScalarNode)?.Value != "file") continue;
            string name = Scalar(v, fileName, where + ".file");
            if (name.Length == 0 || name.Length > 200 || name is "." or ".." || name.IndexOfAny(['/', '\\', ':']) >= 0 || name.Any(char.IsControl))
                throw Error(fileName, where + ".file", v, $"'{name}' is not a plain file name (no folders; the folder is --out-dir).");
            return name.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase) ? name[..^".safetensors".Length] : name;
        }
        return null;
    }

    private static LatentAnchoringOptions ApplyKeys(YamlMappingNode map, LatentAnchoringOptions o, string? file, string where, bool allowConcept)
    {
        foreach (var (k, v) in map.Children)
        {
            string key = (k as YamlScalarNode)?.Value ?? throw Error(file, where, k, "keys must be plain strings.");
            string at = $"{where}.{key}";
            if (key is "concept" or "file")
            {
                if (!allowConcept) throw Error(file, at, k, $"'{key}' belongs to a concept, not to the defaults.");
                if (key == "concept") o = o with { Concept = Scalar(v, file, at).Trim() };
                continue;
            }
            string s = Scalar(v, file, at);
            o = key switch
            {
                "surrogate" => o with { Surrogate = s },
                "positive" => o with { Positive = s.Length == 0 ? null : s },
                "unconditional" => o with { Unconditional = s },
                "eta" => o with { Eta = Number(s, file, at, v) },
                "anchor_strength" => o with { AnchorStrength = Number(s, file, at, v) },
                "no_anchoring" => o with { Action = Bool(s, file, at, v) ? TrainingAction.Erase : TrainingAction.EraseWithAnchoring },
                "anchors" => o with { AnchorCount = Int(s, file, at, v) },
                "iterations" => o with { Iterations = Int(s, file, at, v) },
                "lr" => o with { LearningRate = Number(s, file, at, v) },
                "adam_epsilon" => o with { AdamEpsilon = Number(s, file, at, v) },
                "warmup" => o with { WarmupSteps = Int(s, file, at, v) },
                "rank" => o with { Rank = Int(s, file, at, v) },
                "alpha" => o with { Alpha = Number(s, file, at, v) },
                "resolution" => o with { Resolution = Int(s, file, at, v) },
                "fixed_resolution" => o with { DynamicResolution = !Bool(s, file, at, v) },
                "seed" => o with { Seed = ulong.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out var seed) ? seed : throw Error(file, at, v, $"'{s}' is not a seed (a whole number >= 0).") },
                "checkpoint_every" => o with { CheckpointEvery = Int(s, file, at, v) },
                _ => throw Error(file, at, k, $"unknown key (known: concept, file, {string.Join(", ", Keys)})."),
            };
        }
        return o;
    }

    private static string Scalar(YamlNode v, string? file, string at) =>
        v is YamlScalarNode s ? s.Value ?? "" : throw Error(file, at, v, "expected a single value, not a list or mapping.");

    private static double Number(string s, string? file, string at, YamlNode v) =>
        double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) && double.IsFinite(d) ? d : throw Error(file, at, v, $"'{s}' is not a number.");

    private static int Int(string s, string? file, string at, YamlNode v) =>
        int.TryParse(s, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var i) ? i : throw Error(file, at, v, $"'{s}' is not a whole number.");

    private static bool Bool(string s, string? file, string at, YamlNode v) => s.ToLowerInvariant() switch
    {
        "true" or "yes" => true,
        "false" or "no" => false,
        _ => throw Error(file, at, v, $"'{s}' is not true or false."),
    };

    private static SpmFormatException Error(string? file, string key, YamlNode node, string detail) =>
        new(file, $"{key} (line {node.Start.Line})", detail);
}
