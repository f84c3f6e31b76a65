using System.Globalization;
using System.Numerics.Tensors;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Spm.Core.Gating;

/// <summary>
/// A learned gate: how much of a concept a prompt's conditioning carries, read from the text encoder's last hidden state
/// the way the UNet reads it (token by token). Every token position <c>i ≥ 1</c> of <c>E(p)</c> (77 × D; position 0 is
/// the start token, the same for every prompt) gets a logit <c>s_i = w · h_i + b</c>; the positions are pooled by a
/// soft maximum <c>τ · log Σ exp(s_i / τ)</c> (a prompt carries the concept when any of its tokens does, including the
/// padding positions, which attend over the whole prompt in a causal encoder), and a logistic turns the pooled logit into
/// the probability that the model draws the concept. Fitted by <see cref="ConceptProbeFitter"/> on prompts labelled by
/// what the model drew for them, so plurals, typos and re-orderings that the model draws as the concept score high even
/// though they share no token with it, and near neighbours (another shape, another colour) score low.
/// </summary>
public sealed class ConceptProbe
{
    /// <summary>The <c>kind</c> this class reads and writes.</summary>
    public const string KindName = "token-softmax-logistic";

    /// <summary>The <c>kind</c> of a probe with a hidden layer.</summary>
    public const string MlpKindName = "token-mlp-softmax-logistic";

    /// <summary>The metadata key under which an SPM file carries the probe of its (first) concept.</summary>
    public const string MetadataKey = Membranes.SpmMetadataKeys.GateProbe;

    /// <summary>Creates a probe.</summary>
    /// <param name="concept">The concept text it detects.</param>
    /// <param name="weights">The per-token weights <c>w</c> (length D, the encoder's width; copied).</param>
    /// <param name="bias">The per-token bias <c>b</c>.</param>
    /// <param name="temperature">The soft maximum's temperature τ (&gt; 0).</param>
    /// <param name="encoderSignature">
    /// A fingerprint of the text encoder it was fitted on (<see cref="EncoderSignature"/>: the mean of the empty prompt's
    /// hidden states over positions, length D); null skips the check.
    /// </param>
    /// <param name="fit">Free-form facts about the fit (data, held-out figures), kept as JSON.</param>
    /// <param name="closed">The probability at or below which the gate is shut (gamma 0); see <see cref="Gamma"/>.</param>
    /// <param name="open">The probability at or above which the gate is fully open (gamma 1).</param>
    /// <exception cref="ArgumentException">Empty or non-finite weights, a bad temperature, a signature of another width, or not 0 ≤ closed &lt; open ≤ 1.</exception>
    /// <param name="strength">The membrane's multiplier when the gate is fully open (see <see cref="Strength"/>).</param>
    /// <param name="readLast">0: read every position; k: only the last k (see <see cref="ReadLast"/>).</param>
    /// <param name="hidden">An optional hidden layer every token goes through first (<c>s_i = w · tanh(W h_i + c) + b</c>); null: linear.</param>
    /// <param name="lookAhead">
    /// 0: each position is read alone; k: with the k positions after it (see <see cref="LookAhead"/>). The weights (or the
    /// hidden layer's rows) are then (k + 1) · D wide.
    /// </param>
    /// <param name="skipMidWord">Whether positions inside a word are left out of the pooled read (see <see cref="SkipsMidWord"/>).</param>
    public ConceptProbe(string concept, ReadOnlySpan<float> weights, float bias, float temperature = 1f, float[]? encoderSignature = null, JsonObject? fit = null,
        float closed = DefaultClosed, float open = DefaultOpen, ProbeHiddenLayer? hidden = null, float strength = 1f, int readLast = 0, int lookAhead = 0,
        bool skipMidWord = false)
    {
        SkipsMidWord = skipMidWord;
        if (lookAhead is < 0 or > MaxLookAhead) throw new ArgumentException($"The look-ahead must be 0..{MaxLookAhead} positions, got {lookAhead}.", nameof(lookAhead));
        LookAhead = lookAhead;
        if (readLast is < 0 or > MaxReadLast) throw new ArgumentException($"The positions read must be 0 (all) or 1..{MaxReadLast} (the last ones), got {readLast}.", nameof(readLast));
        ReadLast = readLast;
        if (!(strength > 0f && strength <= 16f)) throw new ArgumentException($"The strength must be in (0, 16], got {strength}.", nameof(strength));
        Strength = strength;
        if (hidden is not null && hidden.Units != weights.Length)
            throw new ArgumentException($"The hidden layer has {hidden.Units} units; the output has {weights.Length} weights.", nameof(weights));
        Hidden = hidden;
        if (!(closed >= 0f && closed < open && open <= 1f))
            throw new ArgumentException($"The gate's probabilities must satisfy 0 <= closed < open <= 1, got closed {closed} and open {open}.", nameof(open));
        Closed = closed;
        Open = open;
        ArgumentNullException.ThrowIfNull(concept);
        if (weights.IsEmpty) throw new ArgumentException("A concept probe needs at least one weight.", nameof(weights));
        foreach (var w in weights) if (!float.IsFinite(w)) throw new ArgumentException("A concept probe's weights must be finite.", nameof(weights));
        if (!float.IsFinite(bias)) throw new ArgumentException("A concept probe's bias must be finite.", nameof(bias));
        if (!(temperature > 0f) || !float.IsFinite(temperature)) throw new ArgumentException($"The temperature must be positive and finite, got {temperature}.", nameof(temperature));
        int inputWidth = hidden?.InputWidth ?? weights.Length;
        if (inputWidth % (lookAhead + 1) != 0)
            throw new ArgumentException($"A probe reading {lookAhead + 1} positions at once needs inputs a multiple of {lookAhead + 1} wide, got {inputWidth}.", nameof(weights));
        int width = inputWidth / (lookAhead + 1);
        if (encoderSignature is not null && encoderSignature.Length != width)
            throw new ArgumentException($"The encoder signature has {encoderSignature.Length} values; the probe reads {width}-wide states.", nameof(encoderSignature));
        Concept = concept;
        _weights = weights.ToArray();
        Bias = bias;
        Temperature = temperature;
        EncoderSignatureValues = encoderSignature?.ToArray();
        Fit = fit ?? new JsonObject();
    }

