using Spm.Core;
using Spm.Training.Evaluation;

namespace Spm.Shapes.World;

/// <summary>
/// Tuning constants of <see cref="ShapeEvaluator"/>; the defaults were set on rendered scenes with and without
/// noise and blur (see docs/tiny-shapes.md for the accuracy curve).
/// </summary>
/// <param name="MinForegroundDistance">Least RGB distance from the background colour for a pixel to count as object.</param>
/// <param name="NoiseThresholdFactor">The object threshold is raised to this many times the background's noise level.</param>
/// <param name="MinObjectPixels">Objects smaller than this are "nothing found".</param>
/// <param name="CircleThreshold">A radius profile whose strongest 3/4/5-fold harmonic is below this is a circle.</param>
/// <param name="PlainContrast">Inside colour deviation (beyond noise) below this is a plain fill.</param>
/// <param name="StripeCoherence">Structure-tensor coherence above this is stripes, below is dots.</param>
/// <param name="ExtraClearance">Pixels the inside read for colour and pattern keeps clear of the edge beyond the edge's
/// measured width: 0 for the flat world; an outlined world's outline would otherwise read as a pattern.</param>
public sealed record ShapeEvaluatorOptions(
    float MinForegroundDistance = 0.2f,
    float NoiseThresholdFactor = 3f,
    int MinObjectPixels = 30,
    float CircleThreshold = 0.06f,
    float PlainContrast = 0.045f,
    float StripeCoherence = 0.5f,
    int ExtraClearance = 0)
{
    /// <summary>The tuned defaults.</summary>
    public static ShapeEvaluatorOptions Default { get; } = new();

    /// <summary>The defaults for pictures drawn in <paramref name="style"/>.</summary>
    public static ShapeEvaluatorOptions For(ShapeStyle style) => style switch
    {
        // The outline's width and no more: one pixel further left a triangle's or a star's inside on 12-px dots (the v4m
        // world) too small to tell dots from stripes (dotted read 96.1 % on clean renders, 98.6 % with this clearance).
        ShapeStyle.Outlined => Default with { ExtraClearance = (int)MathF.Ceiling(ShapeRasterizer.OutlineWidth) },
        _ => Default,
    };
}

/// <summary>
/// Names the shape, colour, fill pattern and background of a tiny-shapes picture by hand-written geometry:
/// <list type="number">
/// <item>background = per-channel median of the 2-pixel border, snapped to the nearest palette background;</item>
/// <item>object = largest 4-connected set of pixels far enough from the background colour, holes filled;</item>
/// <item>shape = the 3/4/5-fold harmonics of the outline's radius as a function of angle around the centroid
///   (rotation-invariant magnitudes; a triangle has only multiples of 3, a square of 4, a star of 5, a circle none),
///   with the outline found at sub-pixel precision on the anti-aliased edge;</item>
/// <item>colour = angle of the mean opponent-colour vector of the inside (shades and tints keep the hue);</item>
/// <item>pattern = colour variance inside beyond the background's noise (plain or not), then the coherence of
///   the global structure tensor of the inside (stripes have one gradient direction, dots all).</item>
/// </list>
/// Thread-safe; works on planar RGB float images in [0, 1] of any size from 16x16.
/// </summary>
public sealed class ShapeEvaluator
{
    private const int Angles = 64;
    private static readonly float[] PaletteHues = ShapeVocabulary.Colors.Select(c => HueOf(ShapeVocabulary.ToRgb(c))).ToArray();

    /// <summary>Creates an evaluator with <paramref name="options"/> (default: the tuned constants).</summary>
    public ShapeEvaluator(ShapeEvaluatorOptions? options = null) => Options = options ?? ShapeEvaluatorOptions.Default;

    /// <summary>The tuning constants.</summary>
    public ShapeEvaluatorOptions Options { get; }

