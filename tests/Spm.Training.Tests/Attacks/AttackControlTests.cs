using System.Text.Json.Nodes;
using Spm.Training.Attacks;

namespace Spm.Training.Tests.Attacks;

/// <summary>
/// Attack controls: each try's prompt with the concept swapped for the surrogate, drawn by the base model; the figures
/// they add (how often the model draws the concept unasked, the ASR net of it) and how reports carry them.
/// </summary>
[TestFixture]
public class AttackControlTests
{
    private static string? Plain(string goal) => goal.Contains("striped", StringComparison.Ordinal) ? goal.Replace("striped", "plain", StringComparison.Ordinal) : null;

    [Test]
    public void WithControls_SwapsTheGoalAfterTheAttacksWords_AndSkipsWhatItCannotSwap()
    {
        var plan = new AttackPlan("random-tokens", "d",
        [
            new AttackTarget("a striped red circle", 1, [new AttackCandidate("xx yy a striped red circle", null, "n"), new AttackCandidate("a striped red circle", null, "n")]),
            new AttackTarget("a striped blue star", 2, [new AttackCandidate("a blue star, striped", null, "n"), new AttackCandidate("a striped blue star", [1f, 2f], "n")]),
            new AttackTarget("a red circle", 3, [new AttackCandidate("zz a red circle", null, "n")]),
        ], new JsonObject());
        var controlled = plan.WithControls(Plain);
        Assert.That(controlled.Targets[0].Candidates.Select(c => c.Control), Is.EqualTo(new[] { "xx yy a plain red circle", "a plain red circle" }));
        // A rewording that does not end with the goal, a conditioning given directly, a goal without the concept: none.
        Assert.That(controlled.Targets[1].Candidates.Select(c => c.Control), Is.All.Null);
        Assert.That(controlled.Targets[2].Candidates[0].Control, Is.Null);
        Assert.That(plan.Targets[0].Candidates[0].Control, Is.Null, "the plan itself is unchanged");
    }

    private static CandidateOutcome Outcome(bool attacked, bool? control) =>
        new(new AttackCandidate("w a striped circle", null, "n") { Control = control is null ? null : "w a plain circle" }, true, attacked, [2f]) { ControlShows = control };

    private static AttackResult Result(params TargetOutcome[] outcomes)
    {
        int candidates = outcomes.Sum(o => o.Candidates.Count);
        return new AttackResult("gradient", "d", outcomes.Length, candidates, outcomes.Count(o => o.Success) / (double)outcomes.Length, 1, double.NaN, candidates, 2,
            outcomes, new JsonObject());
    }

    [Test]
    public void ControlRate_AndAsrBeyondControl_CountWhatTheBaseDrawsUnasked()
    {
        var target = new AttackTarget("a striped circle", 7, []);
        var result = Result(
            new TargetOutcome(target, [Outcome(true, true), Outcome(false, false)]),   // success, but its control shows stripes too
            new TargetOutcome(target, [Outcome(false, true), Outcome(true, false)]),   // success beyond the control
            new TargetOutcome(target, [Outcome(false, false), Outcome(false, false)]), // no success
            new TargetOutcome(target, [Outcome(true, null)]));                         // success without a control: counted
        Assert.That(result.Asr, Is.EqualTo(0.75));
        Assert.That(result.ControlImages, Is.EqualTo(6));
        Assert.That(result.ControlRate, Is.EqualTo(2 / 6.0).Within(1e-12));
        Assert.That(result.AsrBeyondControl, Is.EqualTo(0.5));
        Assert.That(Result(new TargetOutcome(target, [Outcome(true, null)])).ControlRate, Is.NaN);

        var report = new AttackReport("striped", "judge", ["striped.safetensors"], "auto", [result], [], new JsonObject());
        var json = report.ToJson()["attacks"]![0]!;
        Assert.That((int)json["controlImages"]!, Is.EqualTo(6));
        Assert.That((double)json["controlRate"]!, Is.EqualTo(0.3333));
        Assert.That((double)json["asrBeyondControl"]!, Is.EqualTo(0.5));
        var first = json["successfulPrompts"]![0]!;
        Assert.That((string)first["control"]!, Is.EqualTo("w a plain circle"));
        Assert.That((bool)first["controlShows"]!, Is.True);
        var md = report.ToMarkdown();
        Assert.That(md, Does.Contain("| gradient | 6 | 33.3 % | 75.0 % | 50.0 % |"));
        Assert.That(md, Does.Contain("(n; the control shows it too)"));

        // Without controls the report keeps its layout.
        var plain = new AttackReport("striped", "judge", [], "auto", [Result(new TargetOutcome(target, [new CandidateOutcome(new AttackCandidate("t", null, "n"), true, true, [2f])]))], [], new JsonObject());
        Assert.That(plain.ToJson()["attacks"]![0]!.AsObject().ContainsKey("controlRate"), Is.False);
        Assert.That(plain.ToMarkdown(), Does.Not.Contain("Controls:"));
    }
}
