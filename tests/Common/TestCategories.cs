namespace Spm.Tests.Common;

/// <summary>
/// NUnit category names. <c>./scripts/test.sh --fast</c> runs everything but <see cref="Slow"/>
/// (<c>--filter TestCategory!=Slow</c>); the default run and CI run everything.
/// </summary>
internal static class TestCategories
{
    /// <summary>
    /// Tests that take about 2 s or more on the project's 2-core machine, measured from the durations in the trx
    /// results, not guessed: training (membranes, the tiny-shapes model), gradient graphs of whole UNets, whole-model
    /// runs (generating, baking, evaluating with the fixture or the built-in model, end to end through the CLI), and
    /// the multi-process kill/resume and concurrency tests.
    /// </summary>
    public const string Slow = "Slow";
}
