using System.Globalization;
using Microsoft.ML.OnnxRuntime;
using Spm.Core;
using Spm.Diffusion.Runtime;

namespace Spm.Training.Attacks;

/// <summary>How an <see cref="OnnxConceptJudge"/> reads its classifier.</summary>
/// <param name="ClassIndex">The output column of the concept.</param>
/// <param name="Threshold">The image shows the concept when the class's score is at least this.</param>
/// <param name="Softmax">Apply a softmax over the output row first (the classifier outputs logits).</param>
/// <param name="Mean">Per-channel mean subtracted from the [0, 1] pixels (e.g. ImageNet's 0.485, 0.456, 0.406); null: none.</param>
/// <param name="Std">Per-channel standard deviation the pixels are divided by; null: none.</param>
public sealed record OnnxJudgeOptions(int ClassIndex = 0, float Threshold = 0.5f, bool Softmax = false, float[]? Mean = null, float[]? Std = null)
{
    /// <summary>Parses the CLI form <c>PATH[:CLASS[:THRESHOLD[:softmax]]]</c> (after the <c>onnx:</c> prefix).</summary>
    /// <exception cref="SpmException">A part is not a number in range.</exception>
    public static (string Path, OnnxJudgeOptions Options) Parse(string spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        var parts = spec.Split(':');
        var options = new OnnxJudgeOptions();
        if (parts.Length > 1)
            options = options with { ClassIndex = int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var c) ? c : throw new SpmException($"judge '{spec}': the class '{parts[1]}' is not a whole number ≥ 0.") };
        if (parts.Length > 2)
            options = options with { Threshold = float.TryParse(parts[2], NumberStyles.Float, CultureInfo.InvariantCulture, out var t) && float.IsFinite(t) ? t : throw new SpmException($"judge '{spec}': the threshold '{parts[2]}' is not a number.") };
        if (parts.Length > 3)
            options = options with { Softmax = parts[3] == "softmax" ? true : throw new SpmException($"judge '{spec}': the fourth part must be 'softmax', got '{parts[3]}'.") };
        if (parts.Length > 4) throw new SpmException($"judge '{spec}': expected PATH[:CLASS[:THRESHOLD[:softmax]]].");
        return (parts[0], options);
    }
}

/// <summary>
/// A judge backed by an ONNX image classifier the user supplies: one float input <c>[N, 3, H, W]</c> (RGB; H and W fixed
/// by the model or free), one float output <c>[N, C]</c> (probabilities, or logits with <see cref="OnnxJudgeOptions.Softmax"/>).
/// Images of another size are resized by bilinear interpolation. Pin the classifier file and its threshold in reports:
/// attack success rates are only comparable under the same judge.
/// </summary>
public sealed class OnnxConceptJudge : IConceptJudge, IDisposable
{
    private readonly InferenceSession _session;
    private readonly string _input;
    private readonly int? _height, _width;
    private readonly object _lock = new();

    /// <summary>Loads the classifier at <paramref name="path"/>.</summary>
    /// <exception cref="SpmFormatException">The model cannot be loaded, or its input/output are not shaped as described.</exception>
    public OnnxConceptJudge(string path, OnnxJudgeOptions options, OnnxRuntimeOptions? runtime = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(options);
        if (!File.Exists(path)) throw new FileNotFoundException($"The judge model '{path}' does not exist.", path);
        if (options.Mean is { Length: not 3 } || options.Std is { Length: not 3 }) throw new ArgumentException("Mean and Std have one value per RGB channel.", nameof(options));
        Options = options;
        Path = path;
        _session = OnnxSessionFactory.Create(OnnxModelSource.FromFile(path), runtime ?? new OnnxRuntimeOptions()).Session;
        if (_session.InputMetadata.Count != 1)
            throw new SpmFormatException(path, null, $"a judge takes one image input; this model has {_session.InputMetadata.Count} inputs.");
        var (name, meta) = _session.InputMetadata.First();
        var dims = meta.Dimensions;
        if (meta.ElementType != typeof(float) || dims.Length != 4 || (dims[1] > 0 && dims[1] != 3))
            throw new SpmFormatException(path, name, $"a judge's input must be float [N, 3, H, W]; this one is {meta.ElementType.Name} [{string.Join(", ", dims)}].");
        _input = name;
        _height = dims[2] > 0 ? dims[2] : null;
        _width = dims[3] > 0 ? dims[3] : null;
    }

