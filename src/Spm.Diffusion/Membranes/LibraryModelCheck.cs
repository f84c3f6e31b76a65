using Spm.Core;
using Spm.Core.Library;
using Spm.Diffusion.Onnx;

namespace Spm.Diffusion.Membranes;

/// <summary>
/// Checks a concept library against a model: that every SPM's membranes fit the model's layers, as generation would
/// load them (<see cref="MembraneSetLoader.LoadAll"/> and <see cref="MembraneLayout.Create"/>, so what passes here loads
/// there). The file checks themselves (hash, loading, index fields) are <see cref="SpmLibrary.Verify"/>'s.
/// </summary>
public static class LibraryModelCheck
{
    /// <summary>
    /// The entries whose SPM does not fit <paramref name="modelLayers"/>, each naming the file, the concept and the first
    /// layer that does not match. Files that are missing or do not load are left to <see cref="SpmLibrary.Verify"/>.
    /// </summary>
    /// <param name="library">The library.</param>
    /// <param name="modelLayers">The model's adaptable layers (<see cref="AdaptableLayerFinder.FindAll(OnnxModel)"/>).</param>
    /// <param name="modelName">How to name the model in messages (its folder or file).</param>
    public static IReadOnlyList<LibraryProblem> Verify(SpmLibrary library, IReadOnlyList<AdaptableLayer> modelLayers, string modelName)
    {
        ArgumentNullException.ThrowIfNull(library);
        ArgumentNullException.ThrowIfNull(modelLayers);
        var problems = new List<LibraryProblem>();
        foreach (var e in library.Entries)
        {
            var path = library.PathOf(e);
            if (!File.Exists(path)) continue;
            try
            {
                MembraneLayout.Create(modelLayers, MembraneSetLoader.LoadAll(path, modelLayers));
            }
            catch (SpmMismatchException ex)
            {
                problems.Add(new LibraryProblem(e.Concept, e.File, $"'{path}' (concept '{e.Concept}'): does not fit the model '{modelName}': {ex.Message}"));
            }
            catch (SpmException)
            {
                // A file that does not load is SpmLibrary.Verify's problem, reported there once.
            }
        }
        return problems;
    }
}
