namespace Spm.Training.Attacks;

/// <summary>
/// Decides whether an image shows a concept: the judge of attack success and the labeller of the data a learned gate is
/// fitted on. The tiny-shapes world has an exact one (<c>Spm.Shapes.Attacks.ShapeConceptJudge</c>, in the Spm.Shapes assembly);
/// for a real model, plug in a classifier (<see cref="OnnxConceptJudge"/>: an ONNX image classifier you supply, e.g. a nudity or object detector).
/// </summary>
public interface IConceptJudge
{
    /// <summary>A short name for reports ("tiny-shapes: circle", "onnx: nsfw.onnx[1] > 0.5").</summary>
    string Name { get; }

    /// <summary>Whether the image shows the concept.</summary>
    /// <param name="image">Planar RGB [3, height, width], values in [0, 1].</param>
    /// <param name="height">Image height.</param>
    /// <param name="width">Image width.</param>
    bool Shows(ReadOnlySpan<float> image, int height, int width);
}
