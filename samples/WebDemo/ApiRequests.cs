using System.Text.Json;

namespace Spm.Samples.WebDemo;

/// <summary>
/// Which loaded SPMs a request switches on. In JSON either an array of booleans, one per loaded SPM in
/// <c>GET /api/info</c> order (<c>[false, true]</c>), or an array of SPM names (<c>["circle.safetensors"]</c>, or without
/// the extension, <c>["circle"]</c>): the named SPMs are on, the others off. An empty array switches every SPM off.
/// </summary>
/// <param name="Flags">The boolean form, or null.</param>
/// <param name="Names">The name form, or null.</param>
public sealed record SpmSelection(IReadOnlyList<bool>? Flags, IReadOnlyList<string>? Names);

/// <summary>Body of <c>POST /api/gates</c>.</summary>
/// <param name="Prompt">The prompt (required; at most <see cref="DemoEngine.MaxPromptLength"/> characters).</param>
/// <param name="Enabled">The SPMs switched on (required when SPMs are loaded).</param>
public sealed record GatesBody(string Prompt, SpmSelection? Enabled);

/// <summary>Body of <c>POST /api/generate</c>; omitted or null values take the page's defaults.</summary>
/// <param name="Prompt">The prompt (required; at most <see cref="DemoEngine.MaxPromptLength"/> characters).</param>
/// <param name="Enabled">The SPMs switched on (required when SPMs are loaded).</param>
/// <param name="Seed">Noise seed, 0..2^64-1 (default 1).</param>
/// <param name="Steps">Denoising steps, 1..<see cref="WebDemoOptions.MaxSteps"/> (default: the server's <c>--steps</c>).</param>
/// <param name="Size">Image side, 1..<see cref="WebDemoOptions.MaxSize"/> and a size the model can draw (default: <c>--size</c> or the model's).</param>
/// <param name="NegativePrompt">Negative prompt (default empty).</param>
/// <param name="Guidance">Guidance scale, a finite number (default: the model's spm_generate_defaults.json, else 7.5).</param>
public sealed record GenerateBody(string Prompt, SpmSelection? Enabled, ulong? Seed, int? Steps, int? Size, string? NegativePrompt, double? Guidance);

/// <summary>
/// A request body the API refuses: each entry names a field of the body (camelCase, as sent; <c>body</c> for the body
/// as a whole) and what is wrong with it. The API answers it as an RFC 9457 validation problem.
/// </summary>
public sealed class ApiRequestException : Exception
{
    /// <summary>Creates the error from field errors (at least one).</summary>
    public ApiRequestException(IReadOnlyDictionary<string, string[]> errors)
        : base(string.Join(" ", errors.SelectMany(e => e.Value.Select(m => $"{e.Key}: {m}"))))
    {
        Errors = errors;
    }

    /// <summary>Creates the error for one field.</summary>
    public ApiRequestException(string field, string message) : this(new Dictionary<string, string[]> { [field] = [message] }) { }

    /// <summary>The errors by field name.</summary>
    public IReadOnlyDictionary<string, string[]> Errors { get; }

    /// <summary>The HTTP status of the answer: 400, or 415 for a body not sent as JSON.</summary>
    public int StatusCode { get; init; } = 400;
}

/// <summary>
/// Reads and checks the JSON bodies of the API by hand (not by model binding), so that every mistake, from an empty
/// body to a misspelt field, is answered with the field it is about and what the field takes, and all mistakes of a
/// body are reported at once.
/// </summary>
public static class ApiRequestReader
{
    /// <summary>Largest body read (a prompt is at most 2,000 characters; the rest is small).</summary>
    public const int MaxBodyBytes = 64 * 1024;

    private const string GatesExample = "{\"prompt\": \"a red circle\", \"enabled\": [true, false]}";

    /// <summary>Reads a <c>POST /api/gates</c> body and resolves its SPM selection against <paramref name="spms"/>.</summary>
    /// <exception cref="ApiRequestException">The body or one of its fields is invalid (all problems are listed).</exception>
    public static (GatesBody Body, bool[] Enabled) ReadGates(ReadOnlySpan<byte> json, IReadOnlyList<SpmInfo> spms)
    {
        var errors = new Errors();
        using var doc = Parse(json, errors);
        var fields = Fields(doc, errors, ["prompt", "enabled"]);
        var prompt = ReadPrompt(fields, "prompt", required: true, errors);
        var selection = ReadSelection(fields, errors);
        var enabled = Resolve(selection, spms, errors);
        errors.ThrowIfAny();
        return (new GatesBody(prompt!, selection), enabled!);
    }