    /// <summary>Judges a square image of side <paramref name="size"/>.</summary>
    public ShapeJudgement Evaluate(ReadOnlySpan<float> image, int size = 64) => Evaluate(image, size, size);

    /// <summary>Judges a picture file (PNG or any format ImageSharp reads; RGB, 16..4096 pixels per side).</summary>
    /// <exception cref="SpmException">The file is missing.</exception>
    /// <exception cref="SpmFormatException">The file is not a readable image, or its size is out of range.</exception>
    public ShapeJudgement EvaluateFile(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path)) throw new SpmException($"'{path}': no such file.");
        float[] image;
        int h, w;
        try
        {
            (image, h, w) = ImageGrid.LoadRgb(path);
        }
        catch (Exception e) when (e is SixLabors.ImageSharp.ImageFormatException or SixLabors.ImageSharp.UnknownImageFormatException or InvalidDataException)
        {
            throw new SpmFormatException(path, null, "not a readable image: " + e.Message, e);
        }
        if (h < 16 || w < 16 || h > 4096 || w > 4096) throw new SpmFormatException(path, null, $"image is {w}x{h}; the evaluator needs 16..4096 pixels per side.");
        return Evaluate(image, h, w);
    }

    /// <summary>Judges a planar RGB image of <paramref name="height"/> x <paramref name="width"/>.</summary>
    /// <exception cref="ArgumentException">The image is smaller than 16x16 or its length does not match.</exception>
    public ShapeJudgement Evaluate(ReadOnlySpan<float> image, int height, int width)
    {
        if (height < 16 || width < 16 || height > 4096 || width > 4096)
            throw new ArgumentException($"Image {height}x{width} is outside 16..4096 pixels per side.");
        int n = height * width;
        if (image.Length != 3 * n) throw new ArgumentException($"Expected 3 x {height} x {width} = {3 * n} values, got {image.Length}.");
        var r = image[..n];
        var g = image.Slice(n, n);
        var b = image.Slice(2 * n, n);

        // 1. Background colour and noise level from the border frame of the raw image.
        var (bg, noiseVariance) = BorderStatistics(r, g, b, height, width);
        var background = ClassifyBackground(bg);

        // 2. Object mask, on a 3x3 box-smoothed copy: noise drops threefold, edges move by under a pixel.
        var smooth = BoxSmooth3(image, height, width);
        var sr = smooth.AsSpan(0, n);
        var sg = smooth.AsSpan(n, n);
        var sb = smooth.AsSpan(2 * n, n);
        float smoothNoiseSigma = MathF.Sqrt(noiseVariance / 9f);
        float threshold = MathF.Max(Options.MinForegroundDistance, Options.NoiseThresholdFactor * smoothNoiseSigma);
        var distance = new float[n];
        var mask = new bool[n];
        for (int i = 0; i < n; i++)
        {
            float dr = sr[i] - bg.R, dg = sg[i] - bg.G, db = sb[i] - bg.B;
            distance[i] = MathF.Sqrt(dr * dr + dg * dg + db * db);
            mask[i] = distance[i] > threshold;
        }
        int area = KeepLargestComponent(mask, height, width);
        if (area < Options.MinObjectPixels) return NothingFound(background, area / (float)n);
        area += FillHoles(mask, height, width);
        var depth = Depth(mask, height, width);
        var inner = new bool[n];
        int innerCount = 0;
        for (int i = 0; i < n; i++) if (depth[i] >= 2) { inner[i] = true; innerCount++; }
        if (innerCount < 4) return NothingFound(background, area / (float)n);

        // 3. Shape from the radius profile of the soft outline.
        var (h3, h4, h5, edgeWidth) = OutlineHarmonics(mask, inner, depth, distance, height, width);
        var shape = ClassifyShape(h3, h4, h5);

        // The inside used for colour and pattern stays clear of the edge by the edge's measured width, so that
        // a blurred rim (a mix with the background) is not mistaken for a pattern or tint the colour.
        int clearance = 2 + (int)MathF.Round(edgeWidth) + Options.ExtraClearance;
        bool[] region;
        int regionCount;
        do
        {
            region = new bool[n];
            regionCount = 0;
            for (int i = 0; i < n; i++) if (depth[i] >= clearance) { region[i] = true; regionCount++; }
        }
        while (regionCount < 12 && --clearance >= 2);
        if (regionCount == 0) (region, regionCount) = (inner, innerCount);

        // 4. Colour from the mean opponent-colour vector of the inside.
        double sa = 0, sbv = 0;
        for (int i = 0; i < n; i++)
        {
            if (!region[i]) continue;
            var (oa, ob) = Opponent(r[i], g[i], b[i]);
            sa += oa;
            sbv += ob;
        }
        float hue = (float)(Math.Atan2(sbv, sa) * 180 / Math.PI);
        float chroma = (float)(Math.Sqrt(sa * sa + sbv * sbv) / regionCount);
        var color = ClassifyColor(hue, chroma);

        // 5. Pattern from the inside's colour variation and its orientation structure (smoothed image).
        var (contrast, coherence) = PatternFeatures(sr, sg, sb, region, mask, height, width);
        var pattern = ClassifyPattern(contrast, coherence);

        var features = new ShapeFeatures(h3, h4, h5, hue, chroma, contrast, coherence, area / (float)n);
        return new ShapeJudgement(true, shape, color, pattern, background, features);
    }

    /// <summary>3x3 box mean of each plane (edge pixels average the neighbours that exist).</summary>
    private static float[] BoxSmooth3(ReadOnlySpan<float> image, int h, int w)
    {
        int n = h * w;
        var result = new float[3 * n];
        for (int c = 0; c < 3; c++)
        {
            var src = image.Slice(c * n, n);
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++)
                {
                    float sum = 0;
                    int count = 0;
                    for (int yy = Math.Max(0, y - 1); yy <= Math.Min(h - 1, y + 1); yy++)
                        for (int xx = Math.Max(0, x - 1); xx <= Math.Min(w - 1, x + 1); xx++)
                        {
                            sum += src[yy * w + xx];
                            count++;
                        }
                    result[c * n + y * w + x] = sum / count;
                }
        }
        return result;
    }

    /// <summary>Chessboard distance to the nearest non-object pixel (1 on the object's rim, 0 outside) by breadth-first search.</summary>
    private static int[] Depth(bool[] mask, int h, int w)
    {
        int n = mask.Length;
        var depth = new int[n];
        var queue = new Queue<int>();
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                int p = y * w + x;
                if (!mask[p]) continue;
                bool rim = x == 0 || y == 0 || x == w - 1 || y == h - 1;
                for (int dy = -1; dy <= 1 && !rim; dy++)
                    for (int dx = -1; dx <= 1 && !rim; dx++)
                        if (!mask[p + dy * w + dx]) rim = true;
                if (rim)
                {
                    depth[p] = 1;
                    queue.Enqueue(p);
                }
            }
        while (queue.Count > 0)
        {
            int p = queue.Dequeue();
            int x = p % w, y = p / w;
            for (int dy = -1; dy <= 1; dy++)
                for (int dx = -1; dx <= 1; dx++)
                {
                    int xx = x + dx, yy = y + dy;
                    if (xx < 0 || yy < 0 || xx >= w || yy >= h) continue;
                    int q = yy * w + xx;
                    if (mask[q] && depth[q] == 0)
                    {
                        depth[q] = depth[p] + 1;
                        queue.Enqueue(q);
                    }
                }
        }
        return depth;
    }

    private static ShapeJudgement NothingFound(AttributeGuess<ShapeBackground> background, float fraction) =>
        new(false, default, default, default, background, new ShapeFeatures(0, 0, 0, 0, 0, 0, 0, fraction));

    private static (Rgb Color, float NoiseVariance) BorderStatistics(ReadOnlySpan<float> r, ReadOnlySpan<float> g, ReadOnlySpan<float> b, int h, int w)
    {
        const int frame = 2;
        var indices = new List<int>(2 * frame * (h + w));
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                if (y < frame || y >= h - frame || x < frame || x >= w - frame) indices.Add(y * w + x);
        float mr = Median(r, indices), mg = Median(g, indices), mb = Median(b, indices);
        // Robust per-channel noise: 1.4826 x median absolute deviation, summed as variances.
        float var = 0;
        foreach (var (plane, m) in new[] { (0, mr), (1, mg), (2, mb) })
        {
            var span = plane == 0 ? r : plane == 1 ? g : b;
            var dev = new float[indices.Count];
            for (int k = 0; k < dev.Length; k++) dev[k] = MathF.Abs(span[indices[k]] - m);
            Array.Sort(dev);
            float sigma = 1.4826f * dev[dev.Length / 2];
            var += sigma * sigma;
        }
        return (new Rgb(mr, mg, mb), var);
    }

    private static float Median(ReadOnlySpan<float> plane, List<int> indices)
    {
        var values = new float[indices.Count];
        for (int k = 0; k < values.Length; k++) values[k] = plane[indices[k]];
        Array.Sort(values);
        return values[values.Length / 2];
    }

    private static AttributeGuess<ShapeBackground> ClassifyBackground(Rgb bg)
    {
        // Soft nearest neighbour: weights exp(-d^2 / 2 s^2) with s = 0.1 in RGB.
        var best = ShapeBackground.White;
        double bestW = -1, total = 0;
        foreach (var candidate in ShapeVocabulary.Backgrounds)
        {
            float d = bg.DistanceTo(ShapeVocabulary.ToRgb(candidate));
            double wgt = Math.Exp(-d * d / (2 * 0.1 * 0.1));
            total += wgt;
            if (wgt > bestW) { bestW = wgt; best = candidate; }
        }
        return new AttributeGuess<ShapeBackground>(best, total > 0 ? (float)(bestW / total) : 0f);
    }

    /// <summary>Keeps only the largest 4-connected true region; returns its size.</summary>
    private static int KeepLargestComponent(bool[] mask, int h, int w)
    {
        int n = mask.Length;
        var label = new int[n];
        var stack = new Stack<int>();
        int bestLabel = 0, bestSize = 0, next = 0;
        for (int start = 0; start < n; start++)
        {
            if (!mask[start] || label[start] != 0) continue;
            next++;
            int size = 0;
            label[start] = next;
            stack.Push(start);
            while (stack.Count > 0)
            {
                int p = stack.Pop();
                size++;
                int x = p % w, y = p / w;
                if (x > 0) Visit(p - 1);
                if (x < w - 1) Visit(p + 1);
                if (y > 0) Visit(p - w);
                if (y < h - 1) Visit(p + w);
            }
            if (size > bestSize) { bestSize = size; bestLabel = next; }
        }
        for (int i = 0; i < n; i++) mask[i] = bestLabel != 0 && label[i] == bestLabel;
        return bestSize;

        void Visit(int q)
        {
            if (mask[q] && label[q] == 0)
            {
                label[q] = next;
                stack.Push(q);
            }
        }
    }

    /// <summary>Marks as object every non-object pixel not 4-connected to the border; returns how many were filled.</summary>
    private static int FillHoles(bool[] mask, int h, int w)
    {
        int n = mask.Length;
        var outside = new bool[n];
        var stack = new Stack<int>();
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                if ((y == 0 || y == h - 1 || x == 0 || x == w - 1) && !mask[y * w + x])
                {
                    outside[y * w + x] = true;
                    stack.Push(y * w + x);
                }
        while (stack.Count > 0)
        {
            int p = stack.Pop();
            int x = p % w, y = p / w;
            if (x > 0) Visit(p - 1);
            if (x < w - 1) Visit(p + 1);
            if (y > 0) Visit(p - w);
            if (y < h - 1) Visit(p + w);
        }
        int filled = 0;
        for (int i = 0; i < n; i++)
            if (!mask[i] && !outside[i]) { mask[i] = true; filled++; }
        return filled;

        void Visit(int q)
        {
            if (!mask[q] && !outside[q])
            {
                outside[q] = true;
                stack.Push(q);
            }
        }
    }

    private static (float H3, float H4, float H5, float EdgeWidth) OutlineHarmonics(bool[] mask, bool[] inner, int[] depth, float[] distance, int h, int w)
    {
        int n = mask.Length;
        // Reference object distance: the median over the inside, so an edge pixel's distance / reference is
        // close to its coverage (colour mixes linearly with the background on the anti-aliased edge).
        var insideDistances = new List<float>();
        for (int i = 0; i < n; i++) if (inner[i]) insideDistances.Add(distance[i]);
        insideDistances.Sort();
        float reference = MathF.Max(1e-3f, insideDistances[insideDistances.Count / 2]);
        var alpha = new float[n];
        double sx = 0, sy = 0, sw = 0;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                int p = y * w + x;
                float a;
                if (inner[p]) a = 1f;
                else if (NearMask(mask, p, x, y, h, w)) a = Math.Clamp(distance[p] / reference, 0f, 1f);
                else a = 0f;
                alpha[p] = a;
                sx += a * (x + 0.5);
                sy += a * (y + 0.5);
                sw += a;
            }
        float cx = (float)(sx / sw), cy = (float)(sy / sw);

        // Edge width: pixels in mid-transition per rim pixel (about 1 for a sharp anti-aliased edge).
        int transition = 0, rim = 0;
        for (int p = 0; p < n; p++)
        {
            if (depth[p] == 1) rim++;
            float ratio = distance[p] / reference;
            if (ratio > 0.15f && ratio < 0.85f && (depth[p] is > 0 and <= 6 || (!mask[p] && alpha[p] > 0f))) transition++;
        }
        float edgeWidth = rim > 0 ? transition / (float)rim : 0f;

        var radius = new double[Angles];
        float maxR = MathF.Max(h, w);
        for (int k = 0; k < Angles; k++)
        {
            double theta = 2 * Math.PI * k / Angles;
            float dx = (float)Math.Cos(theta), dy = (float)Math.Sin(theta);
            float prevT = 0f, prevA = 1f, hit = 0f;
            for (float t = 0.25f; t < maxR; t += 0.25f)
            {
                float a = Bilinear(alpha, cx + dx * t, cy + dy * t, h, w);
                if (a < 0.5f)
                {
                    hit = prevA > a ? prevT + (t - prevT) * (prevA - 0.5f) / (prevA - a) : t;
                    break;
                }
                prevT = t;
                prevA = a;
            }
            radius[k] = hit > 0 ? hit : prevT;
        }
        double mean = 0;
        for (int k = 0; k < Angles; k++) mean += radius[k];
        mean /= Angles;
        if (mean <= 0) return (0, 0, 0, edgeWidth);
        return (Harmonic(radius, 3, mean) + Harmonic(radius, 6, mean),
                Harmonic(radius, 4, mean) + Harmonic(radius, 8, mean),
                Harmonic(radius, 5, mean) + Harmonic(radius, 10, mean),
                edgeWidth);
    }

    /// <summary>Amplitude of the <paramref name="order"/>-fold Fourier component of a closed profile, relative to its mean.</summary>
    private static float Harmonic(double[] profile, int order, double mean)
    {
        double re = 0, im = 0;
        for (int k = 0; k < profile.Length; k++)
        {
            double phase = 2 * Math.PI * order * k / profile.Length;
            re += profile[k] * Math.Cos(phase);
            im -= profile[k] * Math.Sin(phase);
        }
        return (float)(2 * Math.Sqrt(re * re + im * im) / profile.Length / mean);
    }

    private static bool NearMask(bool[] mask, int p, int x, int y, int h, int w) =>
        mask[p] || (x > 0 && mask[p - 1]) || (x < w - 1 && mask[p + 1]) || (y > 0 && mask[p - w]) || (y < h - 1 && mask[p + w]);

    /// <summary>Bilinear sample at continuous coordinates (pixel centres at +0.5); 0 outside the image.</summary>
    private static float Bilinear(float[] plane, float x, float y, int h, int w)
    {
        float fx = x - 0.5f, fy = y - 0.5f;
        int x0 = (int)MathF.Floor(fx), y0 = (int)MathF.Floor(fy);
        float tx = fx - x0, ty = fy - y0;
        float At(int xi, int yi) => xi < 0 || yi < 0 || xi >= w || yi >= h ? 0f : plane[yi * w + xi];
        float top = At(x0, y0) + (At(x0 + 1, y0) - At(x0, y0)) * tx;
        float bottom = At(x0, y0 + 1) + (At(x0 + 1, y0 + 1) - At(x0, y0 + 1)) * tx;
        return top + (bottom - top) * ty;
    }

    private AttributeGuess<ShapeKind> ClassifyShape(float h3, float h4, float h5)
    {
        float best = MathF.Max(h3, MathF.Max(h4, h5));
        // Probability of "circle" falls off smoothly around the threshold; the rest is shared by the
        // polygons in proportion to the square of their harmonic strength.
        float pCircle = Logistic((Options.CircleThreshold - best) / (0.2f * Options.CircleThreshold));
        float total = h3 * h3 + h4 * h4 + h5 * h5 + 1e-12f;
        var (kind, share) = h3 >= h4 && h3 >= h5 ? (ShapeKind.Triangle, h3 * h3 / total)
            : h4 >= h5 ? (ShapeKind.Square, h4 * h4 / total)
            : (ShapeKind.Star, h5 * h5 / total);
        float pPolygon = (1 - pCircle) * share;
        return pCircle >= pPolygon ? new(ShapeKind.Circle, pCircle) : new(kind, pPolygon);
    }

    private static AttributeGuess<ShapeColor> ClassifyColor(float hue, float chroma)
    {
        // Soft nearest hue (s = 8 degrees), scaled down when the object is nearly gray.
        double total = 0, bestW = -1;
        var best = ShapeColor.Red;
        for (int i = 0; i < PaletteHues.Length; i++)
        {
            float d = MathF.Abs(hue - PaletteHues[i]) % 360f;
            if (d > 180f) d = 360f - d;
            double wgt = Math.Exp(-d * d / (2 * 8.0 * 8.0));
            total += wgt;
            if (wgt > bestW) { bestW = wgt; best = ShapeVocabulary.Colors[i]; }
        }
        float chromaFactor = Math.Clamp(chroma / 0.15f, 0f, 1f);
        return new AttributeGuess<ShapeColor>(best, total > 0 ? (float)(bestW / total) * chromaFactor : 0f);
    }

    private AttributeGuess<FillPattern> ClassifyPattern(float contrast, float coherence)
    {
        float pPatterned = Logistic((contrast - Options.PlainContrast) / 0.006f);
        float pStripes = Logistic((coherence - Options.StripeCoherence) / 0.08f);
        float striped = pPatterned * pStripes, dotted = pPatterned * (1 - pStripes), plain = 1 - pPatterned;
        if (plain >= striped && plain >= dotted) return new(FillPattern.Plain, plain);
        return striped >= dotted ? new(FillPattern.Striped, striped) : new(FillPattern.Dotted, dotted);
    }

    private static (float Contrast, float Coherence) PatternFeatures(
        ReadOnlySpan<float> r, ReadOnlySpan<float> g, ReadOnlySpan<float> b, bool[] region, bool[] mask, int h, int w)
    {
        int n = region.Length;
        // Mean and covariance of the inside colours.
        double mr = 0, mg = 0, mb = 0;
        int count = 0;
        for (int i = 0; i < n; i++)
        {
            if (!region[i]) continue;
            mr += r[i]; mg += g[i]; mb += b[i];
            count++;
        }
        mr /= count; mg /= count; mb /= count;
        var cov = new double[9];
        for (int i = 0; i < n; i++)
        {
            if (!region[i]) continue;
            double dr = r[i] - mr, dg = g[i] - mg, db = b[i] - mb;
            cov[0] += dr * dr; cov[1] += dr * dg; cov[2] += dr * db;
            cov[4] += dg * dg; cov[5] += dg * db; cov[8] += db * db;
        }
        cov[3] = cov[1]; cov[6] = cov[2]; cov[7] = cov[5];
        for (int k = 0; k < 9; k++) cov[k] /= count;

        // A two-colour pattern varies along one colour axis (fill to shade); noise spreads over all three.
        // The excess of the largest eigenvalue over the second is the pattern's variance without the noise.
        var (lambda1, axis) = TopEigen(cov);
        var deflated = new double[9];
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++) deflated[3 * i + j] = cov[3 * i + j] - lambda1 * axis[i] * axis[j];
        var (lambda2, _) = TopEigen(deflated);
        float contrast = (float)Math.Sqrt(Math.Max(0, lambda1 - Math.Max(0, lambda2)));

        // Global structure tensor of the shade signal (projection on that axis), central differences.
        var shade = new float[n];
        for (int i = 0; i < n; i++)
            if (mask[i]) shade[i] = (float)((r[i] - mr) * axis[0] + (g[i] - mg) * axis[1] + (b[i] - mb) * axis[2]);
        double jxx = 0, jyy = 0, jxy = 0;
        for (int y = 1; y < h - 1; y++)
            for (int x = 1; x < w - 1; x++)
            {
                int p = y * w + x;
                if (!region[p]) continue;
                double gx = 0.5 * (shade[p + 1] - shade[p - 1]);
                double gy = 0.5 * (shade[p + w] - shade[p - w]);
                jxx += gx * gx; jyy += gy * gy; jxy += gx * gy;
            }
        double sum = jxx + jyy;
        float coherence = sum > 1e-12 ? (float)(Math.Sqrt((jxx - jyy) * (jxx - jyy) + 4 * jxy * jxy) / sum) : 0f;
        return (contrast, coherence);
    }

    /// <summary>Largest eigenvalue and its unit eigenvector of a symmetric positive semi-definite 3x3 matrix (power iteration).</summary>
    private static (double Value, double[] Vector) TopEigen(double[] m)
    {
        double[] v = [0.62, 0.57, 0.54];
        double value = 0;
        for (int it = 0; it < 50; it++)
        {
            double nx = m[0] * v[0] + m[1] * v[1] + m[2] * v[2];
            double ny = m[3] * v[0] + m[4] * v[1] + m[5] * v[2];
            double nz = m[6] * v[0] + m[7] * v[1] + m[8] * v[2];
            double norm = Math.Sqrt(nx * nx + ny * ny + nz * nz);
            if (norm < 1e-15) return (0, v);
            v = [nx / norm, ny / norm, nz / norm];
            value = norm;
        }
        return (value, v);
    }

    /// <summary>Opponent-colour chroma vector: a along red–cyan, b along yellow-green–blue (hue = atan2(b, a)).</summary>
    private static (float A, float B) Opponent(float r, float g, float b) => (r - 0.5f * (g + b), 0.8660254f * (g - b));

    private static float HueOf(Rgb c)
    {
        var (a, b) = Opponent(c.R, c.G, c.B);
        return MathF.Atan2(b, a) * 180f / MathF.PI;
    }

    private static float Logistic(float z) => 1f / (1f + MathF.Exp(-z));
}
