using Spm.Core.Randomness;
using Spm.Shapes.World;

namespace Spm.Training.Tests.Shapes;

[Explicit("diagnostic")]
public class ShapeRobustnessDiagnostics
{
    [Test]
    public void Curve()
    {
        var world = new ShapeWorld();
        var eval = new ShapeEvaluator();
        foreach (var blur in new[] { 0f, 0.5f, 1f, 1.5f })
            foreach (var noise in new[] { 0f, 0.03f, 0.06f, 0.1f, 0.15f })
            {
                var rng = new SeededRandom(5);
                int n = 400, s = 0, c = 0, p = 0, b = 0;
                var conf = new Dictionary<string, int>();
                var feats = new Dictionary<FillPattern, List<float>>(); var cohs = new Dictionary<FillPattern, List<float>>();
                for (int i = 0; i < n; i++)
                {
                    var sc = world.RandomScene(rng);
                    var img = ShapeRasterizer.Render(sc);
                    ImageCorruption.GaussianBlur(img, 3, 64, 64, blur);
                    ImageCorruption.AddGaussianNoise(img, noise, rng);
                    var j = eval.Evaluate(img);
                    if (j.Shape.Value == sc.Shape) s++; else Bump($"S {sc.Shape}->{j.Shape.Value}");
                    if (j.Color.Value == sc.Color) c++; else Bump($"C {sc.Color}->{j.Color.Value}");
                    if (!feats.ContainsKey(sc.Pattern)) { feats[sc.Pattern] = new(); cohs[sc.Pattern] = new(); } feats[sc.Pattern].Add(j.Features.PatternContrast); cohs[sc.Pattern].Add(j.Features.PatternCoherence);
                    if (j.Pattern.Value == sc.Pattern) p++; else Bump($"P {sc.Pattern}->{j.Pattern.Value} {sc.Background} {j.Features.PatternContrast:F3} {j.Features.PatternCoherence:F2}");
                    if (j.Background.Value == sc.Background) b++; else Bump($"B {sc.Background}->{j.Background.Value}");
                }
                void Bump(string k) => conf[k] = conf.GetValueOrDefault(k) + 1;
                TestContext.Out.WriteLine($"blur {blur} noise {noise}: shape {s * 100.0 / n:F1} color {c * 100.0 / n:F1} pattern {p * 100.0 / n:F1} bg {b * 100.0 / n:F1}  {string.Join("; ", conf.OrderByDescending(x => x.Value).Take(3).Select(x => x.Key + " x" + x.Value))}");
                foreach (var (k, l) in feats) { l.Sort(); var ch = cohs[k]; ch.Sort(); TestContext.Out.WriteLine($"   {k}: contrast p1 {l[l.Count / 100]:F3} p5 {l[l.Count / 20]:F3} med {l[l.Count / 2]:F3} p99 {l[l.Count * 99 / 100]:F3}; coherence p1 {ch[ch.Count / 100]:F3} p5 {ch[ch.Count / 20]:F3} med {ch[ch.Count / 2]:F3} p95 {ch[ch.Count * 95 / 100]:F3} p99 {ch[ch.Count * 99 / 100]:F3}"); }
            }
    }
}