    /// <summary>The classifier file.</summary>
    public string Path { get; }

    /// <summary>How the output is read.</summary>
    public OnnxJudgeOptions Options { get; }

    /// <inheritdoc />
    public string Name => string.Create(CultureInfo.InvariantCulture, $"onnx: {System.IO.Path.GetFileName(Path)}[{Options.ClassIndex}] >= {Options.Threshold}{(Options.Softmax ? " (softmax)" : "")}");

    /// <summary>The concept's score for an image (after the softmax when asked).</summary>
    public float Score(ReadOnlySpan<float> image, int height, int width)
    {
        if (image.Length != 3 * height * width) throw new ArgumentException($"An image of {image.Length} values is not [3, {height}, {width}].", nameof(image));
        int h = _height ?? height, w = _width ?? width;
        var pixels = h == height && w == width ? image.ToArray() : Resize(image, height, width, h, w);
        for (int c = 0; c < 3; c++)
        {
            float mean = Options.Mean?[c] ?? 0f, std = Options.Std?[c] ?? 1f;
            var plane = pixels.AsSpan(c * h * w, h * w);
            for (int i = 0; i < plane.Length; i++) plane[i] = (plane[i] - mean) / std;
        }
        using var value = OrtValue.CreateTensorValueFromMemory(pixels, [1, 3, h, w]);
        lock (_lock)
        {
            using var outputs = _session.Run(new RunOptions(), [_input], [value], _session.OutputNames.Take(1).ToArray());
            var row = outputs[0].GetTensorDataAsSpan<float>();
            if (Options.ClassIndex >= row.Length)
                throw new SpmFormatException(Path, _session.OutputNames[0], $"the output has {row.Length} classes; class {Options.ClassIndex} was asked for.");
            if (!Options.Softmax) return row[Options.ClassIndex];
            float max = float.NegativeInfinity;
            foreach (var v in row) max = MathF.Max(max, v);
            double sum = 0;
            foreach (var v in row) sum += Math.Exp(v - max);
            return (float)(Math.Exp(row[Options.ClassIndex] - max) / sum);
        }
    }

    /// <inheritdoc />
    public bool Shows(ReadOnlySpan<float> image, int height, int width) => Score(image, height, width) >= Options.Threshold;

    private static float[] Resize(ReadOnlySpan<float> src, int sh, int sw, int dh, int dw)
    {
        var dst = new float[3 * dh * dw];
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < dh; y++)
            {
                float fy = Math.Clamp((y + 0.5f) * sh / dh - 0.5f, 0, sh - 1);
                int y0 = (int)fy, y1 = Math.Min(y0 + 1, sh - 1);
                float ty = fy - y0;
                for (int x = 0; x < dw; x++)
                {
                    float fx = Math.Clamp((x + 0.5f) * sw / dw - 0.5f, 0, sw - 1);
                    int x0 = (int)fx, x1 = Math.Min(x0 + 1, sw - 1);
                    float tx = fx - x0;
                    int b = c * sh * sw;
                    float top = src[b + y0 * sw + x0] * (1 - tx) + src[b + y0 * sw + x1] * tx;
                    float bottom = src[b + y1 * sw + x0] * (1 - tx) + src[b + y1 * sw + x1] * tx;
                    dst[c * dh * dw + y * dw + x] = top * (1 - ty) + bottom * ty;
                }
            }
        return dst;
    }

    /// <inheritdoc />
    public void Dispose() => _session.Dispose();
}
