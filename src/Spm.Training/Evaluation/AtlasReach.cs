using Spm.Core.Atlas;
using Spm.Core.Gating;

namespace Spm.Training.Evaluation;

/// <summary>How much one SPM changes the images of one finest community of a concept atlas.</summary>
/// <param name="Community">The community's index in the atlas.</param>
/// <param name="Members">Its concept prompts.</param>
/// <param name="OpenChange">Mean 1 - SSIM against the base image with the membrane fully open (what it would take away).</param>
/// <param name="GatedChange">The same with the deployed gate deciding the multiplier (what it does take away).</param>
/// <param name="MeanMultiplier">Mean multiplier the gate gave the community's prompts.</param>
public sealed record CommunityReach(int Community, IReadOnlyList<string> Members, double OpenChange, double GatedChange, double MeanMultiplier);

/// <summary>
/// "What else does this erase": an SPM's effect on every community of a concept atlas, measured on the atlas's own
/// prompts with the membrane open and with the deployed gate (<see cref="MembraneCrossEffects"/>).
/// </summary>
public static class AtlasReach
{
    /// <summary>
    /// Measures SPM <paramref name="spm"/> of <paramref name="generator"/> on every concept of <paramref name="atlas"/>,
    /// most changed (open) first. <paramref name="progress"/> receives the share of images done (0..1).
    /// </summary>
    public static IReadOnlyList<CommunityReach> Measure(EvalImageGenerator generator, int spm, ConceptAtlas atlas, int imagesPerPrompt = 4, ulong seed = 0,
        GateSettings? gate = null, IProgress<double>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(generator);
        ArgumentNullException.ThrowIfNull(atlas);
        ArgumentOutOfRangeException.ThrowIfNegative(spm);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(spm, generator.SpmCount);
        var prompts = atlas.Concepts;
        var open = MembraneCrossEffects.Measure(generator, prompts, new CrossEffectOptions(imagesPerPrompt, seed),
            progress is null ? null : new Scaled(progress, 0, 0.5), cancellationToken);
        var gated = MembraneCrossEffects.Measure(generator, prompts, new CrossEffectOptions(imagesPerPrompt, seed, gate ?? GateSettings.Default),
            progress is null ? null : new Scaled(progress, 0.5, 0.5), cancellationToken);
        var members = atlas.CommunityMembers();
        var result = new List<CommunityReach>();
        for (int c = 0; c < members.Count; c++)
        {
            var at = Enumerable.Range(0, prompts.Count).Where(i => atlas.Hierarchy.Communities[i] == c).ToArray();
            if (at.Length == 0) continue;
            result.Add(new CommunityReach(c, members[c], open.MeanChange(spm, at), gated.MeanChange(spm, at), at.Average(i => gated.Multiplier[spm, i])));
        }
        return result.OrderByDescending(r => r.OpenChange).ThenBy(r => r.Community).ToList();
    }

    private sealed class Scaled(IProgress<double> inner, double start, double share) : IProgress<double>
    {
        public void Report(double value) => inner.Report(start + share * value);
    }
}
