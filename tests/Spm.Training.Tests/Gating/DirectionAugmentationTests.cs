using Spm.Core;
using Spm.Training.Gating;
using Spm.Tests.Common;

namespace Spm.Training.Tests.Gating;

/// <summary>The data side of <see cref="DirectionAugmentation"/>: the direction, the pushed samples and their cache.</summary>
[TestFixture]
public class DirectionAugmentationTests
{
    private string _dir = "";

    [SetUp]
    public void SetUp() => _dir = TestPaths.NewTempDir("spm-directions");

    [TearDown]
    public void TearDown()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    // A fake encoder: each prompt maps to a fixed 2 x 2 "embedding".
    private static readonly Dictionary<string, float[]> Embeddings = new()
    {
        ["a"] = [1, 2, 3, 4],
        ["b"] = [3, 2, 1, 0],
        ["c"] = [0, 0, 0, 0],
        ["d"] = [2, 2, 2, 2],
        ["e"] = [9, 9, 9, 9],
    };

    private static float[] Encode(string p) => Embeddings[p];

    private static readonly LabelledPrompt[] Data =
    [
        new("a", 2, [1f, 0f]),
        new("b", 2, [0.5f, 0f]),
        new("c", 2, [0f, 1f]),
        new("d", 2, [0f, 0f]),
        new("e", 2, [0.25f, 0f]), // neither drawn (< 0.5) nor never drawn (0): left out of both means
    ];

    [Test]
    public void Direction_IsTheMeanOfTheDrawnMinusTheMeanOfTheNeverDrawn()
    {
        var d = DirectionAugmentation.Direction(Data, 0, Encode);
        // drawn: a, b -> mean [2, 2, 2, 2]; never drawn: c, d -> mean [1, 1, 1, 1].
        Assert.That(d, Is.EqualTo(new float[] { 1, 1, 1, 1 }));
        Assert.That(() => DirectionAugmentation.Direction(Data.Take(1).ToArray(), 0, Encode),
            Throws.ArgumentException.With.Message.Contains("1 drawn as the concept and 0 never drawn"));
    }

    [Test]
    public void ToProbeSamples_PushesTheEncodingAlongTheDirection_WeightedByImages()
    {
        var samples = DirectionAugmentation.ToProbeSamples([new DirectionSample("red", "a", 2f, 4, 0.75f)], [1, 0, -1, 0.5f], Encode);
        Assert.That(samples, Has.Count.EqualTo(1));
        Assert.That(samples[0].Embedding, Is.EqualTo(new float[] { 3, 2, 1, 5 }));
        Assert.That(samples[0].Label, Is.EqualTo(0.75f));
        Assert.That(samples[0].Weight, Is.EqualTo(4f));
        Assert.That(samples[0].Prompt, Is.EqualTo("a + 2 d"));
        Assert.That(() => DirectionAugmentation.ToProbeSamples([new DirectionSample("red", "a", 1f, 1, 0f)], [1, 2], Encode),
            Throws.ArgumentException.With.Message.Contains("The direction has 2 values; the embedding of \"a\" has 4"));
    }

    [Test]
    public void Save_KeepsOtherConcepts_ReplacesTheSameConcept_AndLoadReadsItBack()
    {
        var path = Path.Combine(_dir, "d.jsonl");
        DirectionAugmentation.Save(path, [new DirectionSample("red", "a", 1f, 2, 0.5f), new DirectionSample("red", "b", 3f, 2, 1f)]);
        DirectionAugmentation.Save(path, [new DirectionSample("circle", "c", 0.5f, 1, 0f)]);
        DirectionAugmentation.Save(path, [new DirectionSample("red", "d", 2f, 2, 0f)]);
        var all = DirectionAugmentation.Load(path);
        Assert.That(all, Is.EqualTo(new[] { new DirectionSample("circle", "c", 0.5f, 1, 0f), new DirectionSample("red", "d", 2f, 2, 0f) }));
    }

    [TestCase("{\"concept\":\"red\",\"prompt\":\"a\",\"strength\":1,\"images\":1,\"label\":1.5}", "the label must lie in [0, 1]")]
    [TestCase("{\"concept\":\"red\",\"prompt\":\"a\",\"strength\":0,\"images\":1,\"label\":1}", "the strength positive")]
    [TestCase("{\"prompt\":\"a\",\"strength\":1,\"images\":1,\"label\":1}", "no concept")]
    [TestCase("not json", "not a direction sample")]
    public void Load_NamesTheFileAndLine_OfABadSample(string line, string message)
    {
        var path = Path.Combine(_dir, "bad.jsonl");
        File.WriteAllLines(path, ["{\"concept\":\"red\",\"prompt\":\"a\",\"strength\":1,\"images\":1,\"label\":1}", line]);
        var ex = Assert.Throws<SpmFormatException>(() => DirectionAugmentation.Load(path))!;
        Assert.That(ex.Message, Does.Contain("bad.jsonl").And.Contain("line 2").And.Contain(message));
    }
}