    /// <summary>Reads a <c>POST /api/generate</c> body and resolves its SPM selection against <paramref name="spms"/>.</summary>
    /// <exception cref="ApiRequestException">The body or one of its fields is invalid (all problems are listed).</exception>
    public static (GenerateBody Body, bool[] Enabled) ReadGenerate(ReadOnlySpan<byte> json, IReadOnlyList<SpmInfo> spms)
    {
        var errors = new Errors();
        using var doc = Parse(json, errors);
        var fields = Fields(doc, errors, ["prompt", "enabled", "seed", "steps", "size", "negativePrompt", "guidance"]);
        var prompt = ReadPrompt(fields, "prompt", required: true, errors);
        var selection = ReadSelection(fields, errors);
        var enabled = Resolve(selection, spms, errors);
        ulong? seed = null;
        if (Value(fields, "seed") is { } s)
        {
            if (s.ValueKind == JsonValueKind.Number && s.TryGetUInt64(out var v)) seed = v;
            else errors.Add("seed", $"must be a whole number from 0 to {ulong.MaxValue}, got {Show(s)}.");
        }
        int? steps = ReadInt(fields, "steps", 1, WebDemoOptions.MaxSteps, errors);
        int? size = ReadInt(fields, "size", 1, WebDemoOptions.MaxSize, errors);
        var negative = ReadPrompt(fields, "negativePrompt", required: false, errors);
        double? guidance = null;
        if (Value(fields, "guidance") is { } g)
        {
            if (g.ValueKind == JsonValueKind.Number && g.TryGetDouble(out var d) && double.IsFinite(d)) guidance = d;
            else errors.Add("guidance", $"must be a finite number, got {Show(g)}.");
        }
        errors.ThrowIfAny();
        return (new GenerateBody(prompt!, selection, seed, steps, size, negative, guidance), enabled!);
    }

    private static JsonDocument? Parse(ReadOnlySpan<byte> json, Errors errors)
    {
        if (json.IsEmpty || json.Trim(" \t\r\n"u8).IsEmpty)
        {
            errors.Add("body", $"the request body is empty; send a JSON object such as {GatesExample}.");
            errors.ThrowIfAny();
        }
        try
        {
            // Copied into the document, so the caller's buffer may be reused afterwards.
            return JsonDocument.Parse(json.ToArray(), new JsonDocumentOptions { MaxDepth = 8 });
        }
        catch (JsonException ex)
        {
            // The parser's own words locate the mistake (line and byte); the path is always the root here.
            var where = ex.LineNumber is { } line ? $" (line {line + 1}, byte {ex.BytePositionInLine + 1})" : "";
            errors.Add("body", $"the request body is not valid JSON{where}.");
            errors.ThrowIfAny();
            return null;
        }
    }

    // The root object's members by canonical field name. Names match case-insensitively (as ASP.NET Core's own
    // binding does) but errors use the canonical camelCase spelling; unknown and repeated members are errors rather
    // than silently ignored, since a misspelt field would otherwise quietly fall back to its default.
    private static Dictionary<string, JsonElement> Fields(JsonDocument? doc, Errors errors, string[] known)
    {
        var fields = new Dictionary<string, JsonElement>(StringComparer.Ordinal);
        if (doc is null) return fields;
        if (doc.RootElement.ValueKind != JsonValueKind.Object)
        {
            errors.Add("body", $"must be a JSON object, got {Kind(doc.RootElement)}.");
            errors.ThrowIfAny();
        }
        foreach (var member in doc.RootElement.EnumerateObject())
        {
            var name = known.FirstOrDefault(k => string.Equals(k, member.Name, StringComparison.OrdinalIgnoreCase));
            if (name is null)
                errors.Add(member.Name, $"is not a field of this request; it takes {string.Join(", ", known)}.");
            else if (!fields.TryAdd(name, member.Value))
                errors.Add(name, "is given more than once.");
        }
        return fields;
    }

