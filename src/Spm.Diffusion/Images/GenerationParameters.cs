using System.Globalization;
using System.Text;

namespace Spm.Diffusion.Images;

/// <summary>
/// The parameters text in the widely used style of image tools:
/// <code>
/// a photo of a cat
/// Negative prompt: blurry
/// Steps: 30, Sampler: PNDM, CFG scale: 7.5, Seed: 1, Size: 256x256, Model: tiny-sd1, SPM: ...
/// </code>
/// The negative prompt line is left out when it is empty; extra settings (SPM gates) are appended to the settings line.
/// </summary>
public static class GenerationParameters
{
    /// <summary>Formats the parameters of one image.</summary>
    public static string Format(string prompt, string negativePrompt, int steps, string sampler, double guidanceScale,
        ulong seed, int width, int height, string model, IEnumerable<string>? extras = null)
    {
        var sb = new StringBuilder();
        sb.Append(OneLine(prompt)).Append('\n');
        if (!string.IsNullOrWhiteSpace(negativePrompt)) sb.Append("Negative prompt: ").Append(OneLine(negativePrompt)).Append('\n');
        sb.Append("Steps: ").Append(steps.ToString(CultureInfo.InvariantCulture))
          .Append(", Sampler: ").Append(sampler)
          .Append(", CFG scale: ").Append(guidanceScale.ToString("0.###", CultureInfo.InvariantCulture))
          .Append(", Seed: ").Append(seed.ToString(CultureInfo.InvariantCulture))
          .Append(", Size: ").Append(width.ToString(CultureInfo.InvariantCulture)).Append('x').Append(height.ToString(CultureInfo.InvariantCulture))
          .Append(", Model: ").Append(Value(model));
        if (extras is not null)
            foreach (var e in extras)
                if (!string.IsNullOrWhiteSpace(e)) sb.Append(", ").Append(OneLine(e));
        return sb.ToString();
    }

    /// <summary>The display name of a scheduler in the parameters text (e.g. <c>euler-a</c> → <c>Euler a</c>).</summary>
    public static string SamplerDisplayName(string scheduler) => scheduler switch
    {
        "pndm" => "PNDM",
        "ddim" => "DDIM",
        "euler" => "Euler",
        "euler-a" => "Euler a",
        "dpmpp-2m" => "DPM++ 2M",
        "lms" => "LMS",
        _ => scheduler,
    };

    // The format is line-based: newlines inside a prompt would be read as a new field.
    private static string OneLine(string s) => s.ReplaceLineEndings(" ");

    // Settings are comma-separated: quote values that contain commas or colons.
    private static string Value(string s)
    {
        s = OneLine(s);
        return s.IndexOfAny([',', ':', '"']) >= 0 ? "\"" + s.Replace("\"", "\\\"") + "\"" : s;
    }
}
