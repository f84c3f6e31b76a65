using Spm.Core.Randomness;
using Spm.Diffusion.Schedulers;
using Spm.Tests.Common;

namespace Spm.Diffusion.Tests.Schedulers;

/// <summary>
/// Every step of every scheduler against the published update rule computed in double (see <see cref="Ref"/>).
/// Each step's reference is fed the scheduler's own float32 input sample, so the comparison isolates that step's
/// arithmetic (1e-6, relative above 1); the whole trajectory is also compared end to end.
/// </summary>
[TestFixture]
public class StepTests
{
    private const int Len = 257; // odd size, exercises no vector-width assumption
    private const double Tol = 1e-6;

    private static SchedulerConfig Sd1 => SchedulerConfig.Load(Path.Combine(TestPaths.TinySd1, "scheduler", "scheduler_config.json"));

    private static readonly double[] Table = Ref.SigmaTable(Ref.AlphaBar(Ref.ScaledLinearBetas()));
    private static readonly float[] AlphaBar = Ref.AlphaBar(Ref.ScaledLinearBetas());

    /// <summary>A deterministic stand-in for the UNet: smooth in the sample, different every step.</summary>
    private static float[] FakeModel(ReadOnlySpan<float> x, int step)
    {
        var m = new float[x.Length];
        for (int i = 0; i < x.Length; i++) m[i] = (float)(0.3 * Math.Tanh(x[i]) + Math.Sin(0.37 * i + 1.3 * step) * 0.8);
        return m;
    }

    private static float[] InitialNoise(double scale)
    {
        var r = new SeededRandom(7);
        var x = new float[Len];
        r.FillGaussian(x);
        for (int i = 0; i < Len; i++) x[i] = (float)(x[i] * scale);
        return x;
    }

    private static double[] D(ReadOnlySpan<float> v)
    {
        var d = new double[v.Length];
        for (int i = 0; i < v.Length; i++) d[i] = v[i];
        return d;
    }

    // ----- DDIM (Song et al., eq. 12) -----

    [TestCase("epsilon", 0.0, false, false)]
    [TestCase("epsilon", 0.0, true, true)]
    [TestCase("v_prediction", 0.0, false, false)]
    [TestCase("epsilon", 0.7, false, false)]
    [TestCase("sample", 0.0, true, false)]
    public void Ddim_EveryStepIsEquation12(string prediction, double eta, bool setAlphaToOne, bool clip)
    {
        var config = Sd1 with { PredictionType = prediction, Eta = eta, SetAlphaToOne = setAlphaToOne, ClipSample = clip, ClipSampleRange = 0.9 };
        var s = SchedulerRegistry.Create("ddim", config);
        s.SetTimesteps(25);
        var x = InitialNoise(s.InitNoiseSigma);
        var rng = new SeededRandom(99);
        var refRng = new SeededRandom(99);
        var noise = new float[Len];
        for (int k = 0; k < s.Timesteps.Count; k++)
        {
            int t = (int)s.Timesteps[k], prev = t - 1000 / 25;
            double a = AlphaBar[t], ap = prev >= 0 ? AlphaBar[prev] : setAlphaToOne ? 1.0 : AlphaBar[0];
            var m = FakeModel(x, k);
            var expected = new double[Len];
            double sigma = eta * Math.Sqrt((1 - ap) / (1 - a) * (1 - a / ap));
            if (eta > 0) refRng.FillGaussian(noise);
            for (int i = 0; i < Len; i++)
            {
                double xi = x[i], mi = m[i], x0, eps;
                if (prediction == "epsilon") { x0 = (xi - Math.Sqrt(1 - a) * mi) / Math.Sqrt(a); eps = mi; }
                else if (prediction == "sample") { x0 = mi; eps = (xi - Math.Sqrt(a) * x0) / Math.Sqrt(1 - a); }
                else { x0 = Math.Sqrt(a) * xi - Math.Sqrt(1 - a) * mi; eps = Math.Sqrt(a) * mi + Math.Sqrt(1 - a) * xi; }
                if (clip) x0 = Math.Clamp(x0, -0.9, 0.9);
                expected[i] = Math.Sqrt(ap) * x0 + Math.Sqrt(1 - ap - sigma * sigma) * eps + (eta > 0 ? sigma * noise[i] : 0);
            }
            s.Step(m, k, x, eta > 0 ? rng : null);
            Ref.AssertClose(x, expected, Tol, $"DDIM step {k} (t={t})");
        }
    }

