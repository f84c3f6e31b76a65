using Spm.Core.Randomness;
using Spm.Shapes.World;

namespace Spm.Training.Tests.Shapes;

public class ShapeRasterizerTests
{
    private const int S = 64;

    private static ShapeScene Plain(ShapeKind kind, float size = 20f, float rotation = 0.3f, float cx = 32f, float cy = 31.5f) =>
        new(kind, ShapeColor.Red, FillPattern.Plain, ShapeBackground.Black, cx, cy, size, rotation);

    /// <summary>Sum of coverage: on black, the red channel is 0.9 x coverage.</summary>
    private static double CoveredArea(float[] image)
    {
        double sum = 0;
        for (int i = 0; i < S * S; i++) sum += image[i] / 0.9;
        return sum;
    }

    [TestCase(ShapeKind.Circle)]
    [TestCase(ShapeKind.Square)]
    [TestCase(ShapeKind.Triangle)]
    [TestCase(ShapeKind.Star)]
    public void AntiAliasedAreaMatchesTheExactArea(ShapeKind kind)
    {
        const float r = 20f;
        double exact = kind switch
        {
            ShapeKind.Circle => Math.PI * Math.Pow(ShapeRasterizer.CircleRadiusFraction * r, 2),
            ShapeKind.Square => 2.0 * r * r,                                   // diagonal 2r
            ShapeKind.Triangle => 3 * Math.Sqrt(3) / 4 * r * r,                // circumradius r
            _ => 5.0 * r * (ShapeRasterizer.StarInnerFraction * r) * Math.Sin(Math.PI / 5), // 10 triangles R, r, 36°
        };
        foreach (var rotation in new[] { 0f, 0.3f, 1.1f })
            Assert.That(CoveredArea(ShapeRasterizer.Render(Plain(kind, r, rotation))), Is.EqualTo(exact).Within(0.5).Percent, $"rotation {rotation}");
    }

    [Test]
    public void EdgesAreAntiAliasedInsideIsFillOutsideIsBackground()
    {
        var image = ShapeRasterizer.Render(Plain(ShapeKind.Circle, 20f, 0f, 32.3f, 32f));
        int centre = 32 * S + 32;
        Assert.That(image[centre], Is.EqualTo(0.9f));
        Assert.That(image[S * S + centre], Is.EqualTo(0.1f));
        Assert.That(image[0], Is.EqualTo(0f));
        // Along the row through the centre, the edge at x = 32 + 17 passes through intermediate values.
        int partial = Enumerable.Range(0, S).Count(x => image[32 * S + x] is > 0.01f and < 0.89f);
        Assert.That(partial, Is.InRange(2, 4));
    }

    [TestCase(ShapeKind.Circle, 1.0)]
    [TestCase(ShapeKind.Square, 0.5 * Math.PI)]
    [TestCase(ShapeKind.Triangle, 2 * Math.PI / 3)]
    [TestCase(ShapeKind.Star, 2 * Math.PI / 5)]
    public void RotatingByTheSymmetryAngleGivesTheSameImage(ShapeKind kind, double symmetry)
    {
        var a = ShapeRasterizer.Render(Plain(kind, 18f, 0.2f, 32f, 32f));
        var b = ShapeRasterizer.Render(Plain(kind, 18f, 0.2f + (float)symmetry, 32f, 32f));
        double maxDiff = a.Zip(b, (x, y) => Math.Abs(x - y)).Max();
        Assert.That(maxDiff, Is.LessThan(1e-3));
        // ...while a generic rotation changes a polygon.
        if (kind != ShapeKind.Circle)
        {
            var c = ShapeRasterizer.Render(Plain(kind, 18f, 0.2f + (float)symmetry / 2, 32f, 32f));
            Assert.That(a.Zip(c, (x, y) => Math.Abs(x - y)).Max(), Is.GreaterThan(0.3));
        }
    }

