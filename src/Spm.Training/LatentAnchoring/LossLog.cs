using System.Globalization;
using System.Text;
using Spm.Core.IO;

namespace Spm.Training.LatentAnchoring;

/// <summary>
/// The CSV loss log of a run (one row per iteration). Kept in memory and rewritten atomically at checkpoints
/// and at the end, so a resumed run's log holds exactly the rows up to its last checkpoint, then the new ones.
/// </summary>
public sealed class LossLog
{
    /// <summary>The header row.</summary>
    public const string Header = "step,loss,loss_erasure,loss_anchor,learning_rate,k,height,width,timestep,loss_erasure_frozen,grad_norm";

    private readonly List<string> _rows = [];
    private readonly string _header;
    private readonly int _probes;

    /// <summary>The file the log is written to.</summary>
    public string Path { get; }

    /// <summary>
    /// The header of a log with the fixed erasure probe: <see cref="Header"/>, then <c>probe_erasure</c> (mean raw loss over
    /// the probes), <c>probe_relative</c> (mean of loss / frozen loss) and <c>probe_rel_k{k}</c> per probe.
    /// </summary>
    public static string HeaderWithProbe(IReadOnlyList<int> probeSteps)
        => probeSteps.Count == 0 ? Header : Header + ",probe_erasure,probe_relative," + string.Join(',', probeSteps.Select(k => $"probe_rel_k{k.ToString(CultureInfo.InvariantCulture)}"));

    /// <summary>Opens a log; when resuming, keeps the rows of an existing file up to <paramref name="resumeStep"/>.</summary>
    /// <param name="path">The CSV file.</param>
    /// <param name="resumeStep">The checkpoint's step when resuming, else 0.</param>
    /// <param name="probeSteps">The erasure probe's k values when the probe is on (adds its columns), else null.</param>
    public LossLog(string path, int resumeStep, IReadOnlyList<int>? probeSteps = null)
    {
        Path = path;
        _probes = probeSteps?.Count ?? 0;
        _header = HeaderWithProbe(probeSteps ?? []);
        if (resumeStep > 0 && File.Exists(path))
        {
            foreach (var line in File.ReadLines(path).Skip(1))
            {
                var comma = line.IndexOf(',');
                if (comma > 0 && int.TryParse(line.AsSpan(0, comma), NumberStyles.None, CultureInfo.InvariantCulture, out int s) && s <= resumeStep)
                    _rows.Add(line);
            }
        }
    }

    /// <summary>Number of rows.</summary>
    public int Count => _rows.Count;

    /// <summary>Adds the row of one iteration.</summary>
    public void Add(TrainingProgress p)
    {
        var row = string.Join(',',
            p.Step.ToString(CultureInfo.InvariantCulture),
            p.Loss.ToString("R", CultureInfo.InvariantCulture),
            p.ErasureLoss.ToString("R", CultureInfo.InvariantCulture),
            p.AnchorLoss.ToString("R", CultureInfo.InvariantCulture),
            p.LearningRate.ToString("R", CultureInfo.InvariantCulture),
            p.Draw.Steps.ToString(CultureInfo.InvariantCulture),
            p.Draw.Height.ToString(CultureInfo.InvariantCulture),
            p.Draw.Width.ToString(CultureInfo.InvariantCulture),
            p.Draw.QueryTimestep.ToString(CultureInfo.InvariantCulture),
            p.FrozenErasureLoss.ToString("R", CultureInfo.InvariantCulture),
            p.GradientNorm.ToString("R", CultureInfo.InvariantCulture));
        if (_probes > 0)
        {
            var probe = p.Probe ?? throw new ArgumentException("The log has probe columns but the iteration has no probe reading.", nameof(p));
            if (probe.Losses.Count != _probes) throw new ArgumentException($"The probe reading has {probe.Losses.Count} values; the log has {_probes} probe columns.", nameof(p));
            row += "," + string.Join(',', new[] { probe.MeanLoss, probe.MeanRelative }.Concat(probe.Relative).Select(v => v.ToString("R", CultureInfo.InvariantCulture)));
        }
        _rows.Add(row);
    }

    /// <summary>Writes the whole log atomically.</summary>
    public void Flush()
    {
        var sb = new StringBuilder(_header).Append('\n');
        foreach (var r in _rows) sb.Append(r).Append('\n');
        AtomicFile.WriteAllText(Path, sb.ToString());
    }
}
