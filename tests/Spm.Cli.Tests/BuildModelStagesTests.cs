using Spm.Cli.Commands;
using Spm.Core;
using Spm.Shapes.Model;

namespace Spm.Cli.Tests;

[TestFixture]
public class BuildModelStagesTests
{
    [Test]
    public void UNetStages_ParseStepsRateAndOptionalTokenScale()
    {
        Assert.That(BuildModelCommand.ParseStages("2600:2e-3:0.02, 3000:1e-3", null, null),
            Is.EqualTo(new[] { new UNetStage(2600, 2e-3, 0.02), new UNetStage(3000, 1e-3) }));
        Assert.That(BuildModelCommand.ParseStages("3000:5e-4:text,10:1e-3:0.5:TEXT", null, null),
            Is.EqualTo(new[] { new UNetStage(3000, 5e-4, null, true), new UNetStage(10, 1e-3, 0.5, true) }), "a last field 'text' trains the text encoder");
        Assert.That(BuildModelCommand.ParseStages(null, null, null), Is.Null, "nothing given: the recipe's stages");
        foreach (var bad in new[] { "3000", "3000:x", "3000:1e-3:y", "1:2:3:4", "3000:text", "1:2:3:4:text" })
            Assert.That(() => BuildModelCommand.ParseStages(bad, null, null),
                Throws.TypeOf<SpmException>().With.Message.Contains($"'{bad}' is not STEPS:LR[:TOKEN_STD][:text]"), bad);
        Assert.That(() => BuildModelCommand.ParseStages("10:1e-3", 5, null), Throws.TypeOf<SpmException>().With.Message.Contains("not both"));
    }

    [Test]
    public void TheDefaultRecipe_IsTheFirstModelOnClipScaleThenTwoStagesOnScaleOne()
    {
        var o = new TinyShapesTrainingOptions();
        Assert.That(o.TextTokenStd, Is.EqualTo(1.0));
        Assert.That(o.AutoencoderChromaWeight, Is.EqualTo(3.0), "the autoencoder weighs colour 3x (model v3)");
        Assert.That(o.AutoencoderLatentNoise, Is.EqualTo(0.0));
        Assert.That(o.UNetStages.Select(s => (s.Steps, s.LearningRate, s.TextTokenStd ?? o.TextTokenStd)),
            Is.EqualTo(new[] { (2600, 2e-3, 0.02), (3000, 1e-3, 0.02), (3000, 1.5e-3, 1.0), (2000, 1e-3, 1.0) }));
    }
}
