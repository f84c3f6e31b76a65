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

    private static string Compose(string? filePath, string? key, string detail)
    {
        var where = filePath is null ? "" : $"'{filePath}'";
        if (key is not null) where = where.Length == 0 ? $"key '{key}'" : $"{where}, key '{key}'";
        return where.Length == 0 ? detail : $"{where}: {detail}";
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
