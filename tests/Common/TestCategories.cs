namespace Spm.Tests.Common;

/// <summary>
/// NUnit category names. <c>./scripts/test.sh --fast</c> runs everything but <see cref="Slow"/>
/// (<c>--filter TestCategory!=Slow</c>); the default run and CI run everything.
/// </summary>
internal static class TestCategories
{
    /// <summary>
    /// Tests that take about 5 s or more on the project's 2-core machine: training (membranes, the tiny-shapes model),
    /// gradient graphs of whole UNets, generation with the built-in model over many prompts, and the multi-process
    /// kill/resume and concurrency tests. Measured from the durations in the trx results, not guessed.
    /// </summary>
    public const string Slow = "Slow";
}