    // ----- PNDM / PLMS (Liu et al., eq. 9 and the linear multistep combination) -----

    [TestCase("epsilon", 50)]
    [TestCase("v_prediction", 20)]
    [TestCase("epsilon", 1)]
    public void Pndm_EveryStepIsPlms(string prediction, int steps)
    {
        var s = SchedulerRegistry.Create("pndm", Sd1 with { PredictionType = prediction });
        s.SetTimesteps(steps);
        int ratio = 1000 / steps;
        var x = InitialNoise(1);
        var history = new List<double[]>(); // eps of every call except the repeated second one
        double[]? firstSample = null, firstEps = null;

        double[] Prev(double[] sample, double[] eps, int t, int prev)
        {
            double a = AlphaBar[t], ap = prev >= 0 ? AlphaBar[prev] : AlphaBar[0];
            var r = new double[Len];
            for (int i = 0; i < Len; i++)
            {
                double e = prediction == "v_prediction" ? Math.Sqrt(a) * eps[i] + Math.Sqrt(1 - a) * sample[i] : eps[i];
                r[i] = Math.Sqrt(ap / a) * sample[i] - (ap - a) * e / (a * Math.Sqrt(1 - ap) + Math.Sqrt(a * (1 - a) * ap));
            }
            return r;
        }

        for (int k = 0; k < s.Timesteps.Count; k++)
        {
            var m = FakeModel(x, k);
            var md = D(m);
            double[] expected;
            int t = (int)s.Timesteps[k];
            if (k == 0)
            {
                firstSample = D(x);
                firstEps = md;
                history.Add(md);
                expected = Prev(firstSample, md, t, t - ratio);
            }
            else if (k == 1)
            {
                // Second call at the repeated timestep: restart from the first sample with the mean of both outputs.
                var avg = md.Zip(firstEps!, (p, q) => (p + q) / 2).ToArray();
                expected = Prev(firstSample!, avg, t + ratio, t);
            }
            else
            {
                history.Add(md);
                int n = history.Count;
                var e = new double[Len];
                for (int i = 0; i < Len; i++)
                {
                    double e1 = history[n - 1][i], e2 = history[n - 2][i];
                    e[i] = n switch
                    {
                        2 => (3 * e1 - e2) / 2,
                        3 => (23 * e1 - 16 * e2 + 5 * history[n - 3][i]) / 12,
                        _ => (55 * e1 - 59 * e2 + 37 * history[n - 3][i] - 9 * history[n - 4][i]) / 24,
                    };
                }
                expected = Prev(D(x), e, t, t - ratio);
            }
            s.Step(m, k, x, null);
            Ref.AssertClose(x, expected, Tol, $"PNDM call {k} (t={t})");
        }
    }

