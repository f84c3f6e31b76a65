using Spm.Core;
using Spm.Diffusion.Pipelines;
using Spm.Diffusion.Text;

using Spm.Cli.Rendering;

namespace Spm.Cli;

/// <summary>Checks of command-line values against the model, made before any model is loaded or run.</summary>
internal static class InputChecks
{
    /// <summary>
    /// Refuses an image side the model cannot take (see <see cref="ModelFolder.ImageSizeMultiple"/>), naming the
    /// option, the value and the nearest valid sides. Null (the model's default) passes.
    /// </summary>
    /// <exception cref="SpmException">The side is not a valid multiple.</exception>
    public static void ImageSide(ModelFolder folder, string option, int? pixels)
    {
        if (pixels is { } p && folder.DescribeInvalidImageSide(option, p) is { } problem) throw new SpmException(problem);
    }

    /// <summary>
    /// Warns on stderr when <paramref name="text"/> is longer than the tokenizer's window (the model never sees the
    /// rest), naming <paramref name="what"/>, how many tokens are dropped and the words where the cut falls.
    /// </summary>
    public static void WarnIfTruncated(CliConsole console, ClipTokenizer tokenizer, string text, string what)
    {
        if (tokenizer.FindTruncation(text) is { } cut) console.Error.WriteLine($"spm: warning: {cut.Describe(what)}");
    }
}