    private readonly float[] _weights;

    /// <summary>Default <see cref="Closed"/>: a prompt the model draws the concept for less than one time in ten keeps the gate shut.</summary>
    public const float DefaultClosed = 0.1f;

    /// <summary>Default <see cref="Open"/>: from a one-in-three chance that the model draws the concept, the membrane acts fully.</summary>
    public const float DefaultOpen = 0.35f;

    /// <summary>
    /// The membrane's multiplier at a fully open gate (the gate curve's value is scaled by it). A gate that stays shut on
    /// everything else can afford a membrane stronger than the one it was trained at where it opens: on the built-in
    /// model the circle membrane at 1 lets a third of circles through in long prompts, at 1.5 almost none.
    /// </summary>
    public float Strength { get; }

    /// <summary>
    /// Which positions the probe reads: 0, every position after the start token (a concept word lights up where it
    /// stands); k above 0, only the last k of the L positions. In a causal text encoder (CLIP) the last positions are the
    /// end token and the padding after it, which have read the whole prompt, so a prefix never decides alone: with every
    /// position read, the state of "a green t" in "a green ttriangle" (a shape word not known yet) can look like a
    /// circle prompt although the next token says triangle.
    /// </summary>
    public int ReadLast { get; }

    /// <summary>
    /// How many following positions each position is read with: 0, alone (<c>s_i = f(h_i)</c>); k, together with the next
    /// k (<c>s_i = f(h_i, h_{i+1}, …, h_{i+k})</c>, positions past the end repeat the last), so a later token can take
    /// back what a prefix suggested (the problem <see cref="SkipsMidWord"/> describes).
    /// </summary>
    public int LookAhead { get; }

    /// <summary>
    /// Whether the probe leaves out the positions inside a word: a token the tokenizer continues into the next one (in CLIP's
    /// BPE, one without the word-end mark <c>&lt;/w&gt;</c>). A causal encoder's state there has read part of a word, and a
    /// word's start says little: "a ttriangle" is "a", "t", "triangle", and the state of "a t" is the start of any unknown
    /// shape word, which the model may draw as a circle; the soft maximum would keep that reading although the word turns
    /// out to be "triangle". The state at the word's last token has read all of it. Callers pass which positions are inside
    /// a word (<see cref="GateText.MidWord"/>); without that every position is read.
    /// </summary>
    public bool SkipsMidWord { get; }