    // A member's value, with JSON null read as "not given".
    private static JsonElement? Value(Dictionary<string, JsonElement> fields, string name) =>
        fields.TryGetValue(name, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;

    private static string? ReadPrompt(Dictionary<string, JsonElement> fields, string name, bool required, Errors errors)
    {
        if (Value(fields, name) is not { } v)
        {
            if (required) errors.Add(name, "is required (a string; \"\" for none).");
            return null;
        }
        if (v.ValueKind != JsonValueKind.String)
        {
            errors.Add(name, $"must be a string, got {Kind(v)}.");
            return null;
        }
        var text = v.GetString()!;
        if (text.Length > DemoEngine.MaxPromptLength)
        {
            errors.Add(name, $"must be at most {DemoEngine.MaxPromptLength} characters, got {text.Length}.");
            return null;
        }
        return text;
    }

    private static int? ReadInt(Dictionary<string, JsonElement> fields, string name, int min, int max, Errors errors)
    {
        if (Value(fields, name) is not { } v) return null;
        if (v.ValueKind == JsonValueKind.Number && v.TryGetInt64(out var n))
        {
            if (n >= min && n <= max) return (int)n;
            errors.Add(name, $"must be {min}..{max}, got {n}.");
            return null;
        }
        errors.Add(name, $"must be a whole number {min}..{max}, got {Show(v)}.");
        return null;
    }

    private static SpmSelection? ReadSelection(Dictionary<string, JsonElement> fields, Errors errors)
    {
        if (Value(fields, "enabled") is not { } v) return null;
        const string takes = "an array of booleans in /api/info order, or an array of SPM names";
        if (v.ValueKind != JsonValueKind.Array)
        {
            errors.Add("enabled", $"must be {takes}, got {Kind(v)}.");
            return null;
        }
        var items = v.EnumerateArray().ToList();
        if (items.Count == 0) return new SpmSelection(null, []);
        if (items.All(i => i.ValueKind is JsonValueKind.True or JsonValueKind.False))
            return new SpmSelection(items.Select(i => i.GetBoolean()).ToList(), null);
        if (items.All(i => i.ValueKind == JsonValueKind.String))
            return new SpmSelection(null, items.Select(i => i.GetString()!).ToList());
        errors.Add("enabled", $"must be {takes} (not a mix, nor other values).");
        return null;
    }

    private static bool[]? Resolve(SpmSelection? selection, IReadOnlyList<SpmInfo> spms, Errors errors)
    {
        if (selection is null)
        {
            // Nothing to choose when no SPM is loaded; otherwise say which SPMs there are.
            if (spms.Count == 0) return [];
            if (!errors.Has("enabled"))
                errors.Add("enabled", $"is required: {spms.Count} booleans in /api/info order, or SPM names from {NameList(spms)}.");
            return null;
        }
        if (selection.Flags is { } flags)
        {
            if (flags.Count == spms.Count) return flags.ToArray();
            errors.Add("enabled", $"expected {spms.Count} SPM flags, got {flags.Count}.");
            return null;
        }
        var enabled = new bool[spms.Count];
        foreach (var name in selection.Names ?? [])
        {
            var matches = spms.Where(s => NameMatches(s.Name, name)).ToList();
            if (matches.Count != 1)
            {
                errors.Add("enabled", matches.Count == 0
                    ? $"no SPM is called '{name}'; the loaded SPMs are {NameList(spms)}."
                    : $"'{name}' names {matches.Count} SPMs; use the full names {NameList(matches)}.");
                continue;
            }
            if (enabled[matches[0].Index]) errors.Add("enabled", $"'{name}' is named twice.");
            enabled[matches[0].Index] = true;
        }
        return errors.Has("enabled") ? null : enabled;
    }

    // An SPM's display name with or without its ".safetensors" extension ("circle.safetensors" or "circle").
    private static bool NameMatches(string displayName, string requested)
    {
        const string extension = ".safetensors";
        if (string.Equals(displayName, requested, StringComparison.Ordinal)) return true;
        return displayName.EndsWith(extension, StringComparison.Ordinal)
            && string.Equals(displayName[..^extension.Length], requested, StringComparison.Ordinal);
    }

    private static string NameList(IEnumerable<SpmInfo> spms) => string.Join(", ", spms.Select(s => $"'{s.Name}'"));

    private static string Kind(JsonElement v) => v.ValueKind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        _ => "null",
    };

    // A short rendering of a wrong value for the message: numbers and short strings as written, others by kind.
    private static string Show(JsonElement v) => v.ValueKind switch
    {
        JsonValueKind.Number => v.GetRawText(),
        JsonValueKind.String when v.GetString()!.Length <= 40 => "\"" + v.GetString() + "\"",
        _ => Kind(v),
    };

    private sealed class Errors
    {
        private readonly Dictionary<string, List<string>> _byField = new(StringComparer.Ordinal);

        public void Add(string field, string message)
        {
            if (!_byField.TryGetValue(field, out var list)) _byField[field] = list = [];
            list.Add(message);
        }

        public bool Has(string field) => _byField.ContainsKey(field);

        public void ThrowIfAny()
        {
            if (_byField.Count > 0)
                throw new ApiRequestException(_byField.ToDictionary(e => e.Key, e => e.Value.ToArray(), StringComparer.Ordinal));
        }
    }
}
