using System.Text.Json;

namespace Spm.Core.SafeTensors;

/// <summary>
/// Parses and validates a safetensors JSON header straight from its bytes (no copy of the header, no DOM), so that
/// every check runs before anything proportional to a declared size is allocated. System.Text.Json's DOM and
/// serializer silently accept duplicate keys; reading token by token lets us reject them.
/// </summary>
internal static class SafeTensorsHeader
{
    /// <summary>The JSON nesting the format needs: root object, tensor object, shape array. One spare level.</summary>
    internal const int MaxJsonDepth = 4;

    /// <summary>More dimensions than any real tensor has; bounds the per-tensor work.</summary>
    internal const int MaxRank = 32;

    internal const string MetadataKey = "__metadata__";

    /// <summary>
    /// Longest tensor name or metadata key accepted, in bytes. Real names are under 200 bytes; the cap keeps a hostile
    /// name from costing twice its size as a string (and again in every error message that quotes it).
    /// </summary>
    internal const int MaxKeyBytes = 1024;

    internal static (List<SafeTensorInfo> Tensors, Dictionary<string, int> Index, Dictionary<string, string> Metadata) Parse(
        ReadOnlySpan<byte> header, long bufferLength, string path)
    {
        var options = new JsonReaderOptions
        {
            MaxDepth = MaxJsonDepth,
            CommentHandling = JsonCommentHandling.Disallow,
            AllowTrailingCommas = false,
        };
        CheckLiterals(header, path);
        List<SafeTensorInfo> tensors;
        Dictionary<string, int> names; // name -> position in tensors
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        bool sawMetadata = false;
        string? current = null;
        try
        {
            // Sizing the collections exactly (one cheap, allocation-free pass) keeps the parse's allocation close to
            // what the entries need, which matters for headers made of thousands of tiny entries.
            int count = CountTopLevelEntries(header, options);
            tensors = new List<SafeTensorInfo>(count);
            names = new Dictionary<string, int>(count, StringComparer.Ordinal);
            var reader = new Utf8JsonReader(header, options);
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
                throw Fail(path, "header", "header is not a JSON object");
            while (true)
            {
                current = null;
                Next(ref reader, path);
                if (reader.TokenType == JsonTokenType.EndObject) break;
                var name = ReadKey(ref reader, path);
                current = name;
                if (name == MetadataKey)
                {
                    if (sawMetadata) throw Fail(path, MetadataKey, "duplicate key");
                    sawMetadata = true;
                    ReadMetadata(ref reader, metadata, path);
                    continue;
                }
                if (!names.TryAdd(name, tensors.Count)) throw Fail(path, name, "duplicate tensor key");
                tensors.Add(ReadTensor(ref reader, name, bufferLength, path));
            }
            current = null;
            // Only padding whitespace may follow the root object; the reader throws on anything else.
            if (reader.Read()) throw Fail(path, "header", "unexpected content after the header object");
        }
        catch (JsonException ex)
        {
            throw new SpmFormatException(path, current ?? "header",
                $"header is not valid JSON (line {ex.LineNumber}, byte {ex.BytePositionInLine}: {Clip(ex.Message)})", ex);
        }
        catch (InvalidOperationException ex)
        {
            // GetString on invalid UTF-8 or escaped lone surrogates.
            throw new SpmFormatException(path, current ?? "header", $"header holds an invalid string ({Clip(ex.Message)})", ex);
        }

        CheckLayout(tensors, bufferLength, path);
        return (tensors, names, metadata);
    }

    private static string ReadKey(ref Utf8JsonReader reader, string path)
    {
        if (reader.HasValueSequence || reader.ValueSpan.Length > MaxKeyBytes)
        {
            var raw = reader.ValueSpan;
            var start = System.Text.Encoding.UTF8.GetString(raw[..Math.Min(raw.Length, 60)]);
            throw Fail(path, start + "...", $"key is {raw.Length} bytes long (limit {MaxKeyBytes})");
        }
        return reader.GetString()!;
    }