    /// <summary>The largest <see cref="LookAhead"/> accepted.</summary>
    public const int MaxLookAhead = 8;

    /// <summary>The largest <see cref="ReadLast"/> accepted.</summary>
    public const int MaxReadLast = 4096;

    /// <summary>The first position read in an embedding of <paramref name="rows"/> positions (position 0, the start token, never).</summary>
    public int FirstPosition(int rows) => FirstPositionOf(rows, ReadLast);

    /// <summary>The first position a probe reading the last <paramref name="readLast"/> positions (0: all) reads among <paramref name="rows"/>.</summary>
    public static int FirstPositionOf(int rows, int readLast) => readLast <= 0 ? 1 : Math.Max(1, rows - readLast);

    /// <summary>The probability at or below which the gate is shut.</summary>
    public float Closed { get; }

    /// <summary>The probability at or above which the gate is fully open.</summary>
    public float Open { get; }

    /// <summary>
    /// The gate's gamma for a prompt: <c>clamp((p − closed) / (open − closed), 0, 1)</c> with <c>p</c> =
    /// <see cref="Probability"/>. A membrane must act fully wherever the model is fairly likely to draw the concept (it
    /// erases the images where it does), and not at all where it is unlikely; the probability itself would leave a
    /// prompt the model draws the concept for half the time at a quarter of the membrane (square curve).
    /// </summary>
    /// <param name="embedding">Flattened [L, D] hidden states.</param>
    /// <param name="midWord">Per position, whether its token continues into the next (<see cref="SkipsMidWord"/>); empty: none.</param>
    public float Gamma(ReadOnlySpan<float> embedding, ReadOnlySpan<bool> midWord = default) => GammaOfLogits(TokenLogits(embedding, midWord));

    /// <summary>
    /// <see cref="Gamma"/> from per-position logits already computed (<see cref="TokenLogits"/>, or the same dots done
    /// for many probes at once by a batched router): the same arithmetic, so the same float.
    /// </summary>
    public float GammaOfLogits(ReadOnlySpan<float> logits) => Math.Clamp((Sigmoid(SoftMax(logits, Temperature)) - Closed) / (Open - Closed), 0f, 1f);

    /// <summary>
    /// <see cref="Gamma"/> and its gradient with respect to the embedding (what a white-box attacker differentiates
    /// through the gate): <c>dγ/dh_i = p(1 − p) / (open − closed) · softmax_i(s / τ) · ds_i/dh_i</c> for positions 1..L−1,
    /// zero at position 0 and wherever γ is clamped at 0 or 1 (the gate is flat there).
    /// </summary>
    /// <param name="embedding">Flattened [L, D] hidden states.</param>
    /// <param name="gradient">Receives dγ/d embedding; same length as <paramref name="embedding"/>.</param>
    /// <param name="midWord">As for <see cref="Gamma"/>: positions left out get no gradient.</param>
    /// <returns>γ.</returns>
    public float GammaGradient(ReadOnlySpan<float> embedding, Span<float> gradient, ReadOnlySpan<bool> midWord = default)
    {
        if (gradient.Length != embedding.Length)
            throw new ArgumentException($"The gradient buffer has {gradient.Length} values; the embedding has {embedding.Length}.", nameof(gradient));
        gradient.Clear();
        var logits = TokenLogits(embedding, midWord);
        float pooled = SoftMax(logits, Temperature), p = Sigmoid(pooled);
        float raw = (p - Closed) / (Open - Closed);
        if (raw <= 0f || raw >= 1f) return Math.Clamp(raw, 0f, 1f);
        float outer = p * (1f - p) / (Open - Closed);
        float max = TensorPrimitives.Max(logits);
        double sum = 0;
        foreach (var s in logits) sum += Math.Exp((s - max) / Temperature);
        var units = Hidden is null ? null : new float[Hidden.Units];
        int rows = RowsOf(embedding), first = FirstPosition(rows), inputWidth = InputWidth;
        var window = LookAhead == 0 ? null : new float[inputWidth];
        var gx = new float[inputWidth];
        for (int i = first; i < first + logits.Length; i++)
        {
            float weight = (float)(outer * Math.Exp((logits[i - first] - max) / Temperature) / sum);
            if (weight == 0f) continue; // a position left out (logit −∞), or one too far below the maximum to matter
            if (Hidden is null) TensorPrimitives.Multiply(_weights, weight, gx);
            else
            {
                // s_i = w · tanh(W x_i + c) + b, so ds_i/dx_i = Wᵀ (w ⊙ (1 − u²)).
                gx.AsSpan().Clear();
                Hidden.Activate(Input(embedding, rows, i, window), units);
                for (int u = 0; u < units!.Length; u++)
                {
                    float coefficient = weight * _weights[u] * (1f - units[u] * units[u]);
                    TensorPrimitives.MultiplyAdd(Hidden.Weights.Slice(u * inputWidth, inputWidth), coefficient, gx, gx);
                }
            }
            // x_i = (h_i, h_i+1, ..., h_i+k): each part's gradient goes back to the row it was read from.
            for (int k = 0; k <= LookAhead; k++)
            {
                var g = gradient.Slice(Math.Min(i + k, rows - 1) * Width, Width);
                TensorPrimitives.Add(g, gx.AsSpan(k * Width, Width), g);
            }
        }
        return raw;
    }

