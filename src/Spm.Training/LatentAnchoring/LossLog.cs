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

    /// <summary>The file the log is written to.</summary>
    public string Path { get; }

    /// <summary>Opens a log; when resuming, keeps the rows of an existing file up to <paramref name="resumeStep"/>.</summary>
    public LossLog(string path, int resumeStep)
    {
        Path = path;
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
    public void Add(TrainingProgress p) => _rows.Add(string.Join(',',
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
        p.GradientNorm.ToString("R", CultureInfo.InvariantCulture)));

    /// <summary>Writes the whole log atomically.</summary>
    public void Flush()
    {
        var sb = new StringBuilder(Header).Append('\n');
        foreach (var r in _rows) sb.Append(r).Append('\n');
        AtomicFile.WriteAllText(Path, sb.ToString());
    }
}
