using Spm.Core;
using Spm.Training.LatentAnchoring;

namespace Spm.Training.Tests.LatentAnchoring;

public class PromptConfigTests
{
    private static readonly LatentAnchoringOptions Defaults = new() { Concept = "placeholder" };

    /// <summary>Two entries in the reference repository's prompt-config layout (also the fuzzers' seed).</summary>
    internal const string ReferenceYaml = """
        - target: "Snoopy"
          positive: "Snoopy"
          unconditional: ""
          neutral: ""
          action: "erase_with_la"
          guidance_scale: "1.0"
          resolution: 512
          batch_size: 1
          dynamic_resolution: true
          la_strength: 1000
          sampling_batch_size: 4
        - target: "Van Gogh"
          neutral: "a painting"
          action: "erase"
          guidance_scale: 2.5
          resolution: 256
          dynamic_resolution: false
          la_strength: 500
          sampling_batch_size: 2
        """;

    [Test]
    public void ReadsReferenceLayout()
    {
        const string yaml = ReferenceYaml;
        var entries = PromptConfig.Parse(yaml, Defaults, "prompt.yaml");
        Assert.That(entries, Has.Count.EqualTo(2));
        Assert.That(entries[0].Concept, Is.EqualTo("Snoopy"));
        Assert.That(entries[0].Positive, Is.Null, "positive equal to target collapses to the default");
        Assert.That(entries[0].Action, Is.EqualTo(TrainingAction.EraseWithAnchoring));
        Assert.That(entries[0].AnchorStrength, Is.EqualTo(1000));
        Assert.That(entries[0].AnchorCount, Is.EqualTo(4));
        Assert.That(entries[1].Surrogate, Is.EqualTo("a painting"));
        Assert.That(entries[1].Action, Is.EqualTo(TrainingAction.Erase));
        Assert.That(entries[1].Eta, Is.EqualTo(2.5));
        Assert.That(entries[1].Resolution, Is.EqualTo(256));
        Assert.That(entries[1].DynamicResolution, Is.False);
        Assert.That(entries[1].AnchorCount, Is.EqualTo(2));
    }

    [TestCase("- positive: x\n", "[0].target", "missing")]
    [TestCase("- target: x\n  action: delete\n", "[0].action", "unknown action")]
    [TestCase("- target: x\n  la_strength: lots\n", "[0].la_strength", "not a number")]
    [TestCase("- target: x\n  resolution: 100\n", "[0]", "multiple of 64")]
    [TestCase("- target: [unclosed\n", null, "invalid YAML")]
    public void BadConfigsNameFileAndField(string yaml, string? key, string message)
    {
        var ex = Assert.Throws<SpmFormatException>(() => PromptConfig.Parse(yaml, Defaults, "bad.yaml"))!;
        Assert.That(ex.Message, Does.Contain("bad.yaml"));
        Assert.That(ex.Message, Does.Contain(message));
        if (key is not null) Assert.That(ex.Key, Is.EqualTo(key));
    }
}