    /// <summary>The concept text.</summary>
    public string Concept { get; }

    /// <summary>The per-token output weights (length <see cref="Width"/>, or the hidden layer's units).</summary>
    public ReadOnlySpan<float> Weights => _weights;

    /// <summary>The hidden layer, or null for a linear probe.</summary>
    public ProbeHiddenLayer? Hidden { get; }

    /// <summary>The encoder width D the probe reads.</summary>
    public int Width => InputWidth / (LookAhead + 1);

    /// <summary>The width of what each position's logit is computed from: D, or (<see cref="LookAhead"/> + 1) · D.</summary>
    public int InputWidth => Hidden?.InputWidth ?? _weights.Length;

    /// <summary>
    /// What position <paramref name="i"/>'s logit reads: its row of <paramref name="embedding"/>, or (with
    /// <see cref="LookAhead"/>) that row and the next ones copied into <paramref name="window"/>.
    /// </summary>
    private ReadOnlySpan<float> Input(ReadOnlySpan<float> embedding, int rows, int i, float[]? window)
    {
        if (LookAhead == 0) return embedding.Slice(i * Width, Width);
        WindowOf(embedding, Width, rows, i, LookAhead, window);
        return window;
    }

    /// <summary>
    /// Writes rows <c>i, i+1, …, i+k</c> of a flattened [rows, width] embedding (rows past the end repeat the last) into
    /// <paramref name="window"/> ((k + 1) · width values): what a probe with look-ahead k reads at position i.
    /// </summary>
    public static void WindowOf(ReadOnlySpan<float> embedding, int width, int rows, int i, int lookAhead, Span<float> window)
    {
        for (int k = 0; k <= lookAhead; k++)
            embedding.Slice(Math.Min(i + k, rows - 1) * width, width).CopyTo(window.Slice(k * width, width));
    }

    /// <summary>The per-token bias.</summary>
    public float Bias { get; }

    /// <summary>The soft maximum's temperature.</summary>
    public float Temperature { get; }

    /// <summary>The fingerprint of the encoder it was fitted on, or null.</summary>
    public IReadOnlyList<float>? EncoderSignatureValues { get; }

    /// <summary>Facts about the fit (as written by <see cref="ConceptProbeFitter"/>).</summary>
    public JsonObject Fit { get; }

    /// <summary>The per-position logits <c>s_i = w · h_i + b</c> for positions 1..L−1 of a flattened [L, D] embedding.</summary>
    /// <exception cref="ArgumentException">The embedding is not a whole number of D-wide rows, or has fewer than two.</exception>
    /// <param name="embedding">Flattened [L, D] hidden states.</param>
    /// <param name="midWord">
    /// Per position (length L, or empty), whether its token continues into the next; with <see cref="SkipsMidWord"/> those
    /// positions get −∞ (they drop out of the soft maximum).
    /// </param>
    public float[] TokenLogits(ReadOnlySpan<float> embedding, ReadOnlySpan<bool> midWord = default)
    {
        int rows = RowsOf(embedding), first = FirstPosition(rows);
        var logits = new float[rows - first];
        var units = Hidden is null ? null : new float[Hidden.Units];
        var window = LookAhead == 0 ? null : new float[InputWidth];
        if (!midWord.IsEmpty && midWord.Length != rows)
            throw new ArgumentException($"The mid-word mask has {midWord.Length} entries; the embedding has {rows} positions.", nameof(midWord));
        bool skip = SkipsMidWord && !midWord.IsEmpty;
        for (int i = first; i < rows; i++)
        {
            if (skip && midWord[i])
            {
                logits[i - first] = float.NegativeInfinity;
                continue;
            }
            var h = Input(embedding, rows, i, window);
            if (Hidden is null) logits[i - first] = TensorPrimitives.Dot(h, _weights) + Bias;
            else
            {
                Hidden.Activate(h, units);
                logits[i - first] = TensorPrimitives.Dot(units, _weights) + Bias;
            }
        }
        return logits;
    }