    private static int CountTopLevelEntries(ReadOnlySpan<byte> header, JsonReaderOptions options)
    {
        var reader = new Utf8JsonReader(header, options);
        int count = 0;
        try
        {
            while (reader.Read())
                if (reader.TokenType == JsonTokenType.PropertyName && reader.CurrentDepth == 1) count++;
        }
        catch (JsonException)
        {
            // The main pass reports the error with the key it belongs to.
        }
        return count;
    }

    private static string Clip(string message) => message.Length <= 160 ? message : message[..160] + "...";

    /// <summary>
    /// Utf8JsonReader quotes the rest of the buffer in its message when a bare word is not <c>null</c>, <c>true</c>
    /// or <c>false</c>, which makes one bad byte cost an allocation the size of the header. Bare words are checked
    /// here first (outside strings, a token starting with a letter must be one of the three literals).
    /// </summary>
    private static void CheckLiterals(ReadOnlySpan<byte> header, string path)
    {
        bool inString = false;
        byte previous = (byte)' ';
        for (int i = 0; i < header.Length; i++)
        {
            byte b = header[i];
            if (inString)
            {
                if (b == (byte)'\\') i++;
                else if (b == (byte)'"') inString = false;
                previous = b;
                continue;
            }
            if (b == (byte)'"') inString = true;
            else if (IsLetter(b) && !IsLetter(previous) && !IsDigitLike(previous))
            {
                var rest = header[i..];
                int len = rest.StartsWith("null"u8) || rest.StartsWith("true"u8) ? 4 : rest.StartsWith("false"u8) ? 5 : 0;
                if (len == 0 || (rest.Length > len && IsLetter(rest[len])))
                    throw Fail(path, "header", $"header is not valid JSON (unexpected bare word at byte {i})");
                i += len - 1;
                b = rest[len - 1];
            }
            previous = b;
        }

        static bool IsLetter(byte c) => (uint)((c | 0x20) - 'a') <= 'z' - 'a';
        static bool IsDigitLike(byte c) => (uint)(c - '0') <= 9 || c is (byte)'.' or (byte)'-' or (byte)'+';
    }

    private static void Next(ref Utf8JsonReader reader, string path)
    {
        if (!reader.Read()) throw Fail(path, "header", "header ends early");
    }

    private static void ReadMetadata(ref Utf8JsonReader reader, Dictionary<string, string> metadata, string path)
    {
        Next(ref reader, path);
        if (reader.TokenType == JsonTokenType.Null) return;
        if (reader.TokenType != JsonTokenType.StartObject) throw Fail(path, MetadataKey, "must be an object of strings");
        while (true)
        {
            Next(ref reader, path);
            if (reader.TokenType == JsonTokenType.EndObject) return;
            var key = ReadKey(ref reader, path);
            Next(ref reader, path);
            if (reader.TokenType != JsonTokenType.String)
                throw Fail(path, $"{MetadataKey}.{key}", "metadata values must be strings");
            if (!metadata.TryAdd(key, reader.GetString()!)) throw Fail(path, $"{MetadataKey}.{key}", "duplicate metadata key");
        }
    }

