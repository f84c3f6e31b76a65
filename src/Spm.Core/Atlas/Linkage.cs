namespace Spm.Core.Atlas;

/// <summary>How the connection between two groups of communities is measured when merging.</summary>
public enum Linkage
{
    /// <summary>
    /// The edge density between the two groups: total weight between them over the node pairs (the mean of the
    /// community-pair densities weighted by community sizes). The default: it averages out the noise of single pairs.
    /// </summary>
    Average,

    /// <summary>The highest density of any community pair across the groups (chains easily).</summary>
    Single,

    /// <summary>The lowest density of any community pair across the groups.</summary>
    Complete,
}