    /// <summary>The pooled logit (soft maximum of <see cref="TokenLogits"/>).</summary>
    public float Logit(ReadOnlySpan<float> embedding, ReadOnlySpan<bool> midWord = default) => SoftMax(TokenLogits(embedding, midWord), Temperature);

    /// <summary>The probability that the model draws the concept for a prompt with this embedding.</summary>
    public float Probability(ReadOnlySpan<float> embedding, ReadOnlySpan<bool> midWord = default) => Sigmoid(Logit(embedding, midWord));

    /// <summary><c>τ · log Σ exp(s_i / τ)</c>, computed without overflow; −∞ for no logits.</summary>
    public static float SoftMax(ReadOnlySpan<float> logits, float temperature)
    {
        if (logits.IsEmpty) return float.NegativeInfinity;
        float max = TensorPrimitives.Max(logits);
        if (float.IsNegativeInfinity(max)) return max; // every position left out
        double sum = 0;
        foreach (var s in logits) sum += Math.Exp((s - max) / temperature);
        return max + temperature * (float)Math.Log(sum);
    }

    /// <summary>The logistic function.</summary>
    public static float Sigmoid(float x) => x >= 0 ? 1f / (1f + MathF.Exp(-x)) : MathF.Exp(x) / (1f + MathF.Exp(x));

    /// <summary>
    /// The text encoder's fingerprint: the mean over positions of the empty prompt's hidden states (length D). Two encoders
    /// with the same weights give the same values; fine-tunes that keep the text encoder (SD 1.4 → 1.5) too.
    /// </summary>
    public static float[] EncoderSignature(ReadOnlySpan<float> emptyPromptEmbedding, int width)
    {
        if (width <= 0 || emptyPromptEmbedding.Length % width != 0 || emptyPromptEmbedding.IsEmpty)
            throw new ArgumentException($"The empty prompt's embedding ({emptyPromptEmbedding.Length} values) is not a whole number of {width}-wide rows.");
        int rows = emptyPromptEmbedding.Length / width;
        var mean = new float[width];
        for (int i = 0; i < rows; i++) TensorPrimitives.Add(mean, emptyPromptEmbedding.Slice(i * width, width), mean);
        TensorPrimitives.Divide(mean, rows, mean);
        return mean;
    }

    /// <summary>
    /// Whether this probe was fitted on the encoder that gave <paramref name="emptyPromptEmbedding"/> (cosine of the
    /// fingerprints ≥ 0.999 and norms within 1 %); true when the probe carries no fingerprint.
    /// </summary>
    public bool Fits(ReadOnlySpan<float> emptyPromptEmbedding)
    {
        if (EncoderSignatureValues is null) return true;
        if (emptyPromptEmbedding.Length % Width != 0) return false;
        var mine = EncoderSignatureValues.ToArray();
        var theirs = EncoderSignature(emptyPromptEmbedding, Width);
        float na = TensorPrimitives.Norm(mine), nb = TensorPrimitives.Norm(theirs);
        if (na == 0f || nb == 0f) return na == nb;
        return TensorPrimitives.Dot(mine, theirs) / (na * nb) >= 0.999f && MathF.Abs(na - nb) <= 0.01f * na;
    }

    private int RowsOf(ReadOnlySpan<float> embedding)
    {
        if (embedding.Length % Width != 0 || embedding.Length < 2 * Width)
            throw new ArgumentException($"An embedding of {embedding.Length} values is not [L, {Width}] with L ≥ 2 (the probe reads {Width}-wide hidden states).");
        return embedding.Length / Width;
    }

