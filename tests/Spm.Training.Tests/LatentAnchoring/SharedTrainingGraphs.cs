using Spm.Training.LatentAnchoring;

namespace Spm.Training.Tests.LatentAnchoring;

/// <summary>
/// One gradient-graph cache for the trainer tests of this namespace: they all train rank-1 membranes on the tiny
/// fixture at 128x128 with one ONNX Runtime thread, so they need the same graph, which costs about 11 s to build (the
/// bulk of a short test run). Built once here instead of once per trainer; the cache never changes what a trainer
/// computes (<see cref="TrainerTests.SameSeedGivesIdenticalFile_WithOrWithoutASharedGraph"/> checks that).
/// </summary>
[SetUpFixture]
public sealed class SharedTrainingGraphs
{
    /// <summary>The shared cache, disposed after the namespace's last test.</summary>
    public static TrainingGraphCache Cache { get; } = new();

    [OneTimeTearDown]
    public void DisposeCache() => Cache.Dispose();
}
