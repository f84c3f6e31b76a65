namespace Spm.Shapes.World;

/// <summary>
/// Draws a <see cref="ShapeScene"/> into a planar RGB float image ([3, S, S] flattened, values in [0, 1]).
/// Anti-aliasing is analytic: every edge (the shape's outline and the pattern's band and dot borders) is a
/// signed distance turned into coverage by a one-pixel linear ramp, coverage = clamp(0.5 - distance, 0, 1),
/// which for straight edges is the area of the pixel on the inside to within a few percent.
/// </summary>
public static class ShapeRasterizer
{
    /// <summary>Circle radius as a fraction of the scene's circumradius.</summary>
    public const float CircleRadiusFraction = 0.85f;

    /// <summary>Inner (concave) vertex radius of the star as a fraction of its outer radius.</summary>
    public const float StarInnerFraction = 0.5f;

    /// <summary>Stripe period in pixels (half colour, half shade).</summary>
    public const float StripePeriod = 8f;

    /// <summary>Distance between dot centres in pixels.</summary>
    public const float DotSpacing = 7f;

    /// <summary>Dot radius in pixels.</summary>
    public const float DotRadius = 2.2f;

    // Unit polygons (circumradius 1) in shape-local coordinates, y down, first vertex pointing up.
    private static readonly float[] TriangleVertices = RegularPolygon(3, 1f, 1f);
    private static readonly float[] SquareVertices = RegularPolygon(4, 1f, 1f, MathF.PI / 4);
    private static readonly float[] StarVertices = RegularPolygon(10, 1f, StarInnerFraction);

    /// <summary>Renders into a new array of 3 * size * size floats.</summary>
    public static float[] Render(ShapeScene scene, int size = 64)
    {
        var image = new float[3 * size * size];
        Render(scene, image, size);
        return image;
    }

    /// <summary>Width in pixels of the outline of <see cref="ShapeStyle.Outlined"/>.</summary>
    public const float OutlineWidth = 1.5f;

    /// <summary>Renders into <paramref name="destination"/> (3 * size * size floats, planar R, G, B).</summary>
    /// <exception cref="ArgumentException">The destination has the wrong length.</exception>
    public static void Render(ShapeScene scene, Span<float> destination, int size = 64) => Render(scene, destination, size, ShapeStyle.Flat);

    /// <summary>Renders in a <paramref name="style"/> into <paramref name="destination"/> (3 * size * size floats, planar R, G, B).</summary>
    /// <exception cref="ArgumentException">The destination has the wrong length.</exception>
    public static void Render(ShapeScene scene, Span<float> destination, int size, ShapeStyle style) =>
        Render(scene, destination, size, style, StripePeriod);

    /// <summary>
    /// Renders in a <paramref name="style"/> with stripes of <paramref name="stripePeriod"/> pixels
    /// (<see cref="ShapeWorldOptions.StripePeriod"/>) into <paramref name="destination"/> (3 * size * size floats, planar R, G, B).
    /// </summary>
    /// <exception cref="ArgumentException">The destination has the wrong length or the period is not positive.</exception>
    public static void Render(ShapeScene scene, Span<float> destination, int size, ShapeStyle style, float stripePeriod) =>
        Render(scene, destination, size, style, stripePeriod, null);

    /// <summary>
    /// Renders with stripes of <paramref name="stripePeriod"/> pixels that turn with the shape (<paramref name="stripeAngle"/>
    /// null) or lie at a fixed angle in image space (<see cref="ShapeWorldOptions.StripeAngle"/>).
    /// </summary>
    /// <exception cref="ArgumentException">The destination has the wrong length, or the period or angle is unusable.</exception>
    public static void Render(ShapeScene scene, Span<float> destination, int size, ShapeStyle style, float stripePeriod, float? stripeAngle) =>
        Render(scene, destination, size, style, stripePeriod, stripeAngle, DotSpacing, null);

    /// <summary>
    /// Renders a scene of <paramref name="world"/> (its image size, style, stripes and dots) into <paramref name="destination"/>
    /// (3 * size * size floats, planar R, G, B): how a world's training pictures are drawn.
    /// </summary>
    /// <exception cref="ArgumentException">The destination has the wrong length, or the world's pattern geometry is unusable.</exception>
    public static void Render(ShapeScene scene, Span<float> destination, ShapeWorldOptions world)
    {
        ArgumentNullException.ThrowIfNull(world);
        Render(scene, destination, world.ImageSize, world.Style, world.StripePeriod, world.StripeAngle, world.DotSpacing, world.DotAngle);
    }

