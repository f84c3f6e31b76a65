using Spm.Diffusion.Schedulers;
using Spm.Tests.Common;

namespace Spm.Diffusion.Tests.Schedulers;

[TestFixture]
public class ScheduleTests
{
    private static SchedulerConfig Sd1 => SchedulerConfig.Load(Path.Combine(TestPaths.TinySd1, "scheduler", "scheduler_config.json"));

    private static IScheduler Make(string name, int steps, SchedulerConfig? config = null)
    {
        var s = SchedulerRegistry.Create(name, config ?? Sd1);
        s.SetTimesteps(steps);
        return s;
    }

    [Test]
    public void NoiseSchedule_MatchesScaledLinearFormulaAndKnownSdSigmas()
    {
        var schedule = NoiseSchedule.FromConfig(Sd1);
        var betas = Ref.ScaledLinearBetas();
        var abar = Ref.AlphaBar(betas);
        var sigma = Ref.SigmaTable(abar);
        for (int t = 0; t < 1000; t++)
        {
            Assert.That(schedule.Betas[t], Is.EqualTo(betas[t]).Within(1e-6 * betas[t]), $"beta[{t}] (relative 1e-6: torch and numpy linspace differ by an ulp)");
            Assert.That(Ref.Close(schedule.AlphasCumprod[t], abar[t], 1e-6), $"alpha_bar[{t}] {schedule.AlphasCumprod[t]} vs {abar[t]}");
            Assert.That(Ref.Close(schedule.Sigmas[t], sigma[t], 1e-6), $"sigma[{t}] {schedule.Sigmas[t]} vs {sigma[t]}");
        }
        // The widely quoted SD 1.x extremes (k-diffusion's sigma_min / sigma_max).
        Assert.That(schedule.Sigmas[0], Is.EqualTo(0.0291675).Within(1e-6));
        Assert.That(schedule.Sigmas[999], Is.EqualTo(14.6146).Within(1e-4));
        Assert.That(schedule.AlphasCumprod[0], Is.EqualTo(1 - 0.00085).Within(1e-7));
    }

    [Test]
    public void NoiseSchedule_LinearAndCosineFollowTheirFormulas()
    {
        var lin = NoiseSchedule.FromConfig(new SchedulerConfig { BetaSchedule = "linear", BetaStart = 0.0001, BetaEnd = 0.02 });
        var cos = NoiseSchedule.FromConfig(new SchedulerConfig { BetaSchedule = "squaredcos_cap_v2" });
        var linRef = Ref.LinearBetas(0.0001, 0.02);
        var cosRef = Ref.CosineBetas();
        for (int t = 0; t < 1000; t++)
        {
            Assert.That(lin.Betas[t], Is.EqualTo(linRef[t]).Within(2e-9), $"linear beta[{t}]");
            Assert.That(Ref.Close(cos.Betas[t], cosRef[t], 1e-6), $"cosine beta[{t}]");
        }
        Assert.That(cos.Betas[999], Is.EqualTo(0.999f));
        var trained = NoiseSchedule.FromConfig(new SchedulerConfig { NumTrainTimesteps = 4, TrainedBetas = [0.1, 0.2, 0.3, 0.4] });
        Assert.That(trained.AlphasCumprod, Is.EqualTo(new[] { 0.9f, 0.9f * 0.8f, 0.9f * 0.8f * 0.7f, 0.9f * 0.8f * 0.7f * 0.6f }).Within(1e-7));
    }

    [Test]
    public void AddNoise_IsTheForwardProcess()
    {
        var schedule = NoiseSchedule.FromConfig(Sd1);
        float[] x0 = [1f, -2f, 0.5f], eps = [0.3f, 0.1f, -1f], xt = new float[3];
        schedule.AddNoise(x0, eps, 500, xt);
        double a = schedule.AlphasCumprod[500];
        for (int i = 0; i < 3; i++) Assert.That(xt[i], Is.EqualTo(Math.Sqrt(a) * x0[i] + Math.Sqrt(1 - a) * eps[i]).Within(1e-6));
    }

    [Test]
    public void Pndm50Leading_Is981_961_961_941_To1()
    {
        var s = Make("pndm", 50);
        var expected = new List<double> { 981 };
        for (int t = 961; t >= 1; t -= 20) expected.Add(t);
        expected.Insert(1, 961);
        Assert.That(s.Timesteps, Is.EqualTo(expected));
        Assert.That(s.Timesteps, Has.Count.EqualTo(51));
        Assert.That(s.InitNoiseSigma, Is.EqualTo(1.0));
    }

    [Test]
    public void Ddim50_LeadingTrailingLinspace()
    {
        Assert.That(Make("ddim", 50).Timesteps, Is.EqualTo(Enumerable.Range(0, 50).Select(k => 981.0 - 20 * k)));
        Assert.That(Make("ddim", 50, Sd1 with { TimestepSpacing = "trailing" }).Timesteps,
            Is.EqualTo(Enumerable.Range(0, 50).Select(k => 999.0 - 20 * k)));
        var lin = Enumerable.Range(0, 50).Select(k => Math.Round(999.0 * k / 49, MidpointRounding.ToEven)).Reverse();
        Assert.That(Make("ddim", 50, Sd1 with { TimestepSpacing = "linspace" }).Timesteps, Is.EqualTo(lin));
        // 30 trailing steps: round(1000 - k * 33.33..) - 1
        Assert.That(Make("ddim", 30, Sd1 with { TimestepSpacing = "trailing" }).Timesteps,
            Is.EqualTo(Enumerable.Range(0, 30).Select(k => Math.Round(1000 - k * (1000.0 / 30), MidpointRounding.ToEven) - 1)));
    }

