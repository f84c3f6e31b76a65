using Spm.Core.Gating;
using Spm.Diffusion.Runtime;
using Spm.Shapes.Attacks;
using Spm.Shapes.Evaluation;
using Spm.Shapes.World;
using Spm.Tests.Common;
using Spm.Training.Attacks;
using Spm.Training.Evaluation;
using Spm.Training.Gating;

namespace Spm.Training.Tests.Gating;

/// <summary>Active labelling of a learned gate (<see cref="GateFitJob.MinePrompts"/>, <c>spm gate fit --mine</c>) on the built-in model.</summary>
[TestFixture]
[Category(TestCategories.Slow)]
public class GateMiningTests
{
    private static string Model => Path.Combine(TestPaths.RepoRoot, "models", "tiny-shapes");

    [Test]
    public void MinePrompts_DrawsFromTheFreshCandidatesTheFirstGateOpensFor_Reproducibly_AndTheRefitTrainsOnThem()
    {
        using var job = GateFitJob.Open(new GateFitRequest
        {
            Model = Model,
            Spms = [Path.Combine(Model, "spm", "circle.safetensors")],
            Concepts = ["circle"],
            Judges = [new ShapeConceptJudge(EvalConcept.Parse("circle"))],
            ImagesPerPrompt = 1,
            Seed = 3,
            Strength = 1f,
            Sampling = new EvalGenerationSettings { Steps = 4, GuidanceScale = 3 },
            Runtime = new OnnxRuntimeOptions { IntraOpThreads = 1 },
        });
        var vocabulary = AttackPrimitives.VocabularyWords(Path.Combine(Model, "tokenizer", "vocab.json"));
        var labelled = job.Label(ShapeGateData.Prompts(40, 3, vocabulary));
        // Candidates: fresh prompts, plus labelled ones and a duplicate that must not be drawn again.
        var candidates = ShapeGateData.Prompts(300, 4, vocabulary).Concat(labelled.Take(10).Select(l => l.Prompt)).Append("a red circle").Append("a red circle").ToList();

        var (picked, opened) = job.MinePrompts(0, labelled, null, candidates, 5, seed: 9);

        // The first gate is the one Fit gives without mined prompts; read it on the candidates independently.
        var first = job.Fit(0, labelled);
        var probe = ConceptProbe.FromJson(first.Gated.Config.Extra[ConceptProbe.MetadataKey], "first");
        var known = labelled.Select(l => l.Prompt).ToHashSet();
        // It reads each word where it is complete (the default), so the prompt's mid-word mask goes with its embedding.
        var tokenizer = Spm.Diffusion.Text.ClipTokenizer.Load(Path.Combine(Model, "tokenizer"));
        Assert.That(probe.SkipsMidWord, Is.True);
        var open = candidates.Where(c => !known.Contains(c)).Distinct().Where(c =>
        {
            var (ids, embedding) = job.Generator.Encode(c);
            return probe.Gamma(embedding, tokenizer.MidWordMask(ids)) > 0f;
        }).ToList();
        Assert.That(opened, Is.EqualTo(open.Count));
        Assert.That(open, Does.Contain("a red circle"), "the first gate opens for a plain circle prompt");
        Assert.That(picked, Has.Count.EqualTo(Math.Min(5, open.Count)));
        Assert.That(picked, Is.Unique);
        Assert.That(open, Is.SupersetOf(picked));
        Assert.That(job.MinePrompts(0, labelled, null, candidates, 5, seed: 9).Prompts, Is.EqualTo(picked), "reproducible");
        Assert.That(job.MinePrompts(0, labelled, null, candidates, 1000, seed: 9).Prompts, Is.EquivalentTo(open), "asking for more than open gives every open one");

        var mined = job.Label(picked);
        var refit = job.Fit(0, labelled, mined);
        Assert.That((int)refit.Fit.Probe.Fit["mined_prompts"]!, Is.EqualTo(picked.Count));
        Assert.That((int)refit.Fit.Probe.Fit["extra_training_samples"]!, Is.EqualTo(picked.Count));
        Assert.That((int)refit.Fit.Probe.Fit["heldout_prompts"]!, Is.EqualTo(8), "the held-out fifth is the labelled data's alone");
        Assert.That(refit.Fit.Probe.ToJson(), Is.Not.EqualTo(first.Fit.Probe.ToJson()), "the mined prompts change the fit");
    }
}