    private static void Render(ShapeScene scene, Span<float> destination, int size, ShapeStyle style, float stripePeriod, float? stripeAngle,
        float dotSpacing, float? dotAngle)
    {
        if (!(dotSpacing > 0f) || float.IsInfinity(dotSpacing)) throw new ArgumentException($"Dot spacing must be positive, got {dotSpacing}.");
        if (dotAngle is { } fixedDots && !float.IsFinite(fixedDots)) throw new ArgumentException($"Dot angle must be finite, got {fixedDots}.");
        float dotCos = MathF.Cos(dotAngle ?? 0f), dotSin = MathF.Sin(dotAngle ?? 0f);
        var dots = new DotLattice(dotSpacing, DotRadius * dotSpacing / DotSpacing);
        if (!(stripePeriod > 0f) || float.IsInfinity(stripePeriod)) throw new ArgumentException($"Stripe period must be positive, got {stripePeriod}.");
        if (stripeAngle is { } fixedAngle && !float.IsFinite(fixedAngle)) throw new ArgumentException($"Stripe angle must be finite, got {fixedAngle}.");
        // The stripes' coordinate across the bands: the shape's own v, or v in a frame at the fixed angle.
        float stripeCos = MathF.Cos(stripeAngle ?? 0f), stripeSin = MathF.Sin(stripeAngle ?? 0f);
        ArgumentNullException.ThrowIfNull(scene);
        if (size <= 0 || destination.Length != 3 * size * size)
            throw new ArgumentException($"Destination must hold 3 x {size} x {size} floats, got {destination.Length}.");
        int plane = size * size;
        var bg = ShapeVocabulary.ToRgb(scene.Background);
        destination[..plane].Fill(bg.R);
        destination.Slice(plane, plane).Fill(bg.G);
        destination.Slice(2 * plane, plane).Fill(bg.B);

        var main = ShapeVocabulary.ToRgb(scene.Color);
        var shade = ShapeVocabulary.PatternRgb(scene.Color, scene.Background);
        float r = scene.Size;
        Span<float> poly = stackalloc float[20];
        int vertices = 0;
        if (scene.Shape != ShapeKind.Circle)
        {
            var unit = scene.Shape switch
            {
                ShapeKind.Triangle => TriangleVertices,
                ShapeKind.Square => SquareVertices,
                _ => StarVertices,
            };
            vertices = unit.Length / 2;
            for (int i = 0; i < unit.Length; i++) poly[i] = unit[i] * r;
        }
        poly = poly[..(2 * vertices)];
        // Pixels nearer the centre than the inradius less a pixel are fully inside; beyond the circumradius plus
        // a pixel fully outside: both skip the per-edge distance.
        float inradius = scene.Shape switch
        {
            ShapeKind.Circle => CircleRadiusFraction * r,
            ShapeKind.Triangle => 0.5f * r,
            ShapeKind.Square => 0.70710678f * r,
            _ => StarInnerFraction * MathF.Cos(MathF.PI / 5) * r,
        };
        // An outline needs the distance further in.
        float skipIn = inradius - 1f - (style == ShapeStyle.Outlined ? OutlineWidth + 1f : 0f);
        float insideR2 = MathF.Max(0f, skipIn) * MathF.Max(0f, skipIn), outsideR2 = (r + 1f) * (r + 1f);
        // Outlines are dark, or light on the black background, so they always stand off it.
        var outline = scene.Background == ShapeBackground.Black ? new Rgb(0.9f, 0.9f, 0.9f) : new Rgb(0.1f, 0.1f, 0.1f);

        float cos = MathF.Cos(scene.Rotation), sin = MathF.Sin(scene.Rotation);
        // Only the pixels near the circumcircle can be touched by the shape.
        int x0 = Math.Max(0, (int)MathF.Floor(scene.CenterX - r - 1)), x1 = Math.Min(size - 1, (int)MathF.Ceiling(scene.CenterX + r + 1));
        int y0 = Math.Max(0, (int)MathF.Floor(scene.CenterY - r - 1)), y1 = Math.Min(size - 1, (int)MathF.Ceiling(scene.CenterY + r + 1));
        for (int py = y0; py <= y1; py++)
        {
            float dy = py + 0.5f - scene.CenterY;
            for (int px = x0; px <= x1; px++)
            {
                float dx = px + 0.5f - scene.CenterX;
                // Into shape-local coordinates (undo the rotation).
                float u = cos * dx + sin * dy;
                float v = -sin * dx + cos * dy;
                float r2 = u * u + v * v;
                if (r2 > outsideR2) continue;
                float distance = r2 < insideR2 ? float.NegativeInfinity
                    : vertices == 0 ? MathF.Sqrt(r2) - CircleRadiusFraction * r : PolygonDistance(poly, u, v);
                float alpha = Math.Clamp(0.5f - distance, 0f, 1f);
                if (alpha <= 0f) continue;
                float across = stripeAngle is null ? v : -stripeSin * dx + stripeCos * dy;
                // A fixed dot lattice is anchored at the image's origin, not at the shape's centre.
                float du = u, dv = v;
                if (dotAngle is not null)
                {
                    float ix = px + 0.5f, iy = py + 0.5f;
                    du = dotCos * ix + dotSin * iy;
                    dv = -dotSin * ix + dotCos * iy;
                }
                float beta = PatternCoverage(scene.Pattern, du, dv, across, stripePeriod, dots);
                float fr = main.R + (shade.R - main.R) * beta;
                float fg = main.G + (shade.G - main.G) * beta;
                float fb = main.B + (shade.B - main.B) * beta;
                if (style == ShapeStyle.Outlined)
                {
                    // The band within OutlineWidth of the edge, with the same one-pixel ramp on its inner side.
                    float gamma = Math.Clamp(0.5f + distance + OutlineWidth, 0f, 1f);
                    fr += (outline.R - fr) * gamma;
                    fg += (outline.G - fg) * gamma;
                    fb += (outline.B - fb) * gamma;
                }
                int i = py * size + px;
                destination[i] = bg.R + (fr - bg.R) * alpha;
                destination[plane + i] = bg.G + (fg - bg.G) * alpha;
                destination[2 * plane + i] = bg.B + (fb - bg.B) * alpha;
            }
        }
    }