    [Test]
    public void PndmWithRungeKuttaWarmUp_IsThePapersPseudoRungeKuttaThenPlms()
    {
        var s = SchedulerRegistry.Create("pndm", Sd1 with { SkipPrkSteps = false });
        s.SetTimesteps(50);
        // Three PRK steps 981 -> 961 -> 941 -> 921 at (t, t - d/2, t - d/2, t - d), then PLMS from 921 down to 1.
        var expectedT = new List<double> { 981, 971, 971, 961, 961, 951, 951, 941, 941, 931, 931, 921 };
        for (int t = 921; t >= 1; t -= 20) expectedT.Add(t);
        Assert.That(s.Timesteps, Is.EqualTo(expectedT));

        double[] Phi(double[] x, double[] e, int t, int prev)
        {
            double a = AlphaBar[t], ap = prev >= 0 ? AlphaBar[prev] : AlphaBar[0];
            return x.Select((xi, i) => Math.Sqrt(ap / a) * xi - (ap - a) * e[i] / (a * Math.Sqrt(1 - ap) + Math.Sqrt(a * (1 - a) * ap))).ToArray();
        }

        var x = InitialNoise(1);
        var history = new List<double[]>(); // eps at the start of every full step
        double[] start = [];
        var stage = new List<double[]>();
        for (int k = 0; k < s.Timesteps.Count; k++)
        {
            var m = FakeModel(x, k);
            var e = D(m);
            double[] expected;
            if (k < 12)
            {
                // Liu et al. (2022) eq. 13: e1 at x_t; x1 = phi(x_t, e1, t, t-d/2); e2 at x1; x2 = phi(x_t, e2, t, t-d/2);
                // e3 at x2; x3 = phi(x_t, e3, t, t-d); e4 at x3; x_(t-d) = phi(x_t, (e1 + 2 e2 + 2 e3 + e4) / 6, t, t-d).
                int t = 981 - 20 * (k / 4);
                if (k % 4 == 0) { start = D(x); stage.Clear(); history.Add(e); }
                stage.Add(e);
                expected = (k % 4) switch
                {
                    0 => Phi(start, e, t, t - 10),
                    1 => Phi(start, e, t, t - 10),
                    2 => Phi(start, e, t, t - 20),
                    _ => Phi(start, stage[0].Select((v, i) => (v + 2 * stage[1][i] + 2 * stage[2][i] + stage[3][i]) / 6).ToArray(), t, t - 20),
                };
            }
            else
            {
                history.Add(e);
                int n = history.Count;
                var combined = e.Select((_, i) => (55 * history[n - 1][i] - 59 * history[n - 2][i] + 37 * history[n - 3][i] - 9 * history[n - 4][i]) / 24).ToArray();
                int t = (int)s.Timesteps[k];
                expected = Phi(D(x), combined, t, t - 20);
            }
            s.Step(m, k, x, null);
            Ref.AssertClose(x, expected, Tol, $"PNDM+PRK call {k} (t={s.Timesteps[k]})");
        }
    }

    // ----- Euler and Euler ancestral (Karras et al. Algorithm 2; k-diffusion's ancestral step) -----

    [TestCase("euler", "epsilon", false, null)]
    [TestCase("euler", "v_prediction", false, null)]
    [TestCase("euler", "epsilon", true, null)]
    [TestCase("euler", "epsilon", false, "leading")]
    [TestCase("euler", "sample", true, "trailing")]
    [TestCase("euler-a", "epsilon", false, null)]
    [TestCase("euler-a", "v_prediction", false, "trailing")]
    public void Euler_EveryStepIsTheOdeStep(string name, string prediction, bool karras, string? spacing)
    {
        var s = SchedulerRegistry.Create(name, Sd1 with { PredictionType = prediction, UseKarrasSigmas = karras, TimestepSpacing = spacing });
        s.SetTimesteps(30);
        var sigmas = name == "euler" ? ((EulerScheduler)s).Sigmas : ((EulerAncestralScheduler)s).Sigmas;
        var x = InitialNoise(s.InitNoiseSigma);
        var rng = new SeededRandom(5);
        var refRng = new SeededRandom(5);
        var noise = new float[Len];
        var scaled = new float[Len];
        for (int k = 0; k < 30; k++)
        {
            double sg = sigmas[k], next = sigmas[k + 1];
            // The UNet sees x / sqrt(sigma^2 + 1).
            s.ScaleModelInput(x, scaled, k);
            Ref.AssertClose(scaled, x.Select(v => v / Math.Sqrt(sg * sg + 1)).ToArray(), Tol, $"scale {k}");
            var m = FakeModel(scaled, k);
            double target = next, up = 0;
            if (name == "euler-a")
            {
                up = Math.Sqrt(next * next * (sg * sg - next * next) / (sg * sg));
                target = Math.Sqrt(next * next - up * up);
                refRng.FillGaussian(noise);
            }
            var expected = new double[Len];
            for (int i = 0; i < Len; i++)
            {
                double xi = x[i];
                double x0 = prediction switch
                {
                    "epsilon" => xi - sg * m[i],
                    "sample" => m[i],
                    _ => m[i] * (-sg / Math.Sqrt(sg * sg + 1)) + xi / (sg * sg + 1),
                };
                expected[i] = xi + (xi - x0) / sg * (target - sg) + up * noise[i];
            }
            var input = D(x);
            s.Step(m, k, x, name == "euler-a" ? rng : null);
            Ref.AssertClose(x, expected, input, Tol, $"{name} step {k} (sigma {sg})");
        }
    }

