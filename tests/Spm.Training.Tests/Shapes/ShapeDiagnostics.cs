using Spm.Core.Randomness;
using Spm.Shapes.World;
using Spm.Training.Evaluation;

namespace Spm.Training.Tests.Shapes;

[Explicit("diagnostic")]
public class ShapeDiagnostics
{
    [Test]
    public void DumpGridAndFeatures()
    {
        var world = new ShapeWorld();
        var rng = new SeededRandom(1);
        var cells = new List<float[]?>();
        var eval = new ShapeEvaluator();
        for (int i = 0; i < 48; i++)
        {
            var s = world.Sample(rng);
            var img = ShapeRasterizer.Render(s.Scene);
            cells.Add(img);
            var j = eval.Evaluate(img);
            TestContext.Out.WriteLine($"{i}: {s.Caption} | {s.Scene.Shape} {s.Scene.Color} {s.Scene.Pattern} -> {j.Shape} {j.Color} {j.Pattern} {j.Background} {j.Features}");
        }
        var (g, h, w) = ImageGrid.Compose(cells, 6, 8, 64, 64);
        ImageGrid.SavePng("/tmp/shapes-grid.png", g, h, w);

        var stats = new Dictionary<string, List<float>>();
        for (int i = 0; i < 2000; i++)
        {
            var sc = world.RandomScene(rng);
            var img = ShapeRasterizer.Render(sc);
            var j = eval.Evaluate(img);
            void Add(string k, float v) { if (!stats.TryGetValue(k, out var l)) stats[k] = l = new(); l.Add(v); }
            var f = j.Features;
            Add($"shape {sc.Shape} h3", f.Harmonic3); Add($"shape {sc.Shape} h4", f.Harmonic4); Add($"shape {sc.Shape} h5", f.Harmonic5);
            Add($"pattern {sc.Pattern} contrast", f.PatternContrast); Add($"pattern {sc.Pattern} coherence", f.PatternCoherence);
            Add($"color {sc.Color} hue", f.HueDegrees);
        }
        foreach (var (k, l) in stats.OrderBy(x => x.Key))
        {
            l.Sort();
            TestContext.Out.WriteLine($"{k}: min {l[0]:F3} p1 {l[l.Count / 100]:F3} med {l[l.Count / 2]:F3} p99 {l[l.Count * 99 / 100]:F3} max {l[^1]:F3}");
        }
    }
}

[Explicit("diagnostic")]
public class ShapeThroughput
{
    [Test]
    public void Measure()
    {
        var world = new ShapeWorld();
        var rng = new SeededRandom(1);
        var scenes = Enumerable.Range(0, 3000).Select(_ => world.RandomScene(rng)).ToArray();
        var buffer = new float[3 * 64 * 64];
        foreach (var s in scenes.Take(200)) ShapeRasterizer.Render(s, buffer);
        var sw = System.Diagnostics.Stopwatch.StartNew();
        foreach (var s in scenes) ShapeRasterizer.Render(s, buffer);
        double render = scenes.Length / sw.Elapsed.TotalSeconds;
        var eval = new ShapeEvaluator();
        var images = scenes.Take(1000).Select(s => ShapeRasterizer.Render(s)).ToArray();
        foreach (var im in images.Take(100)) eval.Evaluate(im);
        sw.Restart();
        foreach (var im in images) eval.Evaluate(im);
        double evals = images.Length / sw.Elapsed.TotalSeconds;
        TestContext.Out.WriteLine($"render {render:F0} images/s, evaluate {evals:F0} images/s");
    }
}