    [Test]
    public void Euler_DefaultsToLinspaceWithInterpolatedSigmas()
    {
        var s = (EulerScheduler)Make("euler", 30);
        var table = Ref.SigmaTable(Ref.AlphaBar(Ref.ScaledLinearBetas()));
        var ts = Enumerable.Range(0, 30).Select(k => (double)(float)(999.0 * (29 - k) / 29)).ToArray();
        Assert.That(s.Timesteps, Is.EqualTo(ts).Within(1e-4));
        Assert.That(s.Sigmas, Has.Count.EqualTo(31));
        for (int i = 0; i < 30; i++)
            Assert.That(Ref.Close(s.Sigmas[i], Ref.Interp(ts[i], table), 1e-6), $"sigma[{i}] {s.Sigmas[i]} vs {Ref.Interp(ts[i], table)}");
        Assert.That(s.Sigmas[30], Is.EqualTo(0f));
        Assert.That(s.InitNoiseSigma, Is.EqualTo(s.Sigmas[0]));
        Assert.That(s.InitNoiseSigma, Is.EqualTo(14.6146).Within(1e-4));
    }

    [Test]
    public void Euler_LeadingSpacing_UsesSqrtSigmaMaxSquaredPlusOne()
    {
        var s = (EulerScheduler)Make("euler", 50, Sd1 with { TimestepSpacing = "leading" });
        Assert.That(s.Timesteps, Is.EqualTo(Enumerable.Range(0, 50).Select(k => 981.0 - 20 * k)));
        var table = Ref.SigmaTable(Ref.AlphaBar(Ref.ScaledLinearBetas()));
        Assert.That(Ref.Close(s.Sigmas[0], table[981], 1e-6));
        Assert.That(s.InitNoiseSigma, Is.EqualTo(Math.Sqrt(table[981] * table[981] + 1)).Within(1e-5));
    }

    [Test]
    public void Euler_KarrasSigmas_AndFractionalTimesteps()
    {
        var s = (EulerScheduler)Make("euler", 25, Sd1 with { UseKarrasSigmas = true });
        var table = Ref.SigmaTable(Ref.AlphaBar(Ref.ScaledLinearBetas()));
        // Euler's Karras range is that of the interpolated schedule: sigma(999) .. sigma(0) for linspace spacing.
        var karras = Ref.Karras(Ref.Interp(0, table), Ref.Interp(999, table), 25);
        for (int i = 0; i < 25; i++)
        {
            Assert.That(Ref.Close(s.Sigmas[i], karras[i], 1e-6), $"sigma[{i}] {s.Sigmas[i]} vs {karras[i]}");
            Assert.That(s.Timesteps[i], Is.EqualTo(Ref.SigmaToT(karras[i], table)).Within(1e-3), $"t[{i}]");
        }
        Assert.That(s.Timesteps[12] % 1, Is.Not.EqualTo(0).Within(1e-9), "Karras timesteps are fractional");
    }

    [Test]
    public void DpmSolver_LinspaceLeadingTrailingAndKarras()
    {
        // linspace (default): round(linspace(0, 999, n + 1))[::-1][:-1]
        var lin = Make("dpmpp-2m", 20);
        Assert.That(lin.Timesteps, Is.EqualTo(Enumerable.Range(1, 20).Select(k => Math.Round(999.0 * k / 20, MidpointRounding.ToEven)).Reverse()));
        // leading: k * (1000 // 21) for k = 20..1, plus steps_offset
        Assert.That(Make("dpmpp-2m", 20, Sd1 with { TimestepSpacing = "leading" }).Timesteps,
            Is.EqualTo(Enumerable.Range(1, 20).Reverse().Select(k => k * 47.0 + 1)));
        Assert.That(Make("dpmpp-2m", 20, Sd1 with { TimestepSpacing = "trailing" }).Timesteps,
            Is.EqualTo(Enumerable.Range(0, 20).Select(k => 999.0 - 50 * k)));

        var karras = (DpmSolverMultistepScheduler)Make("dpmpp-2m", 20, Sd1 with { UseKarrasSigmas = true });
        var table = Ref.SigmaTable(Ref.AlphaBar(Ref.ScaledLinearBetas()));
        var expected = Ref.Karras(table[0], table[999], 20);
        for (int i = 0; i < 20; i++)
        {
            Assert.That(Ref.Close(karras.Sigmas[i], expected[i], 1e-6), $"sigma[{i}]");
            Assert.That(karras.Timesteps[i], Is.EqualTo(Math.Round(Ref.SigmaToT(expected[i], table))), $"t[{i}]");
        }
        Assert.That(karras.Sigmas[20], Is.EqualTo(0f));
        Assert.That(karras.InitNoiseSigma, Is.EqualTo(1.0));
    }

    [Test]
    public void Lms_TimestepsAndSigmasLikeEuler()
    {
        var lms = (LmsScheduler)Make("lms", 30);
        var euler = (EulerScheduler)Make("euler", 30);
        Assert.That(lms.Timesteps, Is.EqualTo(euler.Timesteps).Within(1e-4));
        Assert.That(lms.Sigmas, Is.EqualTo(euler.Sigmas).Within(1e-5));
        Assert.That(lms.InitNoiseSigma, Is.EqualTo(euler.InitNoiseSigma).Within(1e-6));
    }

    [TestCase("pndm"), TestCase("ddim"), TestCase("euler"), TestCase("euler-a"), TestCase("dpmpp-2m"), TestCase("lms")]
    public void SetTimesteps_RejectsNonsenseCounts(string name)
    {
        var s = SchedulerRegistry.Create(name, Sd1);
        Assert.Throws<ArgumentOutOfRangeException>(() => s.SetTimesteps(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => s.SetTimesteps(1001));
        Assert.Throws<InvalidOperationException>(() => s.Step(new float[4], 0, new float[4], null));
    }
}
