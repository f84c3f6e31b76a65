using System.Globalization;
using Spm.Core.SafeTensors;
using Spm.Core.Tensors;

namespace Spm.Core.Membranes;

/// <summary>
/// Reads and writes SPM files: safetensors in the official LoRA-compatible layout (spec section 4) with the
/// <c>prompts</c>, <c>rank</c> and <c>alpha</c> metadata strings.
/// </summary>
/// <remarks>
/// <para>Loading checks, for every membrane key: the down and up weights exist and are floating-point (F32, F16,
/// BF16, F64 load and convert to float32), their shapes form a membrane (<see cref="Membrane.ShapeProblem"/>: both
/// linear or both conv, equal ranks, a 1x1 conv up weight), alpha holds exactly one value, and no weight is NaN
/// or infinite.</para>
/// <para>Non-finite policy: NaN/Inf weights or alpha are rejected by default with a <see cref="SpmFormatException"/>
/// naming the tensor; <see cref="SpmLoadOptions.AllowNonFinite"/> loads them anyway (for inspection).</para>
/// <para>Every problem with the file is a <see cref="SpmFormatException"/> naming the file and the key or metadata
/// field; a key the model lacks is a <see cref="SpmMismatchException"/> only with <see cref="SpmLoadOptions.RequireAllResolved"/>.</para>
/// </remarks>
public static class SpmFile
{
    /// <summary>Loads an SPM file.</summary>
    /// <exception cref="SpmFormatException">The file is malformed, lacks required metadata, or holds inconsistent or non-finite membranes.</exception>
    /// <exception cref="SpmMismatchException">With <see cref="SpmLoadOptions.RequireAllResolved"/>, a key the model lacks.</exception>
    public static SpmAdapter Load(string path, SpmLoadOptions? options = null)
    {
        options ??= new SpmLoadOptions();
        using var file = SafeTensorsFile.Open(path);
        var config = ReadConfig(file, options);

        var parts = new Dictionary<string, (SafeTensorInfo? Down, SafeTensorInfo? Up, SafeTensorInfo? Alpha)>(StringComparer.Ordinal);
        var order = new List<string>();
        foreach (var t in file.Tensors)
        {
            if (!SpmKeys.TrySplitTensorName(t.Name, out var key, out var part))
            {
                if (options.IgnoreUnknownTensors) continue;
                throw new SpmFormatException(path, t.Name, "not a membrane tensor (expected a name ending in .lora_down.weight, .lora_up.weight or .alpha)");
            }
            if (!parts.TryGetValue(key, out var entry)) order.Add(key);
            entry = part switch
            {
                MembranePart.Down => entry with { Down = t },
                MembranePart.Up => entry with { Up = t },
                _ => entry with { Alpha = t },
            };
            parts[key] = entry;
        }
        if (order.Count == 0) throw new SpmFormatException(path, null, "holds no membranes");

        var membranes = new List<Membrane>(order.Count);
        SafeTensorDType? storage = null;
        foreach (var key in order)
        {
            var (downInfo, upInfo, alphaInfo) = parts[key];
            if (downInfo is null) throw new SpmFormatException(path, SpmKeys.TensorName(key, MembranePart.Down), "missing (the membrane has no down weight)");
            if (upInfo is null) throw new SpmFormatException(path, SpmKeys.TensorName(key, MembranePart.Up), "missing (the membrane has no up weight)");
            storage ??= downInfo.DType;
            var downShape = ToIntShape(path, downInfo);
            var upShape = ToIntShape(path, upInfo);
            var problem = Membrane.ShapeProblem(downShape, upShape);
            if (problem is not null) throw new SpmFormatException(path, key, problem);
            var down = ReadWeights(file, downInfo, options);
            var up = ReadWeights(file, upInfo, options);

            float? alpha = null;
            int[]? alphaShape = null;
            if (alphaInfo is not null)
            {
                if (alphaInfo.ElementCount != 1 || alphaInfo.Shape.Count > 1)
                    throw new SpmFormatException(path, alphaInfo.Name, $"alpha must be a single value, got shape {alphaInfo.ShapeString}");
                var a = ReadWeights(file, alphaInfo, options);
                alpha = a.Data[0];
                alphaShape = a.Shape;
            }
            membranes.Add(new Membrane(key, down, up, alpha, null, alphaShape));
        }

        var adapter = new SpmAdapter(config, membranes, storage ?? SafeTensorDType.F32, path);
        if (options.ModulePaths is null) return adapter;
        adapter = adapter.Resolve(options.ModulePaths);
        if (options.RequireAllResolved)
        {
            var missing = adapter.Membranes.Where(m => m.ModulePath is null).Select(m => m.Key).ToList();
            if (missing.Count > 0)
                throw new SpmMismatchException(
                    $"'{path}': {missing.Count} of {adapter.Membranes.Count} membranes have no matching layer in the model; first: '{missing[0]}'.", missing[0]);
        }
        return adapter;
    }

