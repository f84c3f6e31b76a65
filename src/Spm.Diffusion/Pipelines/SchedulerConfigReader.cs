using System.Text.Json;
using Spm.Core;
using Spm.Diffusion.Schedulers;

namespace Spm.Diffusion.Pipelines;

/// <summary>Reads diffusers' <c>scheduler_config.json</c> into a <see cref="SchedulerConfig"/>; unknown keys are ignored, bad values rejected.</summary>
internal static class SchedulerConfigReader
{
    public static SchedulerConfig Read(JsonElement root, string path)
    {
        var c = new SchedulerConfig();
        foreach (var p in root.EnumerateObject())
        {
            var v = p.Value;
            if (v.ValueKind == JsonValueKind.Null) continue;
            c = p.Name switch
            {
                "num_train_timesteps" => c with { NumTrainTimesteps = Int(v, p.Name, 1, 100_000) },
                "beta_start" => c with { BetaStart = Real(v, p.Name, 0, 1) },
                "beta_end" => c with { BetaEnd = Real(v, p.Name, 0, 1) },
                "beta_schedule" => c with { BetaSchedule = Str(v, p.Name, "linear", "scaled_linear", "squaredcos_cap_v2") },
                "trained_betas" => c with { TrainedBetas = Reals(v, p.Name) },
                "prediction_type" => c with { PredictionType = Str(v, p.Name, "epsilon", "v_prediction", "sample") },
                "steps_offset" => c with { StepsOffset = Int(v, p.Name, 0, 1000) },
                "timestep_spacing" => c with { TimestepSpacing = Str(v, p.Name, "leading", "trailing", "linspace") },
                "set_alpha_to_one" => c with { SetAlphaToOne = Bool(v, p.Name) },
                "clip_sample" => c with { ClipSample = Bool(v, p.Name) },
                "clip_sample_range" => c with { ClipSampleRange = Real(v, p.Name, 0, 1e6) },
                "skip_prk_steps" => c with { SkipPrkSteps = Bool(v, p.Name) },
                "use_karras_sigmas" => c with { UseKarrasSigmas = Bool(v, p.Name) },
                _ => c,
            };
        }
        return c;

        int Int(JsonElement e, string key, int min, int max)
            => e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out var i) && i >= min && i <= max ? i : throw Bad(key, e);
        double Real(JsonElement e, string key, double min, double max)
            => e.ValueKind == JsonValueKind.Number && e.GetDouble() is var d && d >= min && d <= max ? d : throw Bad(key, e);
        bool Bool(JsonElement e, string key)
            => e.ValueKind switch { JsonValueKind.True => true, JsonValueKind.False => false, _ => throw Bad(key, e) };
        string Str(JsonElement e, string key, params string[] allowed)
            => e.ValueKind == JsonValueKind.String && allowed.Contains(e.GetString()) ? e.GetString()! : throw Bad(key, e, $"expected one of {string.Join(", ", allowed)}");
        double[] Reals(JsonElement e, string key)
        {
            if (e.ValueKind != JsonValueKind.Array || e.GetArrayLength() > 100_000) throw Bad(key, e);
            return e.EnumerateArray().Select(x => Real(x, key, 0, 1)).ToArray();
        }
        SpmFormatException Bad(string key, JsonElement e, string? hint = null)
        {
            var raw = e.GetRawText();
            if (raw.Length > 60) raw = raw[..60] + "...";
            return new SpmFormatException(path, key, $"invalid value {raw}{(hint is null ? "" : $" ({hint})")}.");
        }
    }
}