    /// <summary>Fraction of the pixel at shape-local (u, v) covered by the pattern's shade.</summary>
    private static float PatternCoverage(FillPattern pattern, float u, float v, float across, float period, DotLattice dots)
    {
        switch (pattern)
        {
            case FillPattern.Striped:
            {
                // Bands [P/2, P) of each period are shade; distance to the nearest band edge, positive inside.
                float half = period / 2;
                float s = across - period * MathF.Floor(across / period);
                float inside = s >= half ? MathF.Min(s - half, period - s) : -MathF.Min(s, half - s);
                return Math.Clamp(0.5f + inside, 0f, 1f);
            }
            case FillPattern.Dotted:
            {
                float du = u - dots.Spacing * MathF.Round(u / dots.Spacing);
                float dv = v - dots.Spacing * MathF.Round(v / dots.Spacing);
                return Math.Clamp(0.5f + dots.Radius - MathF.Sqrt(du * du + dv * dv), 0f, 1f);
            }
            default:
                return 0f;
        }
    }

    private readonly record struct DotLattice(float Spacing, float Radius);

    /// <summary>Signed distance from (u, v) to a closed polygon (negative inside), exact for simple polygons.</summary>
    private static float PolygonDistance(ReadOnlySpan<float> poly, float u, float v)
    {
        int n = poly.Length / 2;
        float best = float.MaxValue;
        bool inside = false;
        for (int i = 0, j = n - 1; i < n; j = i++)
        {
            float ax = poly[2 * j], ay = poly[2 * j + 1], bx = poly[2 * i], by = poly[2 * i + 1];
            float ex = bx - ax, ey = by - ay, wx = u - ax, wy = v - ay;
            float t = Math.Clamp((wx * ex + wy * ey) / (ex * ex + ey * ey), 0f, 1f);
            float qx = wx - ex * t, qy = wy - ey * t;
            best = MathF.Min(best, qx * qx + qy * qy);
            // Even-odd crossing test on a horizontal ray to the right.
            if ((ay > v) != (by > v) && u < ax + (v - ay) * ex / ey) inside = !inside;
        }
        float d = MathF.Sqrt(best);
        return inside ? -d : d;
    }

    /// <summary>Vertices (x, y pairs) of a polygon with <paramref name="count"/> corners alternating between two radii, first one pointing up.</summary>
    private static float[] RegularPolygon(int count, float outer, float inner, float phase = 0f)
    {
        var v = new float[2 * count];
        for (int k = 0; k < count; k++)
        {
            float angle = -MathF.PI / 2 + phase + 2 * MathF.PI * k / count;
            float radius = k % 2 == 0 ? outer : inner;
            v[2 * k] = radius * MathF.Cos(angle);
            v[2 * k + 1] = radius * MathF.Sin(angle);
        }
        return v;
    }
}

/// <summary>How shapes are drawn: the world of the built-in model, or a changed one for a derived model (issue 20).</summary>
public enum ShapeStyle
{
    /// <summary>Flat fill, anti-aliased edge (models v1-v4).</summary>
    Flat,

    /// <summary>A dark outline <see cref="ShapeRasterizer.OutlineWidth"/> px wide inside the edge (light on the black background).</summary>
    Outlined,
}
