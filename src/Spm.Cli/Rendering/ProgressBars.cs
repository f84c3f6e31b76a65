using Spectre.Console;
using Spectre.Console.Rendering;

namespace Spm.Cli.Rendering;

/// <summary>A progress report for <see cref="ProgressBars"/>: work done so far, optionally a new total or label.</summary>
/// <param name="Done">Units done (steps, iterations, files).</param>
/// <param name="Total">A new total, when it changes.</param>
/// <param name="Description">A new label, when it changes.</param>
internal readonly record struct ProgressUpdate(double Done, double? Total = null, string? Description = null);

/// <summary>
/// Progress bars for long library calls, on stderr so stdout stays for results: label, bar, <c>step/total</c>,
/// rate (<c>it/s</c>), elapsed and remaining time. The library reports through an <see cref="IProgress{T}"/>
/// from any thread. When stderr is not a terminal, a line is printed at each tenth of the work instead.
/// </summary>
internal static class ProgressBars
{
    /// <summary>
    /// Runs <paramref name="work"/> with one progress bar of <paramref name="total"/> <paramref name="unit"/>s on
    /// <paramref name="console"/>'s messages (stderr): a live bar on a terminal, else plain lines.
    /// </summary>
    public static async Task<T> RunAsync<T>(CliConsole console, string description, double total, string unit, Func<IProgress<ProgressUpdate>, Task<T>> work)
    {
        ArgumentNullException.ThrowIfNull(console);
        if (!console.MessagesAreTerminal)
        {
            var lines = new LineProgress(description, total, unit, console.Error);
            var result = await work(lines);
            lines.Finish();
            return result;
        }
        return await console.Messages.Progress()
            .AutoClear(false)
            .HideCompleted(false)
            .Columns(
                new TaskDescriptionColumn(),
                new ProgressBarColumn(),
                new StepCountColumn(),
                new RateColumn(unit),
                new ElapsedTimeColumn(),
                new RemainingTimeColumn())
            .StartAsync(async ctx =>
            {
                var bars = new TaskProgress(ctx, ctx.AddTask(description, autoStart: true, maxValue: Math.Max(total, 1)));
                var result = await work(bars);
                bars.Current.Value = bars.Current.MaxValue;
                bars.Current.StopTask();
                return result;
            });
    }

    /// <summary>
    /// One bar per phase: a report with a new total, or with less done than before (the next training phase, even of
    /// the same length), finishes the current bar and starts another, so each phase's rate and remaining time are its own.
    /// </summary>
    private sealed class TaskProgress(ProgressContext context, ProgressTask first) : IProgress<ProgressUpdate>
    {
        private ProgressTask _task = first;

        public ProgressTask Current => _task;

        public void Report(ProgressUpdate value)
        {
            if (LineProgress.StartsNewPhase(value, _task.MaxValue, _task.Value) && _task.Value > 0)
            {
                _task.Value = _task.MaxValue;
                _task.StopTask();
                _task = context.AddTask(Markup.Escape(value.Description ?? _task.Description), autoStart: true,
                    maxValue: value.Total is { } nt && nt > 0 ? nt : _task.MaxValue);
            }
            if (value.Total is { } t && t > 0) _task.MaxValue = t;
            if (value.Description is { } d) _task.Description = Markup.Escape(d);
            _task.Value = Math.Min(value.Done, _task.MaxValue);
        }
    }

    /// <summary>
    /// Plain lines for logs and pipes: one per tenth of each phase, with the phase's rate and remaining time and the
    /// total elapsed time. A phase starts when the total changes or less is done than before.
    /// </summary>
    internal sealed class LineProgress(string description, double total, string unit, TextWriter? output = null, Func<double>? clock = null) : IProgress<ProgressUpdate>
    {
        private readonly Func<double> _clock = clock ?? WallClock();
        private readonly TextWriter _output = output ?? Console.Error;
        private readonly object _gate = new();
        private double _total = total;
        private string _description = description;
        private int _lastTenth = -1;
        private double _done;
        private double _phaseStart, _lastReport;

        private static Func<double> WallClock()
        {
            var watch = System.Diagnostics.Stopwatch.StartNew();
            return () => watch.Elapsed.TotalSeconds;
        }

        /// <summary>Whether <paramref name="value"/> begins another phase after one at <paramref name="done"/> of <paramref name="total"/>.</summary>
        internal static bool StartsNewPhase(ProgressUpdate value, double total, double done)
            => (value.Total is { } t && t > 0 && t != total) || value.Done < done;

        public void Report(ProgressUpdate value)
        {
            lock (_gate)
            {
                double now = _clock();
                if (StartsNewPhase(value, _total, _done))
                {
                    if (value.Total is { } t && t > 0) _total = t;
                    _lastTenth = -1;
                    // The phase began when the one before it last reported (its end), not at this first report.
                    _phaseStart = _lastReport;
                }
                _lastReport = now;
                if (value.Description is { } d) _description = d;
                _done = value.Done;
                int tenth = _total > 0 ? (int)Math.Floor(10 * _done / _total) : 0;
                if (tenth <= _lastTenth || tenth >= 10) return;
                _lastTenth = tenth;
                Print(now);
            }
        }

        public void Finish()
        {
            lock (_gate)
            {
                _done = _total;
                Print(_lastReport = _clock());
            }
        }

        private void Print(double elapsed)
        {
            var inPhase = elapsed - _phaseStart;
            var rate = inPhase > 0 ? _done / inPhase : 0;
            var eta = rate > 0 ? TimeSpan.FromSeconds((_total - _done) / rate) : (TimeSpan?)null;
            _output.WriteLine(FormattableString.Invariant(
                $"{_description}: {_done:0}/{_total:0} {unit}s, {RateColumn.FormatRate(rate, unit)}, elapsed {elapsed:0.0}s, ETA {(eta is { } e ? e.ToString(@"hh\:mm\:ss") : "--:--:--")}"));
        }
    }
}

/// <summary>An <see cref="IProgress{T}"/> that calls back synchronously on the reporting thread (Progress&lt;T&gt; posts to the thread pool and can reorder reports).</summary>
internal sealed class ActionProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}

/// <summary>Shows <c>done/total</c>.</summary>
internal sealed class StepCountColumn : ProgressColumn
{
    public override IRenderable Render(RenderOptions options, ProgressTask task, TimeSpan deltaTime)
        => new Text(FormattableString.Invariant($"{task.Value:0}/{task.MaxValue:0}"));
}

/// <summary>Shows the rate, e.g. <c>3.52 it/s</c>, or seconds per unit below one per second (<c>2.10 s/it</c>).</summary>
internal sealed class RateColumn(string unit) : ProgressColumn
{
    public override IRenderable Render(RenderOptions options, ProgressTask task, TimeSpan deltaTime)
        => new Text(task.Speed is { } s ? FormatRate(s, unit) : $"-- {Abbrev(unit)}/s", new Style(Color.Grey));

    internal static string FormatRate(double perSecond, string unit)
        => perSecond >= 1 || perSecond <= 0
            ? FormattableString.Invariant($"{perSecond:0.00} {Abbrev(unit)}/s")
            : FormattableString.Invariant($"{1 / perSecond:0.00} s/{Abbrev(unit)}");

    private static string Abbrev(string unit) => unit == "step" ? "it" : unit;
}
