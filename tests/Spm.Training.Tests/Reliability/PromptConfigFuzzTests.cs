using System.Text;
using Spm.Core.Randomness;
using Spm.Tests.Common;
using Spm.Training.LatentAnchoring;

namespace Spm.Training.Tests.Reliability;

/// <summary>
/// Fuzzing the training prompt config (reference YAML layout, <see cref="PromptConfig.Load"/>): mutated valid files
/// and hostile values (nesting thousands deep, alias bombs, huge numbers and strings, wrong types, invalid UTF-8)
/// either load or fail with <c>SpmFormatException</c> naming the file and the entry's field, within a CPU bound and
/// without crashing the process. <c>SPM_FUZZ_CASES</c> / <c>SPM_FUZZ_SEED</c> as in the other fuzz suites.
/// </summary>
[TestFixture]
[NonParallelizable] // CPU accounting per case is process-wide
public class PromptConfigFuzzTests
{
    private static readonly LatentAnchoringOptions Defaults = new() { Concept = "placeholder" };

    private static readonly string[] Keys =
    [
        "target", "positive", "unconditional", "neutral", "action", "guidance_scale", "resolution", "batch_size",
        "dynamic_resolution", "la_strength", "sampling_batch_size",
    ];

    private const string Reference = Spm.Training.Tests.LatentAnchoring.PromptConfigTests.ReferenceYaml;

    private const string Single = """
        target: cat
        neutral: an animal
        action: erase_with_la
        guidance_scale: 1.0
        resolution: 512
        dynamic_resolution: true
        la_strength: 1000
        sampling_batch_size: 4
        """;

    [Test]
    public void PromptConfigs_LoadOrFailNamingFileAndField()
    {
        var dir = Directory.Exists("/dev/shm")
            ? Directory.CreateDirectory(Path.Combine("/dev/shm", $"spm-yamlfuzz-{Environment.ProcessId}-{Guid.NewGuid():N}")).FullName
            : TestPaths.NewTempDir("spm-yamlfuzz");
        try
        {
            var path = Path.Combine(dir, "prompts.yaml");
            byte[][] seeds = [Encoding.UTF8.GetBytes(Reference), Encoding.UTF8.GetBytes(Single)];
            foreach (var s in seeds)
            {
                File.WriteAllBytes(path, s);
                Assert.That(PromptConfig.Load(path, Defaults), Is.Not.Empty, "the seeds load");
            }
            var rng = new SeededRandom(TextFuzz.Seed(821));
            var fuzz = new TextFuzz(rng, Keys);
            int cases = TextFuzz.Cases(1000);
            var report = new TextFuzz.Report("prompt config YAML");
            for (int i = 0; i < cases; i++)
            {
                File.WriteAllBytes(path, fuzz.Mutate(seeds[i % seeds.Length]));
                TextFuzz.Check(report, i, fuzz.LastDescription, path, () => PromptConfig.Load(path, Defaults));
            }
            TestContext.Progress.WriteLine(report.Summary(cases));
            Assert.That(report.Failures, Is.Empty, string.Join("\n", report.Failures));
            Assert.That(report.Accepted, Is.GreaterThan(cases / 50), "some mutated configs must still load (the suite must reach the field checks)");
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