    [TestCase(FillPattern.Striped, 0.5)]
    [TestCase(FillPattern.Dotted, Math.PI * ShapeRasterizer.DotRadius * ShapeRasterizer.DotRadius / (ShapeRasterizer.DotSpacing * ShapeRasterizer.DotSpacing))]
    public void PatternCoversItsShareOfTheShapeInTheShadeColour(FillPattern pattern, double share)
    {
        // A big square on white: count shade coverage from the red channel (fill 0.9, shade 0.45).
        var scene = new ShapeScene(ShapeKind.Square, ShapeColor.Red, pattern, ShapeBackground.White, 32f, 32f, 28f, 0.4f);
        var image = ShapeRasterizer.Render(scene);
        var shade = ShapeVocabulary.PatternRgb(ShapeColor.Red, ShapeBackground.White);
        Assert.That(shade, Is.EqualTo(new Rgb(0.45f, 0.05f, 0.05f)));
        double covered = 0, shaded = 0;
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++)
            {
                // Pixels well inside the square (half-side 19.8 px) only.
                if (Math.Pow(x + 0.5 - 32, 2) + Math.Pow(y + 0.5 - 32, 2) > 17 * 17) continue;
                covered++;
                shaded += (0.9 - image[y * S + x]) / 0.45;
            }
        Assert.That(covered, Is.GreaterThan(800));
        Assert.That(shaded / covered, Is.EqualTo(share).Within(0.04));
    }

    [Test]
    public void ShadesOnBlackAreLighterTintsElsewhereDarkerShades()
    {
        var fill = ShapeVocabulary.ToRgb(ShapeColor.Blue);
        var onBlack = ShapeVocabulary.PatternRgb(ShapeColor.Blue, ShapeBackground.Black);
        var onWhite = ShapeVocabulary.PatternRgb(ShapeColor.Blue, ShapeBackground.White);
        Assert.That(onBlack.R + onBlack.G + onBlack.B, Is.GreaterThan(fill.R + fill.G + fill.B));
        Assert.That(onWhite.R + onWhite.G + onWhite.B, Is.LessThan(fill.R + fill.G + fill.B));
        // Every fill and shade stands well clear of every background (the evaluator relies on it).
        foreach (var c in ShapeVocabulary.Colors)
            foreach (var b in ShapeVocabulary.Backgrounds)
            {
                var bg = ShapeVocabulary.ToRgb(b);
                Assert.That(ShapeVocabulary.ToRgb(c).DistanceTo(bg), Is.GreaterThan(0.4f), $"{c} on {b}");
                Assert.That(ShapeVocabulary.PatternRgb(c, b).DistanceTo(bg), Is.GreaterThan(0.3f), $"{c} shade on {b}");
            }
    }

    [Test]
    public void SameSeedSameImagesDifferentSeedDifferentImages()
    {
        var world = new ShapeWorld();
        float[] RenderFirst(ulong seed, int count)
        {
            var rng = new SeededRandom(seed);
            var all = new List<float>();
            for (int i = 0; i < count; i++) all.AddRange(ShapeRasterizer.Render(world.Sample(rng).Scene));
            return all.ToArray();
        }
        Assert.That(RenderFirst(11, 5), Is.EqualTo(RenderFirst(11, 5)));
        Assert.That(RenderFirst(11, 5), Is.Not.EqualTo(RenderFirst(12, 5)));
    }

    [Test]
    public void RandomScenesStayInsideTheImage()
    {
        var world = new ShapeWorld();
        var rng = new SeededRandom(3);
        for (int i = 0; i < 500; i++)
        {
            var s = world.RandomScene(rng);
            Assert.That(s.CenterX - s.Size, Is.GreaterThanOrEqualTo(2f));
            Assert.That(s.CenterY + s.Size, Is.LessThanOrEqualTo(62f));
            Assert.That(s.Size, Is.InRange(15f, 25f));
            var image = ShapeRasterizer.Render(s);
            var bg = ShapeVocabulary.ToRgb(s.Background);
            for (int x = 0; x < S; x++) Assert.That(image[x], Is.EqualTo(bg.R), "top row untouched");
        }
    }

    [Test]
    public void WrongDestinationLengthThrows()
    {
        Assert.Throws<ArgumentException>(() => ShapeRasterizer.Render(Plain(ShapeKind.Circle), new float[100], 64));
        Assert.Throws<ArgumentException>(() => new ShapeWorld(new ShapeWorldOptions(ImageSize: 32, MaxSize: 20)));
    }

    [Test]
    public void FixedStripeAngle_BandsStayHorizontalWhateverTheShapesRotation()
    {
        // With StripeAngle 0 every fully covered pixel's colour depends on its row only; turning the shape moves the
        // outline, not the bands. With the stripes following the shape (null) the same turned square has rows of two colours.
        foreach (float rotation in new[] { 0.3f, 1.1f })
        {
            var scene = new ShapeScene(ShapeKind.Square, ShapeColor.Blue, FillPattern.Striped, ShapeBackground.White, 32f, 32f, 24f, rotation);
            var fixedImage = new float[3 * 64 * 64];
            ShapeRasterizer.Render(scene, fixedImage, 64, ShapeStyle.Flat, ShapeRasterizer.StripePeriod, 0f);
            var turning = ShapeRasterizer.Render(scene);
            // The inscribed circle of the square less 2 px: fully inside whatever the rotation.
            float r = 24f * 0.70710678f - 2f;
            bool turningVaries = false;
            for (int y = 0; y < 64; y++)
            {
                var inside = Enumerable.Range(0, 64).Where(x => (x + 0.5f - 32) * (x + 0.5f - 32) + (y + 0.5f - 32) * (y + 0.5f - 32) < r * r).ToArray();
                if (inside.Length < 2) continue;
                for (int c = 0; c < 3; c++)
                {
                    var row = inside.Select(x => fixedImage[c * 4096 + y * 64 + x]).ToArray();
                    Assert.That(row.Max() - row.Min(), Is.LessThan(1e-6f), $"rotation {rotation}, row {y}, channel {c}");
                    var turned = inside.Select(x => turning[c * 4096 + y * 64 + x]).ToArray();
                    turningVaries |= turned.Max() - turned.Min() > 0.1f;
                }
            }
            Assert.That(turningVaries, $"rotation {rotation}: stripes that turn with the shape should cross the rows");
        }
        Assert.That(() => ShapeRasterizer.Render(new ShapeScene(ShapeKind.Circle, ShapeColor.Red, FillPattern.Striped, ShapeBackground.White, 32, 32, 20, 0),
            new float[3 * 64 * 64], 64, ShapeStyle.Flat, 8f, float.NaN), Throws.ArgumentException.With.Message.Contains("angle"));
    }
}
