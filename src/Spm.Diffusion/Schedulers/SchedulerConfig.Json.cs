using System.Text.Json;
using Spm.Core;

namespace Spm.Diffusion.Schedulers;

public sealed partial record SchedulerConfig
{
    // A diffusers scheduler_config.json is a few hundred bytes; trained_betas can make it ~20 KB per 1000 steps.
    private const long MaxConfigBytes = 4L << 20;

    /// <summary>
    /// Reads a diffusers <c>scheduler_config.json</c>. Keys Spm does not use (_class_name, _diffusers_version,
    /// thresholding, ...) are ignored; absent keys keep this record's defaults, except timestep_spacing which stays
    /// null so each scheduler applies its own diffusers default, and skip_prk_steps which becomes false (diffusers'
    /// PNDMScheduler default).
    /// </summary>
    /// <exception cref="SpmException">The file is missing.</exception>
    /// <exception cref="SpmFormatException">The JSON is malformed or a known key has a bad value (the key is named).</exception>
    public static SchedulerConfig Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path)) throw new SpmException($"Scheduler config '{path}' is missing.");
        long size = new FileInfo(path).Length;
        if (size > MaxConfigBytes) throw new SpmFormatException(path, null, $"file is {size} bytes; a scheduler config is at most {MaxConfigBytes} bytes");
        return Parse(File.ReadAllText(path), path);
    }

    /// <summary>Parses scheduler config JSON text; <paramref name="sourcePath"/> names the origin in errors.</summary>
    /// <exception cref="SpmFormatException">The JSON is malformed or a known key has a bad value.</exception>
    public static SchedulerConfig Parse(string json, string? sourcePath = null)
    {
        ArgumentNullException.ThrowIfNull(json);
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json, new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip });
        }
        catch (JsonException ex)
        {
            throw new SpmFormatException(sourcePath, null, $"invalid JSON: {ex.Message}", ex);
        }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw new SpmFormatException(sourcePath, null, "expected a JSON object");
            var r = new Reader(root, sourcePath);
            var c = new SchedulerConfig
            {
                NumTrainTimesteps = r.Int("num_train_timesteps", 1000, 2, 100_000),
                BetaStart = r.Double("beta_start", 0.00085, 0, 1),
                BetaEnd = r.Double("beta_end", 0.012, 0, 1),
                BetaSchedule = r.Choice("beta_schedule", "scaled_linear", "linear", "scaled_linear", "squaredcos_cap_v2"),
                TrainedBetas = r.DoubleArray("trained_betas", 100_000),
                PredictionType = r.Choice("prediction_type", "epsilon", "epsilon", "v_prediction", "sample"),
                StepsOffset = r.Int("steps_offset", 1, 0, 100_000),
                TimestepSpacing = r.ChoiceOrNull("timestep_spacing", "leading", "trailing", "linspace"),
                SetAlphaToOne = r.Bool("set_alpha_to_one", false),
                ClipSample = r.Bool("clip_sample", false),
                ClipSampleRange = r.Double("clip_sample_range", 1.0, 0, double.MaxValue),
                // diffusers' PNDMScheduler defaults to Runge-Kutta warm-up when the key is absent (SD configs set it true).
                SkipPrkSteps = r.Bool("skip_prk_steps", false),
                UseKarrasSigmas = r.Bool("use_karras_sigmas", false),
            };
            if (c.TrainedBetas is { } tb && tb.Count != c.NumTrainTimesteps)
                throw new SpmFormatException(sourcePath, "trained_betas", $"has {tb.Count} entries but num_train_timesteps is {c.NumTrainTimesteps}");
            if (c.TrainedBetas is null && c.BetaSchedule != "squaredcos_cap_v2" && !(c.BetaStart > 0 && c.BetaEnd > 0 && c.BetaStart < 1 && c.BetaEnd < 1))
                throw new SpmFormatException(sourcePath, "beta_start", "beta_start and beta_end must lie in (0, 1)");
            return c;
        }
    }

    /// <summary>Typed, range-checked access to optional keys; null JSON values mean "use the default".</summary>
    private readonly struct Reader(JsonElement root, string? path)
    {
        private bool TryGet(string key, out JsonElement value) =>
            root.TryGetProperty(key, out value) && value.ValueKind != JsonValueKind.Null;

        private SpmFormatException Bad(string key, string detail) => new(path, key, detail);

        public int Int(string key, int fallback, int min, int max)
        {
            if (!TryGet(key, out var v)) return fallback;
            if (v.ValueKind != JsonValueKind.Number || !v.TryGetDouble(out double d) || d != Math.Floor(d) || d < min || d > max)
                throw Bad(key, $"must be an integer in [{min}, {max}]; got {v.GetRawText()}");
            return (int)d;
        }

        public double Double(string key, double fallback, double min, double max)
        {
            if (!TryGet(key, out var v)) return fallback;
            if (v.ValueKind != JsonValueKind.Number || !v.TryGetDouble(out double d) || !double.IsFinite(d) || d < min || d > max)
                throw Bad(key, $"must be a number in [{min}, {max}]; got {v.GetRawText()}");
            return d;
        }

        public bool Bool(string key, bool fallback)
        {
            if (!TryGet(key, out var v)) return fallback;
            return v.ValueKind switch
            {
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                _ => throw Bad(key, $"must be true or false; got {v.GetRawText()}"),
            };
        }

        public string Choice(string key, string fallback, params string[] allowed) => ChoiceOrNull(key, allowed) ?? fallback;

        public string? ChoiceOrNull(string key, params string[] allowed)
        {
            if (!TryGet(key, out var v)) return null;
            var s = v.ValueKind == JsonValueKind.String ? v.GetString() : null;
            if (s is null || !allowed.Contains(s))
                throw Bad(key, $"must be one of {string.Join(", ", allowed)}; got {v.GetRawText()}");
            return s;
        }

        public IReadOnlyList<double>? DoubleArray(string key, int maxLength)
        {
            if (!TryGet(key, out var v)) return null;
            if (v.ValueKind != JsonValueKind.Array) throw Bad(key, "must be an array of numbers or null");
            int len = v.GetArrayLength();
            if (len > maxLength) throw Bad(key, $"has {len} entries; at most {maxLength} allowed");
            var values = new double[len];
            int i = 0;
            foreach (var e in v.EnumerateArray())
            {
                if (e.ValueKind != JsonValueKind.Number || !e.TryGetDouble(out double d) || !(d > 0 && d < 1))
                    throw Bad(key, $"entry {i} must be a number in (0, 1); got {e.GetRawText()}");
                values[i++] = d;
            }
            return values;
        }
    }
}
