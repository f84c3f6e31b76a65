using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;

namespace Spm.Training.Attacks;

/// <summary>An attack run's figures: every attack's result and the collateral sets, with what was run.</summary>
/// <param name="Concept">The erased concept attacked.</param>
/// <param name="Judge">The judge's name.</param>
/// <param name="Spms">The attacked SPMs (file names); empty for the sanity run on the base model.</param>
/// <param name="Gate">How the gates were read ("auto", "learned", ...).</param>
/// <param name="Attacks">The attacks' results.</param>
/// <param name="Collateral">What the erased model keeps.</param>
/// <param name="Run">Free-form facts about the run (model, seed, steps, timings).</param>
public sealed record AttackReport(string Concept, string Judge, IReadOnlyList<string> Spms, string Gate, IReadOnlyList<AttackResult> Attacks,
    IReadOnlyList<CollateralResult> Collateral, JsonObject Run)
{
    /// <summary>The report as JSON: per attack its prompts tried, ASR, successful prompts and budget.</summary>
    public JsonObject ToJson(int maxListed = 50)
    {
        var attacks = new JsonArray();
        foreach (var a in Attacks)
        {
            attacks.Add(new JsonObject
            {
                ["name"] = a.Name,
                ["description"] = a.Description,
                ["targets"] = a.Targets,
                ["candidates"] = a.Candidates,
                ["asr"] = Num(a.Asr),
                ["baseAsr"] = Num(a.BaseAsr),
                ["leak"] = Num(a.Leak),
                ["erasedWhereBaseDrew"] = Num(1 - a.Leak),
                ["baseShownImages"] = a.BaseShownImages,
                ["meanMultiplier"] = Num(a.MeanMultiplier),
                ["budget"] = JsonNode.Parse(a.Budget.ToJsonString()),
                ["successfulPrompts"] = new JsonArray(a.Outcomes.Where(o => o.Success).Take(maxListed).Select(SuccessJson).ToArray()),
                ["byNote"] = ByNote(a),
            });
            // Controls only where the attack has them, so reports without keep their layout.
            if (a.ControlImages > 0)
            {
                var o = attacks[^1]!.AsObject();
                o["controlImages"] = a.ControlImages;
                o["controlRate"] = Num(a.ControlRate);
                o["asrBeyondControl"] = Num(a.AsrBeyondControl);
            }
        }
        var collateral = new JsonArray(Collateral.Select(c => (JsonNode?)new JsonObject
        {
            ["name"] = c.Name,
            ["images"] = c.Images,
            ["meanSsim"] = Num(c.MeanSsim),
            ["minSsim"] = Num(c.MinSsim),
            ["baseAccuracy"] = Num(c.BaseAccuracy),
            ["accuracy"] = Num(c.Accuracy),
            ["meanMultiplier"] = Num(c.MeanMultiplier),
            ["conceptShownBase"] = Num(c.ConceptShownBase),
            ["conceptShown"] = Num(c.ConceptShown),
            ["cleanImages"] = c.CleanImages,
            ["cleanMeanSsim"] = Num(c.CleanMeanSsim),
            // The images behind the means: the lowest SSIMs and every image whose accuracy verdict flipped.
            ["lowestSsim"] = KeptImages((c.PerImage ?? []).OrderBy(k => k.Ssim).Take(Math.Min(10, maxListed))),
            ["accuracyFlipped"] = KeptImages((c.PerImage ?? []).Where(k => k.BaseAsAsked != k.AsAsked)),
            ["conceptFree"] = c.Free is not { } f ? null : new JsonObject
            {
                ["probeSeeds"] = f.ProbeSeeds,
                ["prompts"] = f.Prompts,
                ["meanSsim"] = Num(f.MeanSsim),
                ["baseAccuracy"] = Num(f.BaseAccuracy),
                ["accuracy"] = Num(f.Accuracy),
                ["meanMultiplier"] = Num(f.MeanMultiplier),
            },
        }).ToArray());
        return new JsonObject
        {
            ["concept"] = Concept,
            ["judge"] = Judge,
            ["spms"] = new JsonArray(Spms.Select(s => (JsonNode?)s).ToArray()),
            ["gate"] = Gate,
            ["attacks"] = attacks,
            ["collateral"] = collateral,
            ["run"] = JsonNode.Parse(Run.ToJsonString()),
        };
    }

    private static JsonNode SuccessJson(TargetOutcome o)
    {
        var first = o.FirstSuccess!;
        var j = new JsonObject { ["target"] = o.Target.Label, ["prompt"] = first.Candidate.Text, ["note"] = first.Candidate.Note, ["seed"] = o.Target.Seed.ToString(CultureInfo.InvariantCulture) };
        if (first.Candidate.Control is { } control)
        {
            j["control"] = control;
            j["controlShows"] = first.ControlShows;
        }
        return j;
    }

    private static JsonArray KeptImages(IEnumerable<KeptImage> images) => new(images.Select(k => (JsonNode?)new JsonObject
    {
        ["prompt"] = k.Prompt,
        ["seed"] = k.Seed.ToString(CultureInfo.InvariantCulture),
        ["multiplier"] = Math.Round(k.Multiplier, 4),
        ["ssim"] = Math.Round(k.Ssim, 4),
        ["baseAsAsked"] = k.BaseAsAsked,
        ["asAsked"] = k.AsAsked,
        ["baseShowsConcept"] = k.BaseShowsConcept,
        ["showsConcept"] = k.ShowsConcept,
        ["probeSeedsShowingConcept"] = k.ProbeShown,
    }).ToArray());

    // Per candidate note (a phrasing kind, a strength): how often the base drew the concept and how often it leaked.
    private static JsonObject ByNote(AttackResult a)
    {
        var o = new JsonObject();
        foreach (var g in a.Outcomes.SelectMany(t => t.Candidates).GroupBy(c => c.Candidate.Note).OrderBy(g => g.Key, StringComparer.Ordinal))
        {
            var shown = g.Where(c => c.BaseShows).ToList();
            o[g.Key] = new JsonObject
            {
                ["candidates"] = g.Count(),
                ["baseShows"] = shown.Count,
                ["attackedShows"] = g.Count(c => c.AttackedShows),
                ["leak"] = Num(shown.Count == 0 ? double.NaN : shown.Count(c => c.AttackedShows) / (double)shown.Count),
                ["meanMultiplier"] = Num(g.Average(c => c.Multipliers.Count == 0 ? 0 : c.Multipliers.Max())),
            };
        }
        return o;
    }

    private static JsonNode? Num(double x) => double.IsFinite(x) ? JsonValue.Create(Math.Round(x, 4)) : null;

    private static string Pct(double x) => double.IsFinite(x) ? (100 * x).ToString("0.0", CultureInfo.InvariantCulture) + " %" : "-";

    private static string F(double x, string format) => double.IsFinite(x) ? x.ToString(format, CultureInfo.InvariantCulture) : "-";

    /// <summary>A Markdown summary: one table of attacks, one of collateral, the successful prompts of each attack.</summary>
    public string ToMarkdown(int maxListed = 10)
    {
        var sb = new StringBuilder();
        sb.Append("# Attack report: '").Append(Concept).Append("'\n\n");
        sb.Append("SPMs: ").Append(Spms.Count == 0 ? "none (sanity run on the base model)" : string.Join(", ", Spms)).Append("; gate: ").Append(Gate)
          .Append("; judge: ").Append(Judge).Append(".\n\n");
        sb.Append("| attack | goals | candidates | ASR | ASR on the base model | leak where the base drew it | base images showing it | mean multiplier |\n");
        sb.Append("| --- | --- | --- | --- | --- | --- | --- | --- |\n");
        foreach (var a in Attacks)
            sb.Append(CultureInfo.InvariantCulture, $"| {a.Name} | {a.Targets} | {a.Candidates} | {Pct(a.Asr)} | {Pct(a.BaseAsr)} | {Pct(a.Leak)} | {a.BaseShownImages} | {F(a.MeanMultiplier, "0.000")} |\n");
        var controlled = Attacks.Where(a => a.ControlImages > 0).ToList();
        if (controlled.Count > 0)
        {
            sb.Append("\nControls: each try's prompt with the concept swapped for the surrogate, drawn by the base model from the same seed; ")
              .Append("where it shows the concept, the model draws it unasked.\n\n");
            sb.Append("| attack | controls | control shows the concept | ASR | ASR where the control does not show it |\n| --- | --- | --- | --- | --- |\n");
            foreach (var a in controlled)
                sb.Append(CultureInfo.InvariantCulture, $"| {a.Name} | {a.ControlImages} | {Pct(a.ControlRate)} | {Pct(a.Asr)} | {Pct(a.AsrBeyondControl)} |\n");
        }
        if (Collateral.Count > 0)
        {
            sb.Append("\n| kept set | images | mean SSIM vs base | min SSIM | accuracy base | accuracy erased | mean multiplier | concept shown base / erased | mean SSIM where the base shows no erased concept (images) |\n");
            sb.Append("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
            foreach (var c in Collateral)
                sb.Append(CultureInfo.InvariantCulture, $"| {c.Name} | {c.Images} | {F(c.MeanSsim, "0.0000")} | {F(c.MinSsim, "0.000")} | {Pct(c.BaseAccuracy)} | {Pct(c.Accuracy)} | {F(c.MeanMultiplier, "0.000")} | {Pct(c.ConceptShownBase)} / {Pct(c.ConceptShown)} | {F(c.CleanMeanSsim, "0.0000")} ({c.CleanImages}) |\n");
            var free = Collateral.Where(c => c.Free is not null).ToList();
            if (free.Count > 0)
            {
                sb.Append($"\nConcept-free prompts: those whose base images show no erased concept at the compared seed nor at {free[0].Free!.ProbeSeeds} more.\n\n");
                sb.Append("| kept set | concept-free prompts | mean SSIM vs base | accuracy base | accuracy erased | mean multiplier |\n");
                sb.Append("| --- | --- | --- | --- | --- | --- |\n");
                foreach (var c in free)
                    sb.Append(CultureInfo.InvariantCulture, $"| {c.Name} | {c.Free!.Prompts} | {F(c.Free.MeanSsim, "0.0000")} | {Pct(c.Free.BaseAccuracy)} | {Pct(c.Free.Accuracy)} | {F(c.Free.MeanMultiplier, "0.000")} |\n");
            }
        }
        foreach (var a in Attacks)
        {
            sb.Append("\n## ").Append(a.Name).Append("\n\n").Append(a.Description).Append(". Budget: ").Append(a.Budget.ToJsonString()).Append(".\n\n");
            var notes = a.Outcomes.SelectMany(t => t.Candidates).GroupBy(c => c.Candidate.Note).OrderBy(g => g.Key, StringComparer.Ordinal).ToList();
            if (notes.Count > 1)
            {
                sb.Append("| kind | candidates | base drew it | still drawn | leak | mean multiplier |\n| --- | --- | --- | --- | --- | --- |\n");
                foreach (var g in notes)
                {
                    int shown = g.Count(c => c.BaseShows);
                    int leaked = g.Count(c => c.BaseShows && c.AttackedShows);
                    sb.Append(CultureInfo.InvariantCulture, $"| {g.Key} | {g.Count()} | {shown} | {g.Count(c => c.AttackedShows)} | {Pct(shown == 0 ? double.NaN : leaked / (double)shown)} | {F(g.Average(c => c.Multipliers.Count == 0 ? 0 : c.Multipliers.Max()), "0.000")} |\n");
                }
                sb.Append('\n');
            }
            var wins = a.Outcomes.Where(o => o.Success).Take(maxListed).ToList();
            if (wins.Count == 0) sb.Append("No successful prompt.\n");
            else
            {
                sb.Append("Successful prompts (first ").Append(wins.Count).Append("):\n\n");
                foreach (var w in wins)
                {
                    sb.Append("- `").Append(w.FirstSuccess!.Candidate.Text.Replace("`", "'", StringComparison.Ordinal)).Append("` (").Append(w.FirstSuccess.Candidate.Note);
                    if (w.FirstSuccess.ControlShows is { } shows) sb.Append(shows ? "; the control shows it too" : "; the control does not");
                    sb.Append(")\n");
                }
            }
        }
        return sb.ToString();
    }
}
