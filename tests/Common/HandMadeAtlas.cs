namespace Spm.Tests.Common;

/// <summary>A hand-made concept atlas for tests of atlas selection and the atlas options of the CLI.</summary>
public static class HandMadeAtlas
{
    /// <summary>Communities: 0 shapes, 1 colours, 2 patterns, 3 backgrounds. Tree: node 4 = (1, 2), node 5 = (0, 4),
    /// node 6 = (5, 3), the root.</summary>
    public const string Json = """
        {
          "format": "spm-concept-atlas", "version": 1, "similarity": "hand-made", "metadata": {},
          "concepts": [
            { "id": 0, "prompt": "a circle", "community": 0 },
            { "id": 1, "prompt": "a square", "community": 0 },
            { "id": 2, "prompt": "a triangle", "community": 0 },
            { "id": 3, "prompt": "a red shape", "community": 1 },
            { "id": 4, "prompt": "a blue shape", "community": 1 },
            { "id": 5, "prompt": "a striped pattern", "community": 2 },
            { "id": 6, "prompt": "a plain pattern", "community": 2 },
            { "id": 7, "prompt": "on a white background", "community": 3 }
          ],
          "edges": [ { "source": 0, "target": 1, "weight": 0.5 } ],
          "tree": { "communities": 4, "merges": [
            { "left": 1, "right": 2, "similarity": 0.02 },
            { "left": 0, "right": 4, "similarity": 0.004 },
            { "left": 5, "right": 3, "similarity": 0 } ] }
        }
        """;
}