    // ----- LMS: coefficients are integrals of Lagrange basis polynomials over [sigma_i, sigma_i+1] -----

    [TestCase(false)]
    [TestCase(true)]
    public void Lms_EveryStepUsesTheIntegratedLagrangeCoefficients(bool karras)
    {
        var s = (LmsScheduler)SchedulerRegistry.Create("lms", Sd1 with { UseKarrasSigmas = karras });
        s.SetTimesteps(20);
        var sig = s.Sigmas.Select(v => (double)v).ToArray();
        var x = InitialNoise(s.InitNoiseSigma);
        var derivs = new List<double[]>();
        var scaled = new float[Len];
        for (int k = 0; k < 20; k++)
        {
            s.ScaleModelInput(x, scaled, k);
            var m = FakeModel(scaled, k);
            derivs.Add(x.Select((xi, i) => (xi - (xi - sig[k] * m[i])) / sig[k]).ToArray());
            int order = Math.Min(k + 1, 4);
            var nodes = Enumerable.Range(0, order).Select(j => sig[k - j]).ToArray(); // node j = sigma[k - j]
            var expected = D(x);
            for (int j = 0; j < order; j++)
            {
                double c = Ref.LagrangeIntegral(nodes, j, sig[k], sig[k + 1]);
                var d = derivs[derivs.Count - 1 - j];
                for (int i = 0; i < Len; i++) expected[i] += c * d[i];
            }
            s.Step(m, k, x, null);
            Ref.AssertClose(x, expected, Tol, $"LMS step {k}");
        }
    }

    [Test]
    public void Lms_FirstOrderCoefficientIsTheStepWidth()
    {
        var s = (LmsScheduler)SchedulerRegistry.Create("lms", Sd1);
        s.SetTimesteps(10);
        Assert.That(s.LmsCoefficient(1, 0, 0), Is.EqualTo(s.Sigmas[1] - s.Sigmas[0]).Within(1e-12));
    }

    // ----- DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2) -----