    /// <summary>The probe as the JSON text an SPM file's <see cref="MetadataKey"/> holds.</summary>
    public string ToJson()
    {
        var o = new JsonObject
        {
            ["kind"] = Hidden is null ? KindName : MlpKindName,
            ["version"] = 1,
            ["concept"] = Concept,
            ["width"] = Width,
            ["bias"] = Bias,
            ["temperature"] = Temperature,
            ["closed"] = Closed,
            ["open"] = Open,
            ["strength"] = Strength,
            ["weights"] = new JsonArray(_weights.Select(w => (JsonNode?)JsonValue.Create(w)).ToArray()),
        };
        // Written only when set, so the probes of files written before it read back byte for byte.
        if (ReadLast > 0) o["read_last"] = ReadLast;
        if (LookAhead > 0) o["look_ahead"] = LookAhead;
        if (SkipsMidWord) o["skip_mid_word"] = true;
        if (Hidden is not null)
        {
            o["hidden_units"] = Hidden.Units;
            o["hidden_weights"] = new JsonArray(Hidden.Weights.ToArray().Select(w => (JsonNode?)JsonValue.Create(w)).ToArray());
            o["hidden_bias"] = new JsonArray(Hidden.Bias.ToArray().Select(w => (JsonNode?)JsonValue.Create(w)).ToArray());
        }
        if (EncoderSignatureValues is not null)
            o["encoder_signature"] = new JsonArray(EncoderSignatureValues.Select(w => (JsonNode?)JsonValue.Create(w)).ToArray());
        o["fit"] = JsonNode.Parse(Fit.ToJsonString());
        return o.ToJsonString();
    }

    /// <summary>Reads a probe written by <see cref="ToJson"/>.</summary>
    /// <param name="json">The JSON text.</param>
    /// <param name="source">Where it came from, for error messages (e.g. the SPM file's path).</param>
    /// <exception cref="SpmFormatException">Not a probe this version understands, or inconsistent fields.</exception>
    public static ConceptProbe FromJson(string json, string source)
    {
        ArgumentNullException.ThrowIfNull(json);
        // A hostile file could hold a huge value; the widest text encoders are a few thousand wide.
        if (json.Length > 4_000_000) throw new SpmFormatException(source, MetadataKey, $"{json.Length} characters long; a gate probe is a few kB.");
        try
        {
            var o = JsonNode.Parse(json) as JsonObject ?? throw new SpmFormatException(source, MetadataKey, "not a JSON object.");
            var kind = (string?)o["kind"];
            if (kind != KindName && kind != MlpKindName) throw new SpmFormatException(source, MetadataKey, $"kind '{kind}'; this version reads '{KindName}' and '{MlpKindName}'.");
            var weights = ReadFloats(o["weights"], source, "weights");
            ProbeHiddenLayer? hidden = null;
            if (kind == MlpKindName)
            {
                var hw = ReadFloats(o["hidden_weights"], source, "hidden_weights");
                var hb = ReadFloats(o["hidden_bias"], source, "hidden_bias");
                if (hb.Length != weights.Length || hb.Length == 0 || hw.Length % hb.Length != 0)
                    throw new SpmFormatException(source, MetadataKey, $"a hidden layer of {hb.Length} units needs {hb.Length} output weights (has {weights.Length}) and a whole number of weight rows (has {hw.Length} values).");
                hidden = new ProbeHiddenLayer(hw, hb);
            }
            int lookAhead = (int?)o["look_ahead"] ?? 0;
            if (lookAhead is < 0 or > MaxLookAhead) throw new SpmFormatException(source, MetadataKey, $"look_ahead {lookAhead}; it must be 0..{MaxLookAhead}.");
            int inputWidth = hidden?.InputWidth ?? weights.Length;
            int width = (int?)o["width"] ?? inputWidth / (lookAhead + 1);
            if ((long)width * (lookAhead + 1) != inputWidth)
                throw new SpmFormatException(source, MetadataKey, $"width {width} reading {lookAhead + 1} position(s) at once needs {(long)width * (lookAhead + 1)} inputs per position, but the weights read {inputWidth}.");
            var signature = o["encoder_signature"] is null ? null : ReadFloats(o["encoder_signature"], source, "encoder_signature");
            return new ConceptProbe((string?)o["concept"] ?? "", weights, (float?)o["bias"] ?? throw new SpmFormatException(source, MetadataKey, "no bias."),
                (float?)o["temperature"] ?? 1f, signature, o["fit"] is JsonObject fit ? (JsonObject)JsonNode.Parse(fit.ToJsonString())! : null,
                (float?)o["closed"] ?? DefaultClosed, (float?)o["open"] ?? DefaultOpen, hidden, (float?)o["strength"] ?? 1f, (int?)o["read_last"] ?? 0, lookAhead, (bool?)o["skip_mid_word"] ?? false);
        }
        catch (Exception e) when (e is not SpmException && e is JsonException or InvalidOperationException or FormatException or ArgumentException)
        {
            throw new SpmFormatException(source, MetadataKey, $"not a valid gate probe: {e.Message}", e);
        }
    }

