using System.CommandLine;
using Spm.Core;
using Spm.Diffusion.Text;

using Spm.Cli.Rendering;

namespace Spm.Cli.Commands;

/// <summary>
/// <c>spm tokenize [--model DIR] [--json] "text"</c>: prints the 77 CLIP token ids of a prompt; for an SDXL model folder,
/// a second line with <c>tokenizer_2</c>'s ids (JSON: an object with both arrays).
/// </summary>
internal static class TokenizeCommand
{
    /// <summary>Environment variable naming the default model folder when --model is not given.</summary>
    public const string DefaultModelVariable = "SPM_MODEL";

    public static Command Create(CliConsole console)
    {
        var text = new Argument<string>("text") { Description = "The prompt to tokenize." };
        var model = new Option<string?>("--model")
        {
            Description = $"Model folder (its tokenizer/ is used) or tokenizer folder. Default: ${DefaultModelVariable}, else ../shared/clip-tokenizer, else the built-in model's.",
        };
        var json = new Option<bool>("--json") { Description = "Print one JSON array of integers." };
        var cmd = new Command("tokenize", "Print the CLIP token ids (BOS, tokens, EOS, padding to 77) of a prompt; SDXL models: both tokenizers' ids, one line each.") { text, model, json };
        cmd.SetAction(parse =>
        {
            var (folder, source) = Locate(parse.GetValue(model));
            var tokenizer = ClipTokenizer.Load(folder);
            // The chosen tokenizer goes to stderr so stdout stays machine-readable.
            console.Error.WriteLine($"tokenizer: {tokenizer.Folder} ({source})");
            InputChecks.WarnIfTruncated(console, tokenizer, parse.GetValue(text) ?? "", "the text");
            var ids = tokenizer.Encode(parse.GetValue(text) ?? "");
            // An SDXL model folder has a second tokenizer (its own padding): its ids go on a second line.
            var second = SecondTokenizer(folder);
            if (second is null)
            {
                console.Out.WriteLine(Format(ids, parse.GetValue(json)));
                return 0;
            }
            var tokenizer2 = ClipTokenizer.Load(second);
            console.Error.WriteLine($"tokenizer_2: {tokenizer2.Folder} (SDXL's second tokenizer, pads with id {tokenizer2.PadId})");
            var ids2 = tokenizer2.Encode(parse.GetValue(text) ?? "");
            if (parse.GetValue(json))
                console.Out.WriteLine("{\"tokenizer\":" + Format(ids, true) + ",\"tokenizer_2\":" + Format(ids2, true) + "}");
            else
            {
                console.Out.WriteLine(Format(ids, false));
                console.Out.WriteLine(Format(ids2, false));
            }
            return 0;
        });
        return cmd;
    }

    // Only a model folder's own tokenizer_2/ (beside its tokenizer/) counts, not a folder given as the tokenizer itself.
    private static string? SecondTokenizer(string folder)
    {
        var full = Path.GetFullPath(folder);
        if (!Directory.Exists(Path.Combine(full, "tokenizer"))) return null;
        var second = Path.Combine(full, "tokenizer_2");
        return File.Exists(Path.Combine(second, "vocab.json")) ? second : null;
    }

    internal static string Format(int[] ids, bool json) =>
        json ? "[" + string.Join(",", ids) + "]" : string.Join(' ', ids);

    internal static (string Folder, string Source) Locate(string? model)
    {
        if (!string.IsNullOrEmpty(model)) return (model, "--model");
        var env = Environment.GetEnvironmentVariable(DefaultModelVariable);
        if (!string.IsNullOrEmpty(env)) return (env, $"default model from ${DefaultModelVariable}");
        if (ClipTokenizer.FindFolder() is { } shared) return (shared, "shared CLIP vocabulary");
        // An installed tool has no ../shared beside it, but carries the built-in model (the same CLIP vocabulary).
        if (Spm.Diffusion.Pipelines.DefaultModel.TryFind() is { } builtIn) return (builtIn, "the built-in model");
        throw new SpmInputNotFoundException("../shared/clip-tokenizer", "tokenizer", $"pass --model DIR or set ${DefaultModelVariable}.");
    }
}