    /// <summary>
    /// Saves <paramref name="adapter"/> atomically in the official layout: per membrane (in order) the down, up and
    /// alpha tensors, weights as <paramref name="dtype"/> (F32 by default; F16, BF16, F64 possible), alpha as F32 in
    /// its recorded shape; metadata from <see cref="SpmConfig.ToMetadata"/>. Identical adapters give identical bytes.
    /// </summary>
    /// <exception cref="IOException">The file exists and <paramref name="overwrite"/> is false.</exception>
    public static void Save(string path, SpmAdapter adapter, bool overwrite = false, SafeTensorDType dtype = SafeTensorDType.F32)
    {
        ArgumentNullException.ThrowIfNull(adapter);
        var entries = new List<SafeTensorEntry>(adapter.Membranes.Count * 3);
        foreach (var m in adapter.Membranes)
        {
            entries.Add(SafeTensorEntry.FromFloat(SpmKeys.TensorName(m.Key, MembranePart.Down), m.Down, dtype));
            entries.Add(SafeTensorEntry.FromFloat(SpmKeys.TensorName(m.Key, MembranePart.Up), m.Up, dtype));
            entries.Add(SafeTensorEntry.FromFloat(SpmKeys.TensorName(m.Key, MembranePart.Alpha),
                new FloatTensor(m.AlphaShape.ToArray(), new[] { m.Alpha })));
        }
        SafeTensorsWriter.Write(path, entries, adapter.Config.ToMetadata(), overwrite);
    }

    private static SpmConfig ReadConfig(SafeTensorsFile file, SpmLoadOptions options)
    {
        var md = file.Metadata;
        string Required(string field)
            => md.TryGetValue(field, out var v) ? v
               : throw new SpmFormatException(file.Path, "__metadata__." + field,
                   $"missing required metadata field '{field}' (supply it with the {char.ToUpperInvariant(field[0])}{field[1..]} load option)");

        var prompts = options.Prompts ?? SpmConfig.ParsePrompts(Required(SpmConfig.PromptsKey));
        if (prompts.Count == 0) throw new SpmFormatException(file.Path, "__metadata__.prompts", "lists no concept");

        int rank;
        if (options.Rank is { } r) rank = r;
        else if (!int.TryParse(Required(SpmConfig.RankKey), NumberStyles.Integer, CultureInfo.InvariantCulture, out rank))
            throw new SpmFormatException(file.Path, "__metadata__.rank", $"'{Clip(md[SpmConfig.RankKey])}' is not an integer");
        if (rank <= 0) throw new SpmFormatException(file.Path, "__metadata__.rank", $"rank must be positive, got {rank}");

        float alpha;
        if (options.Alpha is { } a) alpha = a;
        else if (!float.TryParse(Required(SpmConfig.AlphaKey), NumberStyles.Float, CultureInfo.InvariantCulture, out alpha))
            throw new SpmFormatException(file.Path, "__metadata__.alpha", $"'{Clip(md[SpmConfig.AlphaKey])}' is not a number");
        if (!float.IsFinite(alpha)) throw new SpmFormatException(file.Path, "__metadata__.alpha", $"alpha must be finite, got {alpha}");

        var extra = md.Where(kv => kv.Key is not (SpmConfig.PromptsKey or SpmConfig.RankKey or SpmConfig.AlphaKey))
                      .ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
        return new SpmConfig(prompts, rank, alpha, extra);
    }

    private static string Clip(string s) => s.Length <= 40 ? s : s[..40] + "...";

    private static int[] ToIntShape(string path, SafeTensorInfo info)
    {
        var shape = new int[info.Shape.Count];
        for (int i = 0; i < shape.Length; i++)
        {
            if (info.Shape[i] > int.MaxValue) throw new SpmFormatException(path, info.Name, $"dimension {info.Shape[i]} is too large");
            shape[i] = (int)info.Shape[i];
        }
        return shape;
    }

    private static FloatTensor ReadWeights(SafeTensorsFile file, SafeTensorInfo info, SpmLoadOptions options)
    {
        if (!SafeTensorDTypes.IsFloat(info.DType))
            throw new SpmFormatException(file.Path, info.Name, $"must be floating-point (F32, F16, BF16, F64), found {SafeTensorDTypes.HeaderName(info.DType)}");
        var t = file.ReadFloat(info.Name);
        if (!options.AllowNonFinite)
        {
            foreach (var v in t.Data)
                if (!float.IsFinite(v))
                    throw new SpmFormatException(file.Path, info.Name, "holds NaN or infinite values (rejected by policy; SpmLoadOptions.AllowNonFinite loads them)");
        }
        return t;
    }
}
