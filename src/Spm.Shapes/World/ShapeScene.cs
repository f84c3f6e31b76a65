namespace Spm.Shapes.World;

/// <summary>
/// One picture of the tiny-shapes world: a single shape on a flat background. Geometry is in pixels of a
/// square image (x to the right, y down, origin at the top-left corner of the top-left pixel).
/// </summary>
/// <param name="Shape">Which shape.</param>
/// <param name="Color">Its fill colour.</param>
/// <param name="Pattern">Its fill pattern.</param>
/// <param name="Background">The background.</param>
/// <param name="CenterX">Centre x in pixels.</param>
/// <param name="CenterY">Centre y in pixels.</param>
/// <param name="Size">Circumradius in pixels (the circle is drawn a little smaller, at 0.85 of it, so that all shapes look alike in size).</param>
/// <param name="Rotation">Rotation in radians, counter-clockwise on screen.</param>
public sealed record ShapeScene(
    ShapeKind Shape,
    ShapeColor Color,
    FillPattern Pattern,
    ShapeBackground Background,
    float CenterX,
    float CenterY,
    float Size,
    float Rotation);
