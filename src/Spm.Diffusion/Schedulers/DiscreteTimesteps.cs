namespace Spm.Diffusion.Schedulers;

/// <summary>
/// diffusers' timestep grids, written with numpy's arithmetic (np.arange/np.linspace/np.round, half to even) so
/// every spacing lands on the same values. Results are in descending order (the order the UNet is called).
/// </summary>
internal static class DiscreteTimesteps
{
    /// <summary>DDIM/PNDM/Euler/LMS grids: leading (k * (N // n) + offset), trailing, linspace.</summary>
    public static double[] Grid(string spacing, int trainSteps, int n, int stepsOffset) => spacing switch
    {
        "linspace" => Reverse(NumPy.Linspace(0, trainSteps - 1, n)),
        "leading" => Reverse(Enumerable.Range(0, n).Select(k => (double)k * (trainSteps / n) + stepsOffset).ToArray()),
        "trailing" => NumPy.Arange(trainSteps, 0, -(double)trainSteps / n).Select(t => NumPy.Round(t) - 1).ToArray(),
        _ => throw new ArgumentException($"Unknown timestep_spacing '{spacing}'."),
    };

    /// <summary>Integer grid (DDIM, PNDM): linspace values are rounded as diffusers does before casting to int64.</summary>
    public static int[] IntegerGrid(string spacing, int trainSteps, int n, int stepsOffset) =>
        Grid(spacing, trainSteps, n, stepsOffset).Select(t => (int)NumPy.Round(t)).ToArray();

    private static double[] Reverse(double[] v)
    {
        Array.Reverse(v);
        return v;
    }
}
