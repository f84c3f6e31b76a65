using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using System.Numerics;
using System.Runtime.CompilerServices;

namespace Spm.Cli;

/// <summary>
/// Numbers on the command line, parsed in one place: every numeric option of every verb gets a parser that reads
/// invariant-culture numbers and says what it wanted in the user's words ("--seed must be a whole number from 0 to
/// 18446744073709551615 (got '-1')") instead of System.CommandLine's type names. Ranges declared with
/// <see cref="InRange{T}(Option{T}, double, double?)"/> are checked by the same parser, before any model loads.
/// </summary>
internal static class NumberOptions
{
    /// <summary>Inclusive bounds; a null maximum means "no upper bound but the type's".</summary>
    private sealed record Bounds(double Min, double? Max);

    // Weak keys: verbs are built per run (tests build hundreds), their options must not be kept alive here.
    private static readonly ConditionalWeakTable<Option, Bounds> Ranges = new();

    /// <summary>Declares the values <paramref name="option"/> accepts (inclusive) and returns it, for use in initializers.</summary>
    public static Option<T> InRange<T>(this Option<T> option, double min, double? max = null)
    {
        Ranges.AddOrUpdate(option, new Bounds(min, max));
        return option;
    }

    /// <summary>Gives every numeric option under <paramref name="root"/> (its subcommands included) the number parser.</summary>
    public static void Install(Command root)
    {
        foreach (var option in root.Options) Install(option);
        foreach (var sub in root.Subcommands) Install(sub);
    }

    private static void Install(Option option)
    {
        switch (option)
        {
            case Option<int> o: o.CustomParser ??= r => Whole<int>(r, o); break;
            case Option<int?> o: o.CustomParser ??= r => Whole<int>(r, o); break;
            case Option<long> o: o.CustomParser ??= r => Whole<long>(r, o); break;
            case Option<long?> o: o.CustomParser ??= r => Whole<long>(r, o); break;
            case Option<ulong> o: o.CustomParser ??= r => Whole<ulong>(r, o); break;
            case Option<ulong?> o: o.CustomParser ??= r => Whole<ulong>(r, o); break;
            case Option<int[]> o: o.CustomParser ??= r => Each(r, t => Whole<int>(r, o, t)); break;
            case Option<double> o: o.CustomParser ??= r => Real(r, o); break;
            case Option<double?> o: o.CustomParser ??= r => Real(r, o); break;
            case Option<float> o: o.CustomParser ??= r => (float)Real(r, o, single: true); break;
            case Option<float?> o: o.CustomParser ??= r => (float)Real(r, o, single: true); break;
            case Option<float[]> o: o.CustomParser ??= r => Each(r, t => (float)Real(r, o, t, single: true)); break;
        }
    }

    private static T[] Each<T>(ArgumentResult r, Func<string, T> parse) => r.Tokens.Select(t => parse(t.Value)).ToArray();

    private static T Whole<T>(ArgumentResult r, Option option, string? token = null) where T : IBinaryInteger<T>, IMinMaxValue<T>
    {
        token ??= Single(r);
        var bounds = (Ranges.TryGetValue(option, out var b) ? b : null);
        var min = bounds is null ? BigInteger.CreateChecked(T.MinValue) : new BigInteger(bounds.Min);
        var max = bounds?.Max is { } m ? new BigInteger(m) : BigInteger.CreateChecked(T.MaxValue);
        if (BigInteger.TryParse(token, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value) && value >= min && value <= max)
            return T.CreateChecked(value);
        var range = bounds is not null && bounds.Max is null ? $"of at least {min}" : $"from {min} to {max}";
        r.AddError($"{option.Name} must be a whole number {range} (got '{token}').");
        return T.Zero;
    }

    private static double Real(ArgumentResult r, Option option, string? token = null, bool single = false)
    {
        token ??= Single(r);
        var bounds = (Ranges.TryGetValue(option, out var b) ? b : null);
        if (double.TryParse(token, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) && double.IsFinite(value)
            && (!single || float.IsFinite((float)value))
            && (bounds is null || (value >= bounds.Min && (bounds.Max is not { } max || value <= max))))
            return value;
        var range = bounds is null ? "" : bounds.Max is { } hi ? $" from {Show(bounds.Min)} to {Show(hi)}" : $" of at least {Show(bounds.Min)}";
        r.AddError($"{option.Name} must be a number{range} (got '{token}').");
        return 0;
    }

    private static string Show(double v) => v.ToString(CultureInfo.InvariantCulture);

    // Options of one value: System.CommandLine hands the parser exactly one token for them.
    private static string Single(ArgumentResult r) => r.Tokens.Count > 0 ? r.Tokens[^1].Value : "";
}
