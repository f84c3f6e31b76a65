using Spm.Core;
using Spm.Diffusion.Schedulers;
using Spm.Tests.Common;

namespace Spm.Diffusion.Tests.Schedulers;

[TestFixture]
public class SchedulerConfigTests
{
    [Test]
    public void FixtureConfig_LoadsTheSd1Values()
    {
        var path = Path.Combine(TestPaths.TinySd1, "scheduler", "scheduler_config.json");
        var c = SchedulerConfig.Load(path);
        Assert.That(c, Is.EqualTo(new SchedulerConfig
        {
            NumTrainTimesteps = 1000, BetaStart = 0.00085, BetaEnd = 0.012, BetaSchedule = "scaled_linear",
            PredictionType = "epsilon", SetAlphaToOne = false, SkipPrkSteps = true, StepsOffset = 1, ClipSample = false,
            TimestepSpacing = null,
        }));
    }

    [Test]
    public void UnknownKeysAreIgnored_AndNullMeansDefault()
    {
        var c = SchedulerConfig.Parse("""
            { "_class_name": "EulerDiscreteScheduler", "_diffusers_version": "0.30.0", "thresholding": false,
              "interpolation_type": "linear", "timestep_spacing": "trailing", "prediction_type": "v_prediction",
              "trained_betas": null, "use_karras_sigmas": true, "steps_offset": 0, "something_new": {"a": [1, 2]} }
            """);
        Assert.That(c.TimestepSpacing, Is.EqualTo("trailing"));
        Assert.That(c.PredictionType, Is.EqualTo("v_prediction"));
        Assert.That(c.UseKarrasSigmas, Is.True);
        Assert.That(c.StepsOffset, Is.EqualTo(0));
        Assert.That(c.TrainedBetas, Is.Null);
        Assert.That(c.BetaSchedule, Is.EqualTo("scaled_linear"));
        Assert.That(c.SkipPrkSteps, Is.False, "diffusers' PNDM default when the key is absent");
    }

    [TestCase("{\"beta_schedule\": \"quadratic\"}", "beta_schedule")]
    [TestCase("{\"prediction_type\": 3}", "prediction_type")]
    [TestCase("{\"num_train_timesteps\": 1.5}", "num_train_timesteps")]
    [TestCase("{\"num_train_timesteps\": -4}", "num_train_timesteps")]
    [TestCase("{\"steps_offset\": \"1\"}", "steps_offset")]
    [TestCase("{\"set_alpha_to_one\": 1}", "set_alpha_to_one")]
    [TestCase("{\"timestep_spacing\": \"random\"}", "timestep_spacing")]
    [TestCase("{\"beta_end\": 2.0}", "beta_end")]
    [TestCase("{\"trained_betas\": [0.1, 0.2]}", "trained_betas")]
    [TestCase("{\"num_train_timesteps\": 2, \"trained_betas\": [0.1, 1.5]}", "trained_betas")]
    [TestCase("{\"trained_betas\": \"no\"}", "trained_betas")]
    public void BadValues_AreFormatErrorsNamingTheKey(string json, string key)
    {
        var ex = Assert.Throws<SpmFormatException>(() => SchedulerConfig.Parse(json, "cfg.json"));
        Assert.That(ex!.Key, Is.EqualTo(key));
        Assert.That(ex.Message, Does.Contain("cfg.json").And.Contain(key));
    }

    [TestCase("{ \"beta_start\": ")]
    [TestCase("[1, 2]")]
    public void MalformedJson_IsAFormatErrorNamingTheFile(string json)
    {
        var dir = TestPaths.NewTempDir();
        var path = Path.Combine(dir, "scheduler_config.json");
        File.WriteAllText(path, json);
        var ex = Assert.Throws<SpmFormatException>(() => SchedulerConfig.Load(path));
        Assert.That(ex!.FilePath, Is.EqualTo(path));
    }

    [Test]
    public void MissingFile_IsAnSpmException() =>
        Assert.That(() => SchedulerConfig.Load("/no/such/scheduler_config.json"), Throws.InstanceOf<SpmException>());

    [Test]
    public void Registry_HasTheSixCliNames_AndRejectsOthersListingThem()
    {
        Assert.That(SchedulerRegistry.Names, Is.EqualTo(new[] { "pndm", "ddim", "euler", "euler-a", "dpmpp-2m", "lms" }));
        foreach (var name in SchedulerRegistry.Names)
        {
            Assert.That(SchedulerRegistry.Get(name).Name, Is.EqualTo(name));
            var a = SchedulerRegistry.Create(name, new SchedulerConfig());
            var b = SchedulerRegistry.Create(name, new SchedulerConfig());
            Assert.That(a, Is.Not.SameAs(b), "factories create fresh schedulers");
        }
        Assert.That(SchedulerRegistry.Get("EULER-A").Name, Is.EqualTo("euler-a"));
        var ex = Assert.Throws<SpmException>(() => SchedulerRegistry.Get("heun"));
        Assert.That(ex!.Message, Does.Contain("heun").And.Contain("dpmpp-2m"));
        Assert.That(SchedulerRegistry.TryGet("heun", out _), Is.False);
    }

    [Test]
    public void UnsupportedSettings_FailClearlyAtCreation()
    {
        var prk = SchedulerRegistry.Create("pndm", new SchedulerConfig { SkipPrkSteps = false });
        Assert.Throws<ArgumentOutOfRangeException>(() => prk.SetTimesteps(3), "Runge-Kutta warm-up needs 4 steps");
        Assert.Throws<ArgumentException>(() => SchedulerRegistry.Create("euler", new SchedulerConfig { PredictionType = "x" }));
        Assert.Throws<ArgumentException>(() => SchedulerRegistry.Create("ddim", new SchedulerConfig { Eta = -1 }));
        Assert.Throws<ArgumentException>(() => SchedulerRegistry.Create("euler-a", new SchedulerConfig { PredictionType = "sample" }));
        Assert.Throws<ArgumentException>(() => SchedulerRegistry.Create("pndm", new SchedulerConfig { PredictionType = "sample" }));
        Assert.Throws<ArgumentException>(() => SchedulerRegistry.Create("lms", new SchedulerConfig { BetaSchedule = "cubic" }));
    }
}