    [TestCase("epsilon", false, 20)]
    [TestCase("epsilon", true, 20)]
    [TestCase("v_prediction", false, 12)]
    [TestCase("epsilon", false, 1)]
    [TestCase("sample", false, 7)]
    public void DpmSolverPlusPlus2M_EveryStepIsAlgorithm2(string prediction, bool karras, int steps)
    {
        var s = (DpmSolverMultistepScheduler)SchedulerRegistry.Create("dpmpp-2m", Sd1 with { PredictionType = prediction, UseKarrasSigmas = karras });
        s.SetTimesteps(steps);
        var sig = s.Sigmas.Select(v => (double)v).ToArray();
        var x = InitialNoise(s.InitNoiseSigma);
        double[]? prevX0 = null;
        for (int k = 0; k < steps; k++)
        {
            var m = FakeModel(x, k);
            // VP parametrisation: alpha = 1/sqrt(1+sigma^2), sigma_t = sigma * alpha, lambda = log(alpha / sigma_t) = -log(sigma).
            double aS = 1 / Math.Sqrt(1 + sig[k] * sig[k]), sS = sig[k] * aS;
            var x0 = x.Select((xi, i) => prediction switch
            {
                "epsilon" => (xi - sS * m[i]) / aS,
                "sample" => (double)m[i],
                _ => aS * xi - sS * m[i],
            }).ToArray();
            var expected = new double[Len];
            if (sig[k + 1] == 0)
            {
                expected = x0; // the final first-order step to sigma 0 lands on the data prediction
            }
            else
            {
                double aT = 1 / Math.Sqrt(1 + sig[k + 1] * sig[k + 1]), sT = sig[k + 1] * aT;
                double h = -Math.Log(sig[k + 1]) + Math.Log(sig[k]);
                var dpm = x0;
                if (prevX0 is not null)
                {
                    double hPrev = -Math.Log(sig[k]) + Math.Log(sig[k - 1]);
                    double r = hPrev / h;
                    dpm = x0.Select((v, i) => (1 + 1 / (2 * r)) * v - 1 / (2 * r) * prevX0[i]).ToArray();
                }
                for (int i = 0; i < Len; i++) expected[i] = sT / sS * x[i] - aT * (Math.Exp(-h) - 1) * dpm[i];
            }
            prevX0 = x0;
            s.Step(m, k, x, null);
            Ref.AssertClose(x, expected, Tol, $"DPM++ 2M step {k} (sigma {sig[k]} -> {sig[k + 1]})");
        }
    }

    // ----- Whole trajectories and contracts -----

    [TestCase("pndm"), TestCase("ddim"), TestCase("euler"), TestCase("euler-a"), TestCase("dpmpp-2m"), TestCase("lms")]
    public void FullRun_IsDeterministicFiniteAndResettable(string name)
    {
        float[] Run(IScheduler s)
        {
            s.SetTimesteps(15);
            var x = InitialNoise(s.InitNoiseSigma);
            var rng = new SeededRandom(3);
            var scaled = new float[Len];
            for (int k = 0; k < s.Timesteps.Count; k++)
            {
                s.ScaleModelInput(x, scaled, k);
                s.Step(FakeModel(scaled, k), k, x, rng);
            }
            return x;
        }
        var sched = SchedulerRegistry.Create(name, Sd1 with { Eta = name == "ddim" ? 0.5 : 0 });
        var a = Run(sched);
        var b = Run(sched); // SetTimesteps resets every history
        var c = Run(SchedulerRegistry.Create(name, Sd1 with { Eta = name == "ddim" ? 0.5 : 0 }));
        Assert.That(a.All(float.IsFinite));
        Assert.That(b, Is.EqualTo(a));
        Assert.That(c, Is.EqualTo(a));
    }

    [Test]
    public void StochasticSamplers_RequireTheGenerator_AndStepsMustBeInOrder()
    {
        var ea = SchedulerRegistry.Create("euler-a", Sd1);
        ea.SetTimesteps(5);
        Assert.Throws<ArgumentNullException>(() => ea.Step(new float[4], 0, new float[4], null));
        var ddim = SchedulerRegistry.Create("ddim", Sd1 with { Eta = 1 });
        ddim.SetTimesteps(5);
        Assert.Throws<ArgumentNullException>(() => ddim.Step(new float[4], 0, new float[4], null));

        var pndm = SchedulerRegistry.Create("pndm", Sd1);
        pndm.SetTimesteps(5);
        var ex = Assert.Throws<InvalidOperationException>(() => pndm.Step(new float[4], 2, new float[4], null));
        Assert.That(ex!.Message, Does.Contain("in order"));
        Assert.Throws<ArgumentException>(() => pndm.Step(new float[3], 0, new float[4], null));
        Assert.Throws<ArgumentOutOfRangeException>(() => pndm.Step(new float[4], 99, new float[4], null));
    }
}
