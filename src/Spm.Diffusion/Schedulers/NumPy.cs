namespace Spm.Diffusion.Schedulers;

/// <summary>The few numpy primitives diffusers' schedules are written in, reproduced with numpy's arithmetic.</summary>
internal static class NumPy
{
    /// <summary>np.arange(start, stop, step) for floats: length ceil((stop - start) / step), values start + i*step.</summary>
    public static double[] Arange(double start, double stop, double step)
    {
        int len = Math.Max(0, (int)Math.Ceiling((stop - start) / step));
        var v = new double[len];
        for (int i = 0; i < len; i++) v[i] = start + i * step;
        return v;
    }

    /// <summary>np.linspace(start, stop, num) (endpoint=True): i*step + start, with the last value exactly stop.</summary>
    public static double[] Linspace(double start, double stop, int num)
    {
        var v = new double[num];
        if (num == 0) return v;
        int div = num - 1;
        double step = div > 0 ? (stop - start) / div : double.NaN;
        for (int i = 0; i < num; i++) v[i] = div > 0 ? i * step + start : start;
        if (num > 1) v[^1] = stop;
        return v;
    }

    /// <summary>np.round: round half to even.</summary>
    public static double Round(double x) => Math.Round(x, MidpointRounding.ToEven);

    /// <summary>np.interp(x, arange(len(table)), table) evaluated in double.</summary>
    public static double InterpOnIndexGrid(double x, float[] table)
    {
        if (x <= 0) return table[0];
        if (x >= table.Length - 1) return table[^1];
        int lo = (int)Math.Floor(x);
        double frac = x - lo;
        if (frac == 0) return table[lo];
        // numpy's interp: slope * (x - xp[j]) + fp[j]
        double slope = (double)table[lo + 1] - table[lo];
        return slope * frac + table[lo];
    }
}
