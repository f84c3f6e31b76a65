namespace Spm.Training.LatentAnchoring;

/// <summary>
/// Refuses YAML nested deeper than a limit, read on the parser's event stream before any node tree is built: building
/// the tree recurses once per level, and a hostile file of thousands of '[' would overflow the stack, a crash no catch
/// can stop.
/// </summary>
internal static class YamlDepthGuard
{
    /// <summary>Throws an <see cref="Spm.Core.SpmFormatException"/> naming <paramref name="fileName"/> when
    /// <paramref name="yaml"/> nests sequences or mappings deeper than <paramref name="maxDepth"/>.</summary>
    public static void Check(string yaml, string? fileName, int maxDepth)
    {
        var parser = new YamlDotNet.Core.Parser(new StringReader(yaml));
        int depth = 0;
        while (parser.MoveNext())
        {
            switch (parser.Current)
            {
                case YamlDotNet.Core.Events.SequenceStart or YamlDotNet.Core.Events.MappingStart:
                    if (++depth > maxDepth) throw new Spm.Core.SpmFormatException(fileName, null, $"nested deeper than {maxDepth} levels.");
                    break;
                case YamlDotNet.Core.Events.SequenceEnd or YamlDotNet.Core.Events.MappingEnd:
                    depth--;
                    break;
            }
        }
    }
}