    private static SafeTensorInfo ReadTensor(ref Utf8JsonReader reader, string name, long bufferLength, string path)
    {
        Next(ref reader, path);
        if (reader.TokenType != JsonTokenType.StartObject) throw Fail(path, name, "tensor entry must be an object");
        SafeTensorDType? dtype = null;
        long[]? shape = null;
        long begin = -1, end = -1;
        Span<long> dims = stackalloc long[MaxRank];
        while (true)
        {
            Next(ref reader, path);
            if (reader.TokenType == JsonTokenType.EndObject) break;
            if (reader.ValueTextEquals("dtype"u8))
            {
                if (dtype is not null) throw Fail(path, name, "duplicate field 'dtype'");
                Next(ref reader, path);
                if (reader.TokenType != JsonTokenType.String || reader.ValueIsEscaped
                    || !SafeTensorDTypes.TryParse(reader.ValueSpan, out var dt))
                    throw Fail(path, name, "unknown or malformed dtype");
                dtype = dt;
            }
            else if (reader.ValueTextEquals("shape"u8))
            {
                if (shape is not null) throw Fail(path, name, "duplicate field 'shape'");
                Next(ref reader, path);
                if (reader.TokenType != JsonTokenType.StartArray) throw Fail(path, name, "shape must be an array");
                int rank = 0;
                while (true)
                {
                    Next(ref reader, path);
                    if (reader.TokenType == JsonTokenType.EndArray) break;
                    if (rank == MaxRank) throw Fail(path, name, $"shape has more than {MaxRank} dimensions");
                    if (reader.TokenType != JsonTokenType.Number || !reader.TryGetInt64(out var d) || d < 0)
                        throw Fail(path, name, "shape dimensions must be non-negative integers");
                    dims[rank++] = d;
                }
                shape = dims[..rank].ToArray();
            }
            else if (reader.ValueTextEquals("data_offsets"u8))
            {
                if (begin >= 0) throw Fail(path, name, "duplicate field 'data_offsets'");
                Next(ref reader, path);
                if (reader.TokenType != JsonTokenType.StartArray) throw Fail(path, name, "data_offsets must be an array");
                begin = ReadOffset(ref reader, name, path);
                end = ReadOffset(ref reader, name, path);
                Next(ref reader, path);
                if (reader.TokenType != JsonTokenType.EndArray) throw Fail(path, name, "data_offsets must hold exactly two numbers");
            }
            else
            {
                // Unknown fields are tolerated (as the reference implementation does) but must still be valid JSON.
                reader.Skip();
            }
        }
        if (dtype is null) throw Fail(path, name, "missing field 'dtype'");
        if (shape is null) throw Fail(path, name, "missing field 'shape'");
        if (begin < 0) throw Fail(path, name, "missing field 'data_offsets'");
        if (end < begin) throw Fail(path, name, $"data_offsets [{begin},{end}] end before they begin");
        if (end > bufferLength) throw Fail(path, name, $"data_offsets [{begin},{end}] exceed the {bufferLength}-byte data buffer");

        long count = 1;
        foreach (var d in shape)
        {
            if (d != 0 && count > long.MaxValue / d) throw Fail(path, name, "shape's element count overflows");
            count *= d;
        }
        int size = SafeTensorDTypes.SizeOf(dtype.Value);
        if (count > long.MaxValue / size) throw Fail(path, name, "shape's byte size overflows");
        long bytes = count * size;
        if (end - begin != bytes)
            throw Fail(path, name, $"data_offsets [{begin},{end}] span {end - begin} bytes but {SafeTensorDTypes.HeaderName(dtype.Value)}[{string.Join(",", shape)}] needs {bytes}");
        return new SafeTensorInfo(name, dtype.Value, shape, begin, bytes, count);
    }

    private static long ReadOffset(ref Utf8JsonReader reader, string name, string path)
    {
        Next(ref reader, path);
        if (reader.TokenType != JsonTokenType.Number || !reader.TryGetInt64(out var v) || v < 0)
            throw Fail(path, name, "data_offsets must be two non-negative integers");
        return v;
    }

    /// <summary>Tensors must tile the buffer exactly: sorted by offset, each starts where the previous ended, the last ends at the buffer's end.</summary>
    private static void CheckLayout(List<SafeTensorInfo> tensors, long bufferLength, string path)
    {
        var order = new int[tensors.Count];
        for (int i = 0; i < order.Length; i++) order[i] = i;
        Array.Sort(order, (a, b) =>
        {
            int c = tensors[a].DataOffset.CompareTo(tensors[b].DataOffset);
            return c != 0 ? c : tensors[a].ByteLength.CompareTo(tensors[b].ByteLength);
        });
        long expected = 0;
        foreach (var i in order)
        {
            var t = tensors[i];
            if (t.DataOffset != expected)
                throw Fail(path, t.Name, t.DataOffset < expected
                    ? $"data at offset {t.DataOffset} overlaps the previous tensor (which ends at {expected})"
                    : $"gap in the data buffer: expected offset {expected}, found {t.DataOffset}");
            expected = t.DataOffset + t.ByteLength;
        }
        if (expected != bufferLength)
            throw Fail(path, "header", $"tensors cover {expected} bytes but the data buffer holds {bufferLength}");
    }

    private static SpmFormatException Fail(string path, string key, string detail) => new(path, key, detail);
}
