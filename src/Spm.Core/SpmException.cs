namespace Spm.Core;

/// <summary>Base class of every error the Spm libraries raise on purpose (bad files, mismatched models, bad options).</summary>
public class SpmException : Exception
{
    /// <summary>Creates an error with a message.</summary>
    public SpmException(string message) : base(message) { }

    /// <summary>Creates an error with a message and the error that caused it.</summary>
    public SpmException(string message, Exception? inner) : base(message, inner) { }
}

/// <summary>
/// A file (safetensors, SPM, ONNX, JSON config, ...) is malformed, truncated or hostile.
/// The message always names the file and, where one is involved, the key or field.
/// </summary>
public class SpmFormatException : SpmException
{
    /// <summary>Creates a format error for <paramref name="filePath"/>, optionally naming the offending key.</summary>
    public SpmFormatException(string? filePath, string? key, string detail, Exception? inner = null)
        : base(Compose(filePath, key, detail), inner)
    {
        FilePath = filePath;
        Key = key;
        Detail = detail;
    }

    /// <summary>The file that failed to parse, if known.</summary>
    public string? FilePath { get; }

    /// <summary>The tensor key, header field or graph element involved, if any.</summary>
    public string? Key { get; }

    /// <summary>What is wrong, without the file and key prefix.</summary>
    public string Detail { get; }

    /// <summary>Longest detail kept in the message: a hostile file must not be echoed back whole.</summary>
    internal const int MaxDetailChars = 400;

    /// <summary>Longest key kept in the message.</summary>
    internal const int MaxKeyChars = 1100;

    private static string Compose(string? filePath, string? key, string detail)
    {
        // Details often quote the file's own bytes (a bad value, a JSON parser's excerpt): keep the message one
        // short line whatever the file holds, so the CLI's one-line error stays one line.
        detail = OneLine(detail, MaxDetailChars);
        if (key is not null) key = OneLine(key, MaxKeyChars);
        var where = filePath is null ? "" : $"'{OneLine(filePath, int.MaxValue)}'";
        if (key is not null) where = where.Length == 0 ? $"key '{key}'" : $"{where}, key '{key}'";
        return where.Length == 0 ? detail : $"{where}: {detail}";
    }

    /// <summary>Control characters escaped, cut to <paramref name="max"/> characters (plus an ellipsis).</summary>
    internal static string OneLine(string text, int max)
    {
        bool clean = text.Length <= max;
        for (int i = 0; clean && i < text.Length; i++) clean = !char.IsControl(text[i]);
        if (clean) return text;
        var sb = new System.Text.StringBuilder(Math.Min(text.Length, max) + 8);
        foreach (char c in text)
        {
            if (sb.Length >= max) { sb.Append("..."); break; }
            if (c == '\n') sb.Append("\\n");
            else if (c == '\r') sb.Append("\\r");
            else if (c == '\t') sb.Append(' ');
            else if (char.IsControl(c)) sb.Append("\\u").Append(((int)c).ToString("x4", System.Globalization.CultureInfo.InvariantCulture));
            else sb.Append(c);
        }
        return sb.ToString();
    }
}

/// <summary>An adapter does not fit a model: missing layers, different shapes, wrong family (SD 1.x file on SD 2.x, ...).</summary>
public class SpmMismatchException : SpmException
{
    /// <summary>Creates a mismatch error.</summary>
    public SpmMismatchException(string message, string? layer = null) : base(message) => Layer = layer;

    /// <summary>The first layer (module path or key) that does not fit, if known.</summary>
    public string? Layer { get; }
}

/// <summary>
/// An input the caller named (a model folder, an SPM file, a latents file...) does not exist. Distinct from
/// <see cref="SpmFormatException"/>, which is for inputs that exist but are broken: tools report the two differently.
/// </summary>
public class SpmInputNotFoundException : SpmException
{
    /// <summary>
    /// Creates the error; <paramref name="what"/> says what the path should have been (e.g. "model folder"), and
    /// <paramref name="advice"/>, when given, what to do about it.
    /// </summary>
    public SpmInputNotFoundException(string inputPath, string what, string? advice = null)
        : base($"{what} '{SpmFormatException.OneLine(inputPath, int.MaxValue)}' not found{(advice is null ? "." : $": {advice}")}")
    {
        InputPath = inputPath;
    }

    /// <summary>The path that does not exist.</summary>
    public string InputPath { get; }
}