    private static float[] ReadFloats(JsonNode? node, string source, string field)
    {
        if (node is not JsonArray a) throw new SpmFormatException(source, MetadataKey, $"field '{field}' is not an array.");
        var values = new float[a.Count];
        for (int i = 0; i < a.Count; i++)
            values[i] = a[i] is JsonValue v && v.TryGetValue<double>(out var d) && double.IsFinite(d)
                ? (float)d
                : throw new SpmFormatException(source, MetadataKey, $"field '{field}'[{i}] is not a finite number.");
        return values;
    }

    /// <inheritdoc />
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"probe '{Concept}' (D={Width}, b={Bias:0.###}, τ={Temperature:0.###}, shut ≤ {Closed:0.##}, open ≥ {Open:0.##}, strength {Strength:0.##})");

    /// <summary>The same probe with other gate probabilities.</summary>
    public ConceptProbe WithThresholds(float closed, float open) =>
        new(Concept, _weights, Bias, Temperature, EncoderSignatureValues?.ToArray(), (JsonObject)JsonNode.Parse(Fit.ToJsonString())!, closed, open, Hidden, Strength, ReadLast, LookAhead, SkipsMidWord);

    /// <summary>The same probe with another <see cref="Strength"/>.</summary>
    public ConceptProbe WithStrength(float strength) =>
        new(Concept, _weights, Bias, Temperature, EncoderSignatureValues?.ToArray(), (JsonObject)JsonNode.Parse(Fit.ToJsonString())!, Closed, Open, Hidden, strength, ReadLast, LookAhead, SkipsMidWord);
}

/// <summary>A hidden layer of a <see cref="ConceptProbe"/>: <c>tanh(W h + c)</c> with W [units, width] row-major.</summary>
public sealed class ProbeHiddenLayer
{
    private readonly float[] _weights, _bias;

    /// <summary>Creates a layer (arrays copied).</summary>
    /// <exception cref="ArgumentException">Empty, non-finite, or weights not a whole number of rows.</exception>
    public ProbeHiddenLayer(ReadOnlySpan<float> weights, ReadOnlySpan<float> bias)
    {
        if (bias.IsEmpty || weights.IsEmpty || weights.Length % bias.Length != 0)
            throw new ArgumentException($"A hidden layer of {bias.Length} units needs a whole number of weight rows; got {weights.Length} weights.");
        foreach (var w in weights) if (!float.IsFinite(w)) throw new ArgumentException("A hidden layer's weights must be finite.");
        foreach (var b in bias) if (!float.IsFinite(b)) throw new ArgumentException("A hidden layer's biases must be finite.");
        _weights = weights.ToArray();
        _bias = bias.ToArray();
    }

    /// <summary>Hidden units.</summary>
    public int Units => _bias.Length;

    /// <summary>The width of the states it reads.</summary>
    public int InputWidth => _weights.Length / _bias.Length;

    /// <summary>W, [units, width] row-major.</summary>
    public ReadOnlySpan<float> Weights => _weights;

    /// <summary>c.</summary>
    public ReadOnlySpan<float> Bias => _bias;

    /// <summary>Writes <c>tanh(W h + c)</c> into <paramref name="units"/>.</summary>
    public void Activate(ReadOnlySpan<float> h, Span<float> units)
    {
        int d = InputWidth;
        for (int u = 0; u < Units; u++) units[u] = TensorPrimitives.Dot(h, _weights.AsSpan(u * d, d)) + _bias[u];
        TensorPrimitives.Tanh(units, units);
    }
}
